"""DARE: randomly Drop delta parameters And REscale the rest, then merge (linearly or with TIES)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch

from alignkit.merging.checkpoint import StateDict, merge_deltas
from alignkit.merging.task_arithmetic import resolve_weights, weighted_sum
from alignkit.merging.ties import (
    Convention,
    check_convention,
    disjoint_merge,
    elect_sign,
    weighted_consensus_merge,
)
from alignkit.registry import register

PAPER = "Language Models are Super Mario: Absorbing Abilities from Homologous Models as a Free Lunch"


def dare_sparsify(
    delta: torch.Tensor, density: float, *, rescale: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Keep each entry with probability ``density = 1 - p`` and divide the kept ones by ``density``.

    Draws ``torch.bernoulli(full_like(delta, density))`` exactly as PEFT's ``random_pruning`` (no draw at all when
    ``density >= 1``), so with the same seed both give the same mask.
    """
    if density >= 1:
        return delta
    if density < 0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    if density == 0:
        return torch.zeros_like(delta)
    keep = torch.bernoulli(torch.full_like(delta, density), generator=generator)
    out = delta * keep
    return out / density if rescale else out


def dare_linear_tensors(
    task_tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    density: float,
    *,
    rescale: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DARE each task vector, then ``sum_t w_t * tau~_t`` (PEFT ``dare_linear``)."""
    return weighted_sum(
        [dare_sparsify(t, density, rescale=rescale, generator=generator) for t in task_tensors], weights
    )


def dare_ties_tensors(
    task_tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    density: float,
    majority_sign: Literal["total", "frequency"] = "total",
    *,
    rescale: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DARE each task vector, elect signs, weighted disjoint mean (PEFT ``dare_ties``)."""
    stacked = torch.stack(
        [dare_sparsify(t, density, rescale=rescale, generator=generator) for t in task_tensors]
    )
    return disjoint_merge(stacked, weights, elect_sign(stacked, majority_sign), "mean")


def dare_sparsify_mergekit(
    delta: torch.Tensor, density: float, *, rescale: bool = True, generator: torch.Generator | None = None
) -> torch.Tensor:
    """mergekit 0.1.5's ``sparsify.bernoulli`` with ``rescale_norm=l1``: keep each entry with probability
    ``density`` (mask drawn in float32 on CPU, as mergekit does) and rescale the survivors so the L1 norm of the
    tensor is unchanged (``rescaled_masked_tensor``: times ``||delta||_1 / ||kept||_1``, skipped when either norm
    is below 1e-7). With ``generator`` seeded as torch's global seed, the mask equals mergekit's."""
    if density >= 1:
        return delta
    if density < 0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    work = delta.dtype if (delta.device.type != "cpu" or delta.dtype == torch.bfloat16) else torch.float32
    keep = torch.bernoulli(torch.full_like(delta, density, dtype=work), generator=generator)
    x = delta.to(work)
    out = x * keep
    if rescale:
        before, after = x.abs().sum(), out.abs().sum()
        if before >= 1e-7 and after >= 1e-7:
            out = out * (before / after)
    return out.to(delta.dtype)


def _sparsifier(convention: str) -> Callable[..., torch.Tensor]:
    check_convention(convention)
    return dare_sparsify_mergekit if convention == "mergekit" else dare_sparsify


def _density(drop_rate: float) -> float:
    if not 0.0 <= drop_rate <= 1.0:
        raise ValueError(f"drop_rate must be in [0, 1], got {drop_rate}")
    return 1.0 - drop_rate


@register(
    name="dare",
    kind="merge",
    family="task_vector",
    aliases=("dare_linear",),
    paper=PAPER,
    arxiv="2311.03099",
    summary="drop each delta entry with prob p, rescale the rest by 1/(1-p), add the weighted deltas",
    verification="library-parity",
)
def dare(
    base: StateDict,
    models: Sequence[StateDict],
    *,
    weights: Sequence[float] | None = None,
    drop_rate: float = 0.9,
    scaling: float = 1.0,
    rescale: bool = True,
    seed: int | None = 0,
    convention: Convention = "mergekit",
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Language Models are Super Mario: Absorbing Abilities from Homologous Models as a Free Lunch
    (Yu et al., ICML 2024; arXiv:2311.03099) — DARE with task arithmetic ("dare_linear").

    DARE sets a random fraction p of each delta (fine-tuned minus base) to zero and rescales the survivors by
    1/(1-p), which keeps the expected delta unchanged; the sparsified deltas are then merged by task arithmetic.

    Formula:
        delta_t   = theta_t - theta_0
        m_t       ~ Bernoulli(1 - p)   (elementwise, independent)
        delta~_t  = m_t * delta_t / (1 - p)          E[delta~_t] = delta_t      (convention "peft" = the paper)
        delta~_t  = m_t * delta_t * ||delta_t||_1 / ||m_t * delta_t||_1        (convention "mergekit", per tensor)
        theta     = theta_0 + scaling * sum_t w_t * delta~_t

    Hyper-parameters:
        weights: per-model weights w_t (default 1 each: the paper merges unweighted; PEFT/mergekit accept
            weights).
        drop_rate: p, the drop rate (default 0.9; the paper drops 90% of delta parameters without loss in
            most of its experiments and up to 99% for large models). PEFT/mergekit call 1 - p ``density``.
        scaling: lambda of task arithmetic (default 1.0: the paper adds the rescaled deltas as they are;
            mergekit's ``lambda`` default).
        rescale: rescale the kept entries (default True; False is the paper's "drop only" ablation).
        seed: seed of the dropping masks (default 0; None draws from torch's global generator, as PEFT and
            Operational (alignkit's interface, not a paper hyper-parameter).
            mergekit do).
        convention: "mergekit" (default, mergekit 0.1.5 ``dare_linear``: rescale so each tensor keeps its L1
            norm — what most users merge with) or "peft" (PEFT ``dare_linear`` and the paper: divide by 1 - p).
        progress: show a rich progress bar over tensors (default False).
            Operational (alignkit's interface, not a paper hyper-parameter).

    Source: the official code ``yule-BUAA/MergeLM`` (``model_merging_methods/mask_weights_utils.py``,
    ``mask_input_with_mask_rate``: Bernoulli(mask_rate) mask, divide by 1 - mask_rate) was read; results equal
    ``peft.utils.merge_utils.dare_linear`` under the same seed with ``convention="peft"``, and mergekit 0.1.5's
    ``dare_linear`` under the same seed with ``convention="mergekit"`` (tests/merging/test_merge_peft_parity.py,
    tests/merging/test_merge_mergekit_parity.py).
    """
    w = resolve_weights(weights, len(models))
    density = _density(drop_rate)
    sparsify = _sparsifier(convention)
    gen = None if seed is None else torch.Generator().manual_seed(seed)

    def combine(_key: str, taus: list[torch.Tensor]) -> torch.Tensor:
        return scaling * weighted_sum([sparsify(t, density, rescale=rescale, generator=gen) for t in taus], w)

    return merge_deltas(
        base,
        models,
        combine,
        desc="DARE",
        progress=progress,
    )


@register(
    name="dare_ties",
    kind="merge",
    family="task_vector",
    paper=PAPER,
    arxiv="2311.03099",
    summary="DARE the deltas, then TIES sign election and disjoint mean",
    verification="library-parity",
)
def dare_ties(
    base: StateDict,
    models: Sequence[StateDict],
    *,
    weights: Sequence[float] | None = None,
    drop_rate: float = 0.9,
    scaling: float = 1.0,
    majority_sign: Literal["total", "frequency"] = "total",
    merge: Literal["mean", "sum"] | None = None,
    rescale: bool = True,
    seed: int | None = 0,
    convention: Convention = "mergekit",
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Language Models are Super Mario: Absorbing Abilities from Homologous Models as a Free Lunch
    (Yu et al., ICML 2024; arXiv:2311.03099) — DARE followed by TIES-merging's sign election and disjoint mean.

    The paper applies DARE before existing merging methods, TIES-merging among them; here DARE replaces TIES's
    magnitude trim (as PEFT's ``dare_ties`` and mergekit's ``dare_ties`` do).

    Formula:
        convention "mergekit" (default; mergekit 0.1.5 ``dare_ties``):
            delta~_t = m_t * delta_t * ||delta_t||_1 / ||m_t * delta_t||_1,   m_t ~ Bernoulli(1 - p)
            gamma    = sgn(sum_t w_t delta~_t)   (+1 where 0)
            tau_m,p  = sum_{t: sgn(w_t delta~_t,p) = gamma_p} w_t delta~_t,p            (merge "sum", its default)
                       [/ sum of the agreeing w_t                                       (merge "mean")]
        convention "peft" (peft.utils.merge_utils.dare_ties):
            delta~_t = m_t * delta_t / (1 - p)
            gamma    = sgn(sum_t delta~_t)   (+1 where 0)
            tau_m,p  = sum_{t: sgn(delta~_t,p) = gamma_p} w_t delta~_t,p / max(#agreeing, 1)  (merge "mean", only)
        theta     = theta_0 + scaling * tau_m

    Hyper-parameters:
        weights: per-model weights w_t (default 1 each: the paper merges unweighted, as ``dare``).
        drop_rate: p (default 0.9, the paper's main setting; see ``dare``).
        scaling: lambda (default 1.0, mergekit's ``lambda`` default).
        majority_sign: "total" (summed mass, the TIES paper's rule and mergekit's default) or "frequency".
        merge: "sum" or "mean" of the agreeing entries; None = the convention's rule (mergekit: "sum", its
            ``normalize: false`` default for dare_ties; PEFT: "mean", the only rule it has).
        rescale: rescale the kept entries (default True, the paper and both libraries; see ``dare``).
        seed: seed of the dropping masks (default 0; None uses torch's global generator).
            Operational (alignkit's interface, not a paper hyper-parameter).
        convention: "mergekit" (default, what most users merge with) or "peft".
        progress: show a rich progress bar over tensors (default False).
            Operational (alignkit's interface, not a paper hyper-parameter).

    Source: DARE as in ``dare``; equals ``peft.utils.merge_utils.dare_ties`` (``convention="peft"``) and
    mergekit 0.1.5's ``dare_ties`` (``convention="mergekit"``) under the same seed (tests).
    """
    w = resolve_weights(weights, len(models))
    density = _density(drop_rate)
    check_convention(convention)
    rule = merge or ("sum" if convention == "mergekit" else "mean")
    if rule not in ("mean", "sum"):
        raise ValueError(f"merge must be 'mean' or 'sum', got {merge!r}")
    if convention == "peft" and rule != "mean":
        raise ValueError(
            "convention='peft' takes the disjoint mean only (PEFT's dare_ties); use merge='mean'"
        )
    gen = None if seed is None else torch.Generator().manual_seed(seed)

    def combine(_key: str, taus: list[torch.Tensor]) -> torch.Tensor:
        if convention == "peft":
            return scaling * dare_ties_tensors(
                taus, w, density, majority_sign, rescale=rescale, generator=gen
            )
        sparse = [dare_sparsify_mergekit(t, density, rescale=rescale, generator=gen) for t in taus]
        return scaling * weighted_consensus_merge(sparse, w, majority_sign, normalize=rule == "mean")

    return merge_deltas(
        base,
        models,
        combine,
        desc="DARE-TIES",
        progress=progress,
    )
