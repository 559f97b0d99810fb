"""FIGA (arXiv:2311.04072): edit masks, a hand value, the band filter, gradients."""

from __future__ import annotations

import pytest
import torch
from helpers import preference_batch, token_inputs

import alignkit as ak
from alignkit.batches_extra import EditedPreferenceBatch
from alignkit.objectives.preference.figa import edit_masks

D = torch.float64


def test_edit_masks_substitution_and_eos():
    init, rev = edit_masks([1, 2, 3], [1, 9, 3])
    assert init == [False, True, False]
    assert rev == [False, True, True]  # the substituted token and the revision's EOS
    init, rev = edit_masks([1, 2, 3], [1, 9, 3], mark_revised_eos=False)
    assert rev == [False, True, False]


def test_identical_responses_mark_only_the_eos():
    init, rev = edit_masks([4, 5, 6, 7], [4, 5, 6, 7])
    assert init == [False] * 4 and rev == [False, False, False, True]


def test_disjoint_responses_mark_everything():
    init, rev = edit_masks([1, 2], [3, 4, 5])
    assert all(init) and all(rev)


def test_kept_tokens_form_a_common_subsequence():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        a = torch.randint(0, 4, (int(torch.randint(1, 9, (1,), generator=g)),), generator=g).tolist()
        b = torch.randint(0, 4, (int(torch.randint(1, 9, (1,), generator=g)),), generator=g).tolist()
        init, rev = edit_masks(a, b, mark_revised_eos=False)
        kept_a = [x for x, m in zip(a, init, strict=True) if not m]
        kept_b = [x for x, m in zip(b, rev, strict=True) if not m]
        assert kept_a == kept_b


def _hand_batch(grad: bool = True) -> tuple[EditedPreferenceBatch, torch.Tensor, torch.Tensor]:
    c = torch.tensor([[-0.5, -0.3]], dtype=D, requires_grad=grad)
    r = torch.tensor([[-0.8, -2.0]], dtype=D, requires_grad=grad)
    b = EditedPreferenceBatch(
        chosen_logps=c,
        rejected_logps=r,
        chosen_edit_mask=torch.tensor([[1, 0]]),
        rejected_edit_mask=torch.tensor([[1, 1]]),
    )
    return b, c, r


def test_hand_value_and_gradients():
    # positive token c = 0.5; negative tokens c = 0.8 (in the band, counted) and 2.0 (outside: weight 0, not counted)
    b, c, r = _hand_batch()
    out = ak.get("figa")(b)
    assert out.loss.item() == pytest.approx((0.5 - 0.5 * 0.8) / 2, abs=1e-12)
    out.loss.backward()
    assert c.grad.flatten().tolist() == pytest.approx([-0.5, 0.0])  # d(-log p)/2 on the edited token only
    assert r.grad.flatten().tolist() == pytest.approx(
        [0.25, 0.0]
    )  # +0.5/2 pushes log p down; out-of-band gets 0
    assert out.losses.mean().item() == pytest.approx(out.loss.item())


def test_plain_batch_means_every_token_edited():
    x = token_inputs(b=3, t=5, seed=4)
    plain = ak.get("figa")(preference_batch(x)).loss
    ones = EditedPreferenceBatch(
        chosen_logps=x["chosen_logps"],
        rejected_logps=x["rejected_logps"],
        chosen_mask=x["chosen_mask"],
        rejected_mask=x["rejected_mask"],
        chosen_edit_mask=torch.ones(3, 5),
        rejected_edit_mask=torch.ones(3, 5),
    )
    assert ak.get("figa")(ones).loss.item() == pytest.approx(plain.item(), abs=1e-12)


def test_bad_inputs_name_the_field():
    x = token_inputs(b=2, t=3)
    with pytest.raises(ValueError, match="rejected_edit_mask"):
        EditedPreferenceBatch(
            chosen_logps=x["chosen_logps"],
            rejected_logps=x["rejected_logps"],
            chosen_edit_mask=torch.ones(2, 3),
            rejected_edit_mask=torch.ones(2, 2),
        )
    b, _, _ = _hand_batch(grad=False)
    with pytest.raises(ValueError, match="negative_band"):
        ak.get("figa")(b, negative_band=(1.0, 0.5))
