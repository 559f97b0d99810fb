"""Goldfish loss (arXiv:2406.10209): the mask is a function of the hashed context, drops ~1/k, k = inf is SFT."""

from __future__ import annotations

import math

import pytest
import torch

import alignkit as ak
from alignkit.objectives.sft.goldfish import goldfish_batch

mask = ak.get("goldfish")


def test_same_context_same_decision_across_documents():
    g = torch.Generator().manual_seed(0)
    passage = torch.randint(0, 50_000, (40,), generator=g)
    doc1 = torch.cat([torch.randint(0, 50_000, (7,), generator=g), passage])
    doc2 = torch.cat(
        [torch.randint(0, 50_000, (23,), generator=g), passage, torch.randint(0, 50_000, (5,), generator=g)]
    )
    m1 = mask(doc1.unsqueeze(0), k=4, h=13)[0, 7 + 12 : 7 + 40]
    m2 = mask(doc2.unsqueeze(0), k=4, h=13)[0, 23 + 12 : 23 + 40]
    assert torch.equal(m1, m2)  # once the window lies inside the passage, the mask is the passage's own
    assert (~m1).any()


def test_drops_about_one_in_k():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 50_000, (4, 3000), generator=g)
    for k in (2, 4, 8):
        m = mask(ids, k=k, h=13)[:, 12:]
        n = m.numel()
        frac = (~m).float().mean().item()
        sd = math.sqrt((1 / k) * (1 - 1 / k) / n)
        assert abs(frac - 1 / k) < 4 * sd, (k, frac)


def test_first_positions_kept_and_infinite_k_keeps_all():
    ids = torch.randint(0, 100, (2, 30))
    assert mask(ids, k=2, h=5)[:, :4].all()
    assert mask(ids, k=math.inf).all()
    static = mask(ids, k=3, strategy="static")
    assert (~static[:, ::3]).all() and static[:, 1::3].all()


def test_sft_on_the_masked_batch_is_the_goldfish_loss():
    g = torch.Generator().manual_seed(2)
    lp = -torch.rand(2, 40, generator=g, dtype=torch.float64)
    ids = torch.randint(0, 1000, (2, 40), generator=g)
    b = ak.SFTBatch(lp)
    keep = mask(ids, k=3, h=4).double()
    gold = ak.get("sft")(goldfish_batch(b, ids, k=3, h=4)).loss
    assert gold.item() == pytest.approx((-(lp * keep).sum() / keep.sum()).item(), abs=1e-12)
    assert ak.get("sft")(goldfish_batch(b, ids, k=math.inf)).loss.item() == pytest.approx(
        ak.get("sft")(b).loss.item()
    )


def test_bad_inputs():
    with pytest.raises(ValueError, match="token_ids"):
        mask(torch.rand(2, 5))
    with pytest.raises(ValueError, match="strategy"):
        mask(torch.zeros(1, 5, dtype=torch.long), strategy="avalanche")
    with pytest.raises(ValueError, match="token_ids"):
        goldfish_batch(ak.SFTBatch(-torch.rand(2, 5)), torch.zeros(2, 4, dtype=torch.long))
