import math

import numpy as np
import pytest
import torch

from alignkit.curation import (
    cross_fit_splits,
    heldout_loss_matrix,
    selective_dpo_difficulty,
    selective_dpo_select,
)
from alignkit.registry import get


def _rows(n):
    return [{"prompt": f"p{i}", "chosen": "a", "rejected": "b"} for i in range(n)]


def test_hand_computed_difficulty_and_selection():
    nan = float("nan")
    # 2 models x 4 rows; each row held out by the model(s) with a finite entry.
    losses = torch.tensor([[0.9, nan, 0.2, nan], [0.7, 0.5, nan, 1.5]])
    d = selective_dpo_difficulty(losses)
    assert torch.allclose(d, torch.tensor([0.8, 0.5, 0.2, 1.5], dtype=torch.float64))
    kept = selective_dpo_select(_rows(4), losses, tau=0.5)
    # easiest two, easy -> hard: row 2 (0.2) then row 1 (0.5)
    assert [r["prompt"] for r in kept] == ["p2", "p1"]
    assert kept[0]["difficulty"] == pytest.approx(0.2)
    kept_in_order = selective_dpo_select(_rows(4), losses, tau=0.5, curriculum=False)
    assert [r["prompt"] for r in kept_in_order] == ["p1", "p2"]


@pytest.mark.parametrize("n,tau", [(10, 0.5), (7, 0.5), (5, 0.3), (3, 1.0), (9, 0.01)])
def test_keeps_ceil_tau_n_sorted(n, tau):
    rng = np.random.default_rng(n)
    losses = rng.random((3, n))
    kept = selective_dpo_select(_rows(n), losses, tau=tau)
    assert len(kept) == max(1, math.ceil(tau * n))
    diffs = [r["difficulty"] for r in kept]
    assert diffs == sorted(diffs)
    # every kept row is at most as difficult as every dropped row
    d = losses.mean(0)
    kept_ids = {int(r["prompt"][1:]) for r in kept}
    dropped = [d[i] for i in range(n) if i not in kept_ids]
    if dropped:
        assert max(diffs) <= min(dropped)


def test_tau_one_keeps_everything_as_curriculum():
    losses = np.array([[3.0, 1.0, 2.0]])
    kept = selective_dpo_select(_rows(3), losses, tau=1.0)
    assert [r["prompt"] for r in kept] == ["p1", "p2", "p0"]


def test_cross_fit_splits_are_disjoint_and_cover_each_row_once_per_seed():
    n = 11
    splits = cross_fit_splits(n, k_folds=2, seeds=(41, 42, 43))
    assert len(splits) == 6  # 2 folds x 3 seeds: the paper's six scoring models
    for train, held in splits:
        assert set(train).isdisjoint(held)  # never scored by a model trained on it
        assert sorted(set(train) | set(held)) == list(range(n))
    for s in range(3):
        held_all = np.concatenate([splits[2 * s + f][1] for f in range(2)])
        assert sorted(held_all.tolist()) == list(range(n))
    k3 = cross_fit_splits(n, k_folds=3, seeds=(0,))
    assert sorted(len(h) for _, h in k3) == [3, 4, 4]


def test_heldout_loss_matrix_roundtrip_and_mean():
    n = 6
    splits = cross_fit_splits(n, k_folds=2, seeds=(1, 2))
    true = np.arange(n, dtype=float)
    held_losses = [true[h] + m for m, (_, h) in enumerate(splits)]  # model m adds m
    mat = heldout_loss_matrix(n, splits, held_losses)
    assert mat.shape == (4, n)
    assert int((~torch.isnan(mat)).sum()) == 2 * n  # each row scored once per seed
    d = selective_dpo_difficulty(mat)
    # each row scored by one of models {0,1} and one of {2,3}: offset mean is 1.5 or 2 or 2.5 etc.
    for i in range(n):
        ms = [m for m, (_, h) in enumerate(splits) if i in h]
        assert d[i].item() == pytest.approx(true[i] + np.mean(ms))


def test_errors_name_row_and_field():
    nan = float("nan")
    with pytest.raises(ValueError, match="row 1"):
        selective_dpo_difficulty(torch.tensor([[0.1, nan]]))
    with pytest.raises(ValueError, match="columns"):
        selective_dpo_select(_rows(3), np.ones((2, 4)))
    with pytest.raises(ValueError, match="tau"):
        selective_dpo_select(_rows(3), np.ones((2, 3)), tau=0.0)
    with pytest.raises(ValueError, match="row 0"):
        selective_dpo_select(["x"], np.ones((1, 1)))
    with pytest.raises(ValueError, match="k_folds"):
        cross_fit_splits(3, k_folds=5)
    with pytest.raises(ValueError, match="held-out"):
        heldout_loss_matrix(3, [(np.array([0]), np.array([1, 2]))], [[0.5]])


def test_registered():
    c = get("selective_dpo")
    assert c.kind == "data_rule" and c.arxiv == "2502.09650"
    assert c.defaults == {"tau": 0.5, "curriculum": True}
    assert "ceil(tau * N)" in c.formula


def test_heldout_dpo_losses_on_a_tiny_model_and_full_pipeline():
    """End to end on a tiny Llama: scoring model == reference gives log 2 for every pair (zero margin); a scoring
    model that differs gives finite per-pair losses that feed the cross-fitted selection."""
    from alignkit.curation import heldout_dpo_losses
    from alignkit.engine.tiny import tiny_llama

    rows = [
        {"prompt_ids": [5 + i, 6], "chosen_ids": [7, 8 + i, 2], "rejected_ids": [9 + i, 2]} for i in range(6)
    ]
    ref = tiny_llama(seed=0).eval()
    same = heldout_dpo_losses(ref, ref, rows)
    assert torch.allclose(same, torch.full((6,), math.log(2), dtype=torch.float64), atol=1e-6)
    splits = cross_fit_splits(len(rows), k_folds=2, seeds=(0, 1))
    held = []
    for m, (_, h) in enumerate(splits):
        scorer = tiny_llama(seed=10 + m).eval()  # stands in for a DPO run on the training folds
        held.append(heldout_dpo_losses(scorer, ref, [rows[i] for i in h]).tolist())
    mat = heldout_loss_matrix(len(rows), splits, held)
    kept = selective_dpo_select(rows, mat, tau=0.5)
    assert len(kept) == 3 and all(math.isfinite(r["difficulty"]) for r in kept)
    with pytest.raises(ValueError, match="row 0: missing field 'chosen_ids'"):
        heldout_dpo_losses(ref, ref, [{"prompt_ids": [1], "rejected_ids": [2]}])
