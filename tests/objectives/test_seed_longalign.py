"""Seed 41, LongAlign (arXiv:2401.18058): packed SFT with loss weighting, and sorted batching."""

import pytest
import torch

import alignkit as ak
from alignkit.engine.tiny import char_tokenizer, tiny_llama
from alignkit.train.setup import epoch_order


def test_hand_computed_value():
    # two sequences: 1 token (log p = -2) and 3 tokens (log p = -1, -1, -4): per-seq means 2 and 2 -> 2.0;
    # the token mean (plain SFT) is (2 + 6) / 4 = 2.0 too, so make them differ:
    lp = torch.tensor([[-2.0, 0.0, 0.0], [-1.0, -1.0, -1.0]])
    mask = torch.tensor([[1.0, 0, 0], [1, 1, 1]])
    batch = ak.SFTBatch(logps=lp, mask=mask)
    out = ak.get("longalign_sft")(batch)
    assert out.loss.item() == pytest.approx((2.0 + 1.0) / 2)  # mean of per-sequence means
    assert ak.get("sft")(batch).loss.item() == pytest.approx(5.0 / 4)  # token mean: the long one dominates


def test_equal_lengths_is_plain_sft_and_gradients_flow():
    lp = (-torch.rand(3, 4) - 0.1).requires_grad_()
    batch = ak.SFTBatch(logps=lp, mask=torch.ones(3, 4))
    out = ak.get("longalign_sft")(batch)
    assert torch.allclose(out.loss, ak.get("sft")(batch).loss)
    out.loss.backward()
    assert torch.isfinite(lp.grad).all() and (lp.grad != 0).all()
    # the official per-token weight 1/N_k, divided by K sequences (sort_and_group.py, dataset.py)
    w = torch.ones(3, 4) / 4
    assert torch.allclose(out.loss, -(lp.detach() * w).sum() / 3)


def _train(**kw):
    tok = char_tokenizer()
    rows = [{"prompt": "q:", "completion": "a" * (1 + 3 * (i % 4))} for i in range(16)]
    cfg = (
        dict(max_steps=2, batch_size=4, learning_rate=1e-2, progress=False, **kw)
        if "batch_size" not in kw
        else {**dict(max_steps=2, learning_rate=1e-2, progress=False), **kw}
    )
    model = tiny_llama(vocab_size=len(tok), hidden_size=32, seed=1)
    res = ak.train(objective="longalign_sft", model=model, tokenizer=tok, data=rows, **cfg)
    return [h["loss"] for h in res.history], res


def test_packing_does_not_change_the_loss_and_accumulation_matches_one_batch():
    padded, _ = _train(packing=False)
    packed, res = _train(packing=True)
    assert res.fast_paths["packing"] is True
    assert packed == pytest.approx(padded, abs=1e-5)
    accum, _ = _train(packing=True, batch_size=1, grad_accum=4)
    assert accum == pytest.approx(padded, abs=1e-5)


def test_sorted_batching_groups_similar_lengths():
    lengths = [5, 1, 9, 3, 7, 2, 8, 4]
    order = epoch_order(lengths, 2, seed=0, sort=True)
    assert sorted(order) == list(range(8))
    steps = [sorted(lengths[i] for i in order[k : k + 2]) for k in range(0, 8, 2)]
    assert sorted(steps) == [[1, 2], [3, 4], [5, 7], [8, 9]]
    assert (
        epoch_order(lengths, 2, seed=0, sort=False)
        == torch.randperm(8, generator=torch.Generator().manual_seed(0)).tolist()
    )
