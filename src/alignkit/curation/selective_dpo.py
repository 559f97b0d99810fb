"""Selective DPO: score each preference pair's difficulty by the held-out DPO loss of cross-fitted "reference"
models, then train only on the easiest fraction, easy to hard."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from alignkit.curation._common import annotated, check_fraction, field_ids, n_keep
from alignkit.registry import register

PAPER = "Principled Data Selection for Alignment: The Hidden Risks of Difficult Examples"
ARXIV = "2502.09650"


def cross_fit_splits(
    n_rows: int, *, k_folds: int = 2, seeds: Sequence[int] = (41, 42, 43)
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The cross-fitting splits of Selective DPO: for each seed, a random permutation of the ``n_rows`` rows cut
    into ``k_folds`` folds; each fold is held out once while a scoring model trains on the others.

    Returns ``len(seeds) * k_folds`` pairs ``(train_idx, heldout_idx)`` (sorted index arrays). Every row is held
    out exactly once per seed, and never by a model trained on it. Defaults: 2 folds (train on one half,
    evaluate on the other, then swap) x 3 seeds (41, 42, 43 as in the official scripts) = 6 scoring models.
    """
    if not isinstance(n_rows, int) or n_rows < 1:
        raise ValueError(f"n_rows must be a positive integer, got {n_rows!r}")
    if not isinstance(k_folds, int) or k_folds < 2:
        raise ValueError(f"k_folds must be an integer >= 2, got {k_folds!r}")
    if k_folds > n_rows:
        raise ValueError(f"k_folds ({k_folds}) exceeds n_rows ({n_rows}); some folds would be empty")
    if not seeds:
        raise ValueError("seeds is empty")
    out: list[tuple[np.ndarray, np.ndarray]] = []
    all_idx = np.arange(n_rows)
    for s in seeds:
        perm = np.random.default_rng(int(s)).permutation(n_rows)
        for fold in np.array_split(perm, k_folds):
            held = np.sort(fold)
            out.append((np.setdiff1d(all_idx, held), held))
    return out


def heldout_loss_matrix(
    n_rows: int,
    splits: Sequence[tuple[Sequence[int], Sequence[int]]],
    heldout_losses: Sequence[Sequence[float]],
) -> Tensor:
    """Assemble the (M, N) loss matrix of :func:`selective_dpo_select` from each scoring model's losses on its
    own held-out rows (``heldout_losses[m][j]`` is the DPO loss of row ``splits[m][1][j]``); NaN elsewhere."""
    if len(splits) != len(heldout_losses):
        raise ValueError(f"{len(splits)} splits but {len(heldout_losses)} held-out loss lists")
    mat = torch.full((len(splits), n_rows), float("nan"), dtype=torch.float64)
    for m, ((_, held), losses) in enumerate(zip(splits, heldout_losses, strict=True)):
        held_t = torch.as_tensor(np.asarray(held, dtype=np.int64))
        loss_t = torch.as_tensor(np.asarray(losses, dtype=np.float64))
        if held_t.shape != loss_t.shape:
            raise ValueError(f"split {m}: {held_t.numel()} held-out rows but {loss_t.numel()} losses")
        if held_t.numel() and (held_t.min() < 0 or held_t.max() >= n_rows):
            raise ValueError(f"split {m}: held-out index out of range [0, {n_rows})")
        mat[m, held_t] = loss_t
    return mat


def heldout_dpo_losses(
    model: nn.Module,
    ref_model: nn.Module,
    rows: Sequence[dict[str, Any]],
    *,
    beta: float = 0.1,
    pad_token_id: int = 0,
) -> Tensor:
    """Engine side of Selective DPO: the per-pair DPO loss of a scoring model on rows (``prompt_ids``,
    ``chosen_ids``, ``rejected_ids``) it did not train on, against ``ref_model`` (DPO's pi_ref, usually the SFT
    model). ``-log sigma(beta ((log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))))`` per row; beta 0.1
    is DPO's default (the scoring runs' beta is unverified)."""
    from alignkit.eval.evaluate import pair_logps

    if not rows:
        raise ValueError("rows is empty")
    for i, r in enumerate(rows):
        for f in ("prompt_ids", "chosen_ids", "rejected_ids"):
            field_ids(r, i, f)
    pc, pr = pair_logps(model, rows, pad_token_id)
    rc, rr = pair_logps(ref_model, rows, pad_token_id)
    margin = torch.as_tensor((pc - rc) - (pr - rr), dtype=torch.float64)
    return -torch.nn.functional.logsigmoid(beta * margin)


def selective_dpo_difficulty(losses: Tensor | np.ndarray) -> Tensor:
    """Difficulty of each pair: the mean of its held-out DPO losses over the scoring models that did not train on
    it. ``losses`` is (M, N) with NaN where model m trained on row n (see :func:`heldout_loss_matrix`)."""
    mat = torch.as_tensor(np.asarray(losses, dtype=np.float64))
    if mat.ndim != 2:
        raise ValueError(f"losses must be (models, rows), got shape {tuple(mat.shape)}")
    if torch.isinf(mat).any():
        raise ValueError("losses contains inf")
    scored = ~torch.isnan(mat)
    count = scored.sum(0)
    missing = (count == 0).nonzero().flatten()
    if missing.numel():
        raise ValueError(f"row {int(missing[0])}: no held-out loss from any scoring model")
    return torch.where(scored, mat, torch.zeros_like(mat)).sum(0) / count


def selective_dpo_select(
    rows: Sequence[dict[str, Any]],
    losses: Tensor | np.ndarray,
    *,
    tau: float = 0.5,
    curriculum: bool = True,
) -> list[dict[str, Any]]:
    """Principled Data Selection for Alignment: The Hidden Risks of Difficult Examples (Selective DPO,
    arXiv:2502.09650): keep the easiest ``tau`` fraction of preference pairs, ordered easy to hard.

    Difficulty is the *validation* DPO loss of a pair under "reference" models (scoring models, not DPO's
    pi_ref) trained with plain DPO on the other folds of a cross-fitting split (:func:`cross_fit_splits`),
    averaged over the models that held the pair out. Difficult pairs (beyond the model's capacity) are dropped;
    the rest are trained with DPO in a fixed easy->hard order (the official trainer's only change: a
    SequentialSampler).

    Formula:
        d_n = mean_{m : n not in train(m)} L_DPO(x_n, y_w, y_l; theta_m)
        keep = argsort_ascending(d)[: ceil(tau * N)]        (order kept: easy -> hard)

    Hyper-parameters:
        tau: 0.5 — fraction kept (the official run keeps the easiest 50%; tunable).
        curriculum: True — return the kept rows sorted by difficulty (easy first, the official trainer's fixed
            order); False keeps input order.

    ``losses``: (M, N) held-out losses, NaN where model m trained on row n. Returns the kept rows (each gets a
    ``difficulty`` field). Source: official code glorgao/SelectiveDPO (README "Step 1/2",
    ``curriculum-lens/make-curricula-uf.py``: mean of the loss columns of 2 folds x 3 seeds; the official script
    also averages over several checkpoints of each scoring run — pass them as extra rows of ``losses``).
    Unverified: the DPO beta / learning rate of the scoring runs.
    """
    check_fraction("tau", tau)
    rows = list(rows)
    d = selective_dpo_difficulty(losses)
    if d.numel() != len(rows):
        raise ValueError(f"losses has {d.numel()} columns but there are {len(rows)} rows")
    order = sorted(range(len(rows)), key=lambda i: (float(d[i]), i))[: n_keep(len(rows), tau)]
    if not curriculum:
        order = sorted(order)
    return annotated(rows, order, "difficulty", [float(x) for x in d])


register(
    name="selective_dpo",
    verification="paper-formula",
    kind="data_rule",
    family="curation",
    paper=PAPER,
    arxiv=ARXIV,
    aliases=("selectivedpo",),
    tags=("preference", "data-selection", "curriculum"),
    summary="keep the easiest tau of pairs by cross-fitted held-out DPO loss, easy to hard",
)(selective_dpo_select)
