"""TIES-merging: trim each task vector to its largest entries, elect a sign per entry, average the agreeing ones."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from alignkit.merging.checkpoint import StateDict, check_compatible, merge_deltas, work_dtype
from alignkit.merging.task_arithmetic import resolve_weights, weighted_sum
from alignkit.registry import register


def magnitude_mask(tensor: torch.Tensor, density: float) -> torch.Tensor:
    """Boolean mask of the ``int(density * numel)`` largest-magnitude entries (PEFT's ``magnitude_based_pruning``)."""
    if density >= 1:
        return torch.ones_like(tensor, dtype=torch.bool)
    if density < 0:
        raise ValueError(f"density must be >= 0, got {density}")
    k = int(density * tensor.numel())
    mask = torch.zeros(tensor.numel(), dtype=torch.bool, device=tensor.device)
    if k > 0:
        mask[torch.topk(tensor.abs().reshape(-1), k=k, largest=True).indices] = True
    return mask.reshape(tensor.shape)


def trim(tensor: torch.Tensor, density: float, threshold: float | None = None) -> torch.Tensor:
    """Keep the top-``density`` fraction by magnitude (or, given ``threshold``, entries with ``|x| >= threshold``)."""
    if threshold is not None:
        return tensor * (tensor.abs() >= threshold)
    return tensor * magnitude_mask(tensor, density)


def elect_sign(stacked: torch.Tensor, method: Literal["total", "frequency"] = "total") -> torch.Tensor:
    """+1/-1 per entry: the sign of the summed mass (``total``) or of the sign count (``frequency``); 0 sums -> +1."""
    if method == "total":
        score = stacked.sum(dim=0)
    elif method == "frequency":
        score = stacked.sign().sum(dim=0)
    else:
        raise ValueError(f"majority_sign must be 'total' or 'frequency', got {method!r}")
    return torch.where(score >= 0, 1.0, -1.0).to(stacked.dtype)


def disjoint_merge(
    stacked: torch.Tensor,
    weights: Sequence[float],
    sign: torch.Tensor,
    merge: Literal["mean", "sum"] = "mean",
) -> torch.Tensor:
    """Combine only the entries whose sign equals the elected sign: their weighted mean (``mean``) or sum."""
    agree = stacked.sign() == sign
    w = torch.as_tensor(list(weights), dtype=stacked.dtype, device=stacked.device)
    w = w.view(w.shape + (1,) * (stacked.dim() - 1))
    total = (stacked * w * agree).sum(dim=0)
    if merge == "sum":
        return total
    if merge != "mean":
        raise ValueError(f"merge must be 'mean' or 'sum', got {merge!r}")
    return total / agree.sum(dim=0).clamp(min=1).to(stacked.dtype)


def ties_tensors(
    task_tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    density: float,
    majority_sign: Literal["total", "frequency"] = "total",
    merge: Literal["mean", "sum"] = "mean",
    thresholds: Sequence[float] | None = None,
) -> torch.Tensor:
    """TIES on one tensor's task vectors: trim -> elect (on unweighted trimmed vectors) -> weighted disjoint merge."""
    if thresholds is None:
        trimmed = [trim(t, density) for t in task_tensors]
    else:
        trimmed = [trim(t, density, thr) for t, thr in zip(task_tensors, thresholds, strict=True)]
    stacked = torch.stack(trimmed, dim=0)
    return disjoint_merge(stacked, weights, elect_sign(stacked, majority_sign), merge)


Convention = Literal["mergekit", "peft"]
CONVENTIONS = ("mergekit", "peft")


def check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be 'mergekit' or 'peft', got {convention!r}")


def mergekit_magnitude_mask(tensor: torch.Tensor, density: float) -> torch.Tensor:
    """Mask of the ``max(1, int(density * numel))`` largest magnitudes (mergekit 0.1.5 ``sparsify.magnitude``:
    ranks by ``argsort`` of ``|x|`` in float32 on CPU; any positive density keeps at least one entry)."""
    if density >= 1:
        return torch.ones_like(tensor, dtype=torch.bool)
    if density < 0:
        raise ValueError(f"density must be >= 0, got {density}")
    mask = torch.zeros(tensor.numel(), dtype=torch.bool, device=tensor.device)
    if density == 0 or tensor.numel() == 0:
        return mask.reshape(tensor.shape)
    k = max(1, int(density * tensor.numel()))
    w = tensor.abs().reshape(-1)
    if w.device.type == "cpu":
        w = w.float()
    mask[torch.argsort(w, descending=True)[:k]] = True
    return mask.reshape(tensor.shape)


def weighted_consensus_merge(
    sparse: Sequence[torch.Tensor],
    weights: Sequence[float],
    majority_sign: Literal["total", "frequency"] = "total",
    normalize: bool = True,
) -> torch.Tensor:
    """mergekit's consensus step (``GeneralizedTaskArithmeticMerge.merge_group`` with ``consensus_method``):
    weight the (sparsified) deltas FIRST, elect the sign on the weighted deltas, keep the agreeing entries,
    and — with ``normalize`` — divide by the sum of the agreeing models' weights (0 -> 1)."""
    stacked = torch.stack(list(sparse), dim=0)
    w = torch.as_tensor(list(weights), dtype=stacked.dtype, device=stacked.device)
    w = w.view(w.shape + (1,) * (stacked.dim() - 1))
    weighted = stacked * w
    sign = elect_sign(weighted, majority_sign)
    agree = (weighted.sign() == sign).to(stacked.dtype)
    mixed = (weighted * agree).sum(dim=0)
    if not normalize:
        return mixed
    divisor = (w * agree).sum(dim=0)
    divisor[divisor == 0] = 1
    return mixed / divisor


def ties_tensors_mergekit(
    task_tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    density: float,
    majority_sign: Literal["total", "frequency"] = "total",
    merge: Literal["mean", "sum"] = "mean",
    thresholds: Sequence[float] | None = None,
) -> torch.Tensor:
    """TIES on one tensor's task vectors as mergekit computes it: trim (mergekit's magnitude rule) -> weight ->
    elect on the weighted vectors -> sum of agreeing, divided by the sum of agreeing weights (``mean``)."""
    if merge not in ("mean", "sum"):
        raise ValueError(f"merge must be 'mean' or 'sum', got {merge!r}")
    if thresholds is None:
        trimmed = [t * mergekit_magnitude_mask(t, density) for t in task_tensors]
    else:
        trimmed = [trim(t, density, thr) for t, thr in zip(task_tensors, thresholds, strict=True)]
    return weighted_consensus_merge(trimmed, weights, majority_sign, normalize=merge == "mean")


def magnitude_prune_tensors(
    task_tensors: Sequence[torch.Tensor], weights: Sequence[float], density: float
) -> torch.Tensor:
    """Trim each task vector to its top-``density`` magnitudes, then task arithmetic (TIES's trim step alone)."""
    return weighted_sum([trim(t, density) for t in task_tensors], weights)


def global_thresholds(base: StateDict, models: Sequence[StateDict], density: float) -> list[float]:
    """Per model, the magnitude threshold that keeps the top-``density`` of its whole flattened task vector.

    The threshold is the ``int(d * density)``-th largest ``|tau|`` of the ``d`` entries and entries with
    ``|tau| >= threshold`` are kept. (The official ``topk_values_mask`` takes the ``(d - int(d * K))``-th smallest,
    which keeps one entry more than ``int(d * K)``; alignkit keeps exactly ``int(d * density)`` barring ties.)
    """
    keys = [k for k in check_compatible(base, models) if base[k].is_floating_point()]
    out = []
    for m in models:
        flat = torch.cat(
            [(m[k].to(work_dtype(base[k])) - base[k].to(work_dtype(base[k]))).abs().reshape(-1) for k in keys]
        )
        d = flat.numel()
        keep = int(d * density)
        if density >= 1 or keep >= d:
            out.append(0.0)
        elif keep <= 0:
            out.append(float("inf"))
        else:
            out.append(float(flat.kthvalue(d - keep + 1).values))
    return out


@register(
    name="ties",
    kind="merge",
    family="task_vector",
    aliases=("ties_merging",),
    paper="TIES-Merging: Resolving Interference When Merging Models",
    arxiv="2306.01708",
    summary="trim task vectors to top-k% magnitude, elect a sign per entry by summed mass, average the agreeing",
    verification="library-parity",
)
def ties(
    base: StateDict,
    models: Sequence[StateDict],
    *,
    weights: Sequence[float] | None = None,
    density: float = 0.2,
    scaling: float = 1.0,
    majority_sign: Literal["total", "frequency"] = "total",
    merge: Literal["mean", "sum"] = "mean",
    scope: Literal["per_tensor", "global"] = "per_tensor",
    convention: Convention = "mergekit",
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """TIES-Merging: Resolving Interference When Merging Models (Yadav et al., NeurIPS 2023; arXiv:2306.01708).

    Three steps on the task vectors tau_t = theta_t - theta_0: TRIM each to its top-k% magnitudes, ELECT a sign
    per entry as the sign of the summed trimmed mass, and take the DISJOINT MEAN of the entries that agree.

    Formula:
        tau_t     = theta_t - theta_0
        tau^_t    = tau_t * 1[|tau_t| among the top density fraction]           (trim)
        convention "mergekit" (default; mergekit 0.1.5 ``ties``):
            gamma   = sgn(sum_t w_t tau^_t)        (+1 where the sum is 0)      (elect on WEIGHTED vectors)
            A_p     = {t : sgn(w_t tau^_t,p) = gamma_p}
            tau_m,p = sum_{t in A_p} w_t tau^_t,p / sum_{t in A_p} w_t          (divide by agreeing weights)
        convention "peft" (peft.utils.merge_utils.ties):
            gamma   = sgn(sum_t tau^_t)            (+1 where the sum is 0)      (elect on unweighted vectors)
            A_p     = {t : sgn(tau^_t,p) = gamma_p}
            tau_m,p = sum_{t in A_p} w_t tau^_t,p / max(|A_p|, 1)               (divide by agreeing count)
        theta     = theta_0 + scaling * tau_m
        (with unit weights both are the paper's disjoint mean; with weights [0.5, 0.5] "peft" gives half of
        "mergekit"'s delta — mergekit treats weights as relative, PEFT as absolute scales)

    Hyper-parameters:
        weights: per-model weights w_t (default 1 each = the paper, which has no per-model weights; how they
            enter is the ``convention``).
        density: k, the fraction of each task vector kept (default 0.2, the paper's k = 20%, §4/§6). mergekit
            keeps at least one entry per tensor (``max(1, int(k * n))``), PEFT ``int(k * n)``.
        scaling: lambda (default 1.0, the official ``ties_minimal`` notebook; mergekit's ``lambda`` default; the
            paper tunes it on validation).
        majority_sign: "total" = sign of the summed mass (the paper; mergekit ``consensus_method: sum``) or
            "frequency" = sign of the count (mergekit ``count``).
        merge: "mean" = disjoint mean (the paper's ``dis-mean``; mergekit ``normalize: true``, its ties default)
            or "sum" (``dis-sum``; mergekit ``normalize: false``).
        scope: "per_tensor" ranks magnitudes within each tensor (PEFT, mergekit; the default here) or "global"
            ranks over the whole flattened model as the official code does (needs one model's task vector in
            memory at a time).
        convention: "mergekit" (default, because most users merge with mergekit and expect its numbers for the
            same config) or "peft" (PEFT's ``add_weighted_adapter``/``merge_utils`` rule).
        progress: show a rich progress bar over tensors (default False).
            Operational (alignkit's interface, not a paper hyper-parameter).

    Source: the official code ``prateeky2806/ties-merging`` (``src/utils/merge_utils.py``: ``topk_values_mask``,
    ``resolve_sign``, ``disjoint_merge``) was read. ``convention="peft"`` equals ``peft.utils.merge_utils.ties``
    per tensor and ``convention="mergekit"`` equals mergekit 0.1.5's ``ties`` merge method in-process
    (tests/merging/test_merge_peft_parity.py, tests/merging/test_merge_mergekit_parity.py). Difference from
    the official code: where the summed mass is exactly 0 the official code uses the sign of the whole model's
    majority; PEFT, mergekit and alignkit use +1.
    """
    w = resolve_weights(weights, len(models))
    check_convention(convention)
    if scope not in ("per_tensor", "global"):
        raise ValueError(f"scope must be 'per_tensor' or 'global', got {scope!r}")
    thresholds = global_thresholds(base, models, density) if scope == "global" else None
    merge_tensors = ties_tensors_mergekit if convention == "mergekit" else ties_tensors

    def combine(_key: str, taus: list[torch.Tensor]) -> torch.Tensor:
        return scaling * merge_tensors(taus, w, density, majority_sign, merge, thresholds)

    return merge_deltas(base, models, combine, desc="TIES", progress=progress)


def magnitude_prune(
    base: StateDict,
    models: Sequence[StateDict],
    *,
    weights: Sequence[float] | None = None,
    density: float = 0.2,
    scaling: float = 1.0,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """TIES's trim step alone followed by task arithmetic (PEFT's ``magnitude_prune`` combination).

    Formula: theta = theta_0 + scaling * sum_t w_t * trim(tau_t, density) (per tensor).
    """
    w = resolve_weights(weights, len(models))
    return merge_deltas(
        base,
        models,
        lambda _k, taus: scaling * magnitude_prune_tensors(taus, w, density),
        desc="magnitude prune",
        progress=progress,
    )
