import math

import pytest
import torch

from alignkit.curation import ches_filter, ches_scores, pair_ches_scores, pair_hidden_states
from alignkit.registry import get


def _official(hw, hl, iw, il, length_normalize=False):
    """An independent re-statement of the official ``compute_ches_scores`` (princeton-nlp/unintentional-unalignment,
    ches/ches.py): mask positions before the last prompt token, drop the final tensor position, sum or
    length-normalised mean; no padding support."""
    tw, tl = hw.shape[1], hl.shape[1]
    mw = (torch.arange(tw)[None, :] >= iw[:, None]).float()[:, :, None]
    ml = (torch.arange(tl)[None, :] >= il[:, None]).float()[:, :, None]
    sw, sl = (hw * mw)[:, :-1].sum(1), (hl * ml)[:, :-1].sum(1)
    if length_normalize:
        sw = sw / (tw - 1 - iw)[:, None]
        sl = sl / (tl - 1 - il)[:, None]
    return (sw * sl).sum(1) - sw.norm(dim=1) ** 2


def test_hand_computed():
    # prompt of 1 token (index 0), response of 1 token + EOS: the states at positions 0 are summed.
    hw = torch.tensor([[[1.0, 0.0], [9.0, 9.0]]])
    hl = torch.tensor([[[1.0, 1.0], [9.0, 9.0]]])
    i = torch.tensor([0])
    # <[1,0],[1,1]> - ||[1,0]||^2 = 1 - 1 = 0
    assert ches_scores(hw, hl, i, i).item() == pytest.approx(0.0)
    # two predicting states: hbar_w = [1,0]+[0,2] = [1,2], hbar_l = [1,1]+[1,0] = [2,1]
    hw2 = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [7.0, 7.0]]])
    hl2 = torch.tensor([[[1.0, 1.0], [1.0, 0.0], [7.0, 7.0]]])
    # CHES = (2 + 2) - (1 + 4) = -1 ; ln-CHES (|y|=2 both): <[.5,1],[1,.5]> - ||[.5,1]||^2 = 1 - 1.25 = -0.25
    assert ches_scores(hw2, hl2, i, i).item() == pytest.approx(-1.0)
    assert ches_scores(hw2, hl2, i, i, length_normalize=True).item() == pytest.approx(-0.25)


def test_limiting_cases():
    torch.manual_seed(0)
    h = torch.randn(3, 6, 4)
    i = torch.tensor([1, 2, 0])
    assert torch.allclose(ches_scores(h, h.clone(), i, i), torch.zeros(3), atol=1e-5)  # y+ == y- => 0
    s = ches_scores(h, -h, i, i)
    hbar = torch.stack([h[b, i[b] : 5].sum(0) for b in range(3)])
    assert torch.allclose(s, -2 * hbar.pow(2).sum(-1), atol=1e-4)  # h- = -h+ => -2||h+||^2
    # CHES <= ||hbar_w|| (||hbar_l|| - ||hbar_w||) by Cauchy-Schwarz
    hl = torch.randn(3, 5, 4)
    s2 = ches_scores(h, hl, i, i)
    hl_bar = torch.stack([hl[b, i[b] : 4].sum(0) for b in range(3)])
    assert (s2 <= hbar.norm(dim=-1) * (hl_bar.norm(dim=-1) - hbar.norm(dim=-1)) + 1e-4).all()


@pytest.mark.parametrize("ln", [False, True])
def test_parity_with_official(ln):
    torch.manual_seed(1)
    hw, hl = torch.randn(4, 9, 5), torch.randn(4, 7, 5)
    iw, il = torch.tensor([0, 3, 5, 2]), torch.tensor([1, 2, 4, 0])
    assert torch.allclose(
        ches_scores(hw, hl, iw, il, length_normalize=ln), _official(hw, hl, iw, il, ln), atol=1e-4
    )


def test_right_padding_ignored_with_lengths():
    torch.manual_seed(2)
    hw, hl = torch.randn(1, 5, 3), torch.randn(1, 4, 3)
    i = torch.tensor([1])
    ref = ches_scores(hw, hl, i, i, length_normalize=True)
    pw = torch.cat([hw, 100 * torch.randn(1, 3, 3)], 1)
    pl = torch.cat([hl, 100 * torch.randn(1, 2, 3)], 1)
    got = ches_scores(pw, pl, i, i, torch.tensor([5]), torch.tensor([4]), length_normalize=True)
    assert torch.allclose(got, ref, atol=1e-5)


def test_gradients_finite_and_flow():
    torch.manual_seed(3)
    hw = torch.randn(2, 5, 3, requires_grad=True)
    hl = torch.randn(2, 5, 3, requires_grad=True)
    i = torch.tensor([1, 2])
    ches_scores(hw, hl, i, i, length_normalize=True).sum().backward()
    assert torch.isfinite(hw.grad).all() and torch.isfinite(hl.grad).all()
    assert hw.grad[0, 1:4].abs().sum() > 0 and hl.grad[1, 2:4].abs().sum() > 0
    # prompt states before the last prompt token and the final state get no gradient
    assert hw.grad[0, 0].abs().sum() == 0 and hw.grad[:, 4].abs().sum() == 0


def test_filter_keeps_lowest_fraction_in_order():
    rows = [{"prompt": f"p{k}", "chosen": "a", "rejected": "b"} for k in range(10)]
    scores = [5.0, -1.0, 3.0, 0.0, 9.0, -2.0, 7.0, 1.0, 2.0, 4.0]
    kept = ches_filter(rows, scores, keep_frac=0.3)
    assert [r["prompt"] for r in kept] == ["p1", "p3", "p5"]
    assert [r["ches"] for r in kept] == [-1.0, 0.0, -2.0]
    assert len(ches_filter(rows, torch.tensor(scores))) == math.ceil(0.05 * 10)  # paper default: 5%
    assert len(ches_filter(rows, scores, keep_frac=1.0)) == 10


def test_errors():
    h = torch.randn(1, 3, 2)
    with pytest.raises(ValueError, match="row 0"):
        ches_scores(h, h, torch.tensor([2]), torch.tensor([0]))  # empty chosen response
    with pytest.raises(ValueError, match="batch and hidden"):
        ches_scores(h, torch.randn(2, 3, 2), torch.tensor([0]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match=r"scores\[1\]"):
        ches_filter([{}, {}], [0.0, float("nan")])
    with pytest.raises(ValueError, match="keep_frac"):
        ches_filter([{}], [0.0], keep_frac=0)
    with pytest.raises(ValueError, match="row 1: missing field 'rejected_ids'"):
        from alignkit.engine.tiny import tiny_llama

        rows = [
            {"prompt_ids": [3], "chosen_ids": [4], "rejected_ids": [5]},
            {"prompt_ids": [3], "chosen_ids": [4]},
        ]
        pair_ches_scores(tiny_llama(), rows, batch_size=1)


def test_model_helper_batched_equals_single():
    from alignkit.engine.tiny import tiny_llama

    model = tiny_llama(seed=0).eval()
    rows = [
        {"prompt_ids": [5, 6, 7], "chosen_ids": [8, 9, 2], "rejected_ids": [10, 2]},
        {"prompt_ids": [11], "chosen_ids": [12, 13, 14, 15, 2], "rejected_ids": [12, 13, 2]},
        {"prompt_ids": [20, 21], "chosen_ids": [22, 2], "rejected_ids": [22, 2]},
    ]
    batched = pair_ches_scores(model, rows, batch_size=8)
    single = torch.cat([pair_ches_scores(model, [r]) for r in rows])
    assert torch.allclose(batched, single, atol=1e-5)
    assert batched[2].item() == pytest.approx(0.0, abs=1e-6)  # identical responses
    hs = pair_hidden_states(model, rows[:1])
    assert hs["chosen_hidden"].shape == (1, 6, 32) and hs["chosen_last_prompt_idx"].tolist() == [2]


def test_registered():
    c = get("ches")
    assert c.kind == "data_rule" and c.arxiv == "2410.08847"
    assert c.defaults == {"keep_frac": 0.05}
    assert "ln-CHES" in c.formula
