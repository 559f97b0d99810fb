"""Weight-Inherited Distillation: identity compactors keep the teacher, folding is exact, the squeeze schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import alignkit as ak
from alignkit.objectives.distillation import CompactedFFN, Compactor, wid_fold, wid_hard_prune, wid_mask_count


def _ffn(seed=0, d=6, h=16):
    torch.manual_seed(seed)
    return nn.Linear(d, h).double(), nn.GELU(), nn.Linear(h, d).double()


def test_identity_compactor_equals_teacher():
    l1, act, l2 = _ffn()
    x = torch.randn(4, 6, dtype=torch.float64)
    block = CompactedFFN(l1, act, l2)
    block.compactor.weight.data = block.compactor.weight.data.double()
    assert torch.allclose(block(x), l2(act(l1(x))), atol=1e-12)


def test_fold_is_exact_when_masked_columns_are_zero():
    l1, act, l2 = _ffn()
    c = Compactor(16, dtype=torch.float64)
    with torch.no_grad():
        c.weight.add_(0.1 * torch.randn(16, 16, dtype=torch.float64))
    c.keep[[1, 4, 5, 9, 10, 15]] = False
    wid_hard_prune(c)
    x = torch.randn(4, 6, dtype=torch.float64)
    before = l2(c(act(l1(x))))
    f1, f2 = wid_fold(l1, c, l2)
    assert f1.weight.shape == (10, 6) and f2.weight.shape == (6, 10)
    assert torch.allclose(f2(act(f1(x))), before, atol=1e-12)


def test_mask_schedule_matches_official_rule():
    """int(step / w_step) * ((hidden - target) / 16), capped at hidden - target (uer/trainer.py)."""
    assert [wid_mask_count(s, w_step=10, width=1536, target=384) for s in (0, 9, 10, 25, 160, 500)] == [
        0,
        0,
        72,
        144,
        1152,
        1152,
    ]
    with pytest.raises(ValueError, match="target"):
        wid_mask_count(1, w_step=1, width=8, target=9)


def test_squeeze_step_masks_lowest_norm_columns_and_decays_them():
    c = Compactor(8, dtype=torch.float64)
    with torch.no_grad():
        c.weight.mul_(torch.arange(1, 9, dtype=torch.float64))  # column j has norm j + 1
    c.weight.grad = torch.ones(8, 8, dtype=torch.float64)
    squeeze = ak.get("wid_squeeze")
    # step 2 with w_step 1: k = 2 * (8 - 4) / 16 = 0.5 -> 0 masked; step 4: k = 1; step 16: k = 4
    assert squeeze([c], 16, w_step=1, target=4, l2_lambda=20.0) == 4
    assert c.keep.tolist() == [False] * 4 + [True] * 4
    # masked columns: grad = min(lambda, 1) * W; kept columns: the task gradient untouched
    assert torch.equal(c.weight.grad[:, :4], c.weight.detach()[:, :4])
    assert torch.equal(c.weight.grad[:, 4:], torch.ones(8, 4, dtype=torch.float64))


def test_squeeze_before_first_mask_adds_l2_penalty():
    c = Compactor(4, dtype=torch.float64)
    c.weight.grad = torch.zeros(4, 4, dtype=torch.float64)
    ak.get("wid_squeeze")([c], 1, w_step=5, target=2)
    assert torch.equal(c.weight.grad, torch.eye(4, dtype=torch.float64)) and c.keep.all()


def test_fold_rejects_mismatched_widths():
    l1, _, l2 = _ffn()
    with pytest.raises(ValueError, match="compactor width"):
        wid_fold(l1, Compactor(8), l2)
