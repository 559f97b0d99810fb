"""DARE: randomly Drop delta parameters And REscale the rest, then merge (linearly or with TIES)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from alignkit.merging.checkpoint import StateDict, merge_deltas
from alignkit.merging.task_arithmetic import resolve_weights, weighted_sum
from alignkit.merging.ties import disjoint_merge, elect_sign
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
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Language Models are Super Mario: Absorbing Abilities from Homologous Models as a Free Lunch
    (Yu et al., ICML 2024; arXiv:2311.03099) — DARE with task arithmetic ("dare_linear").

    DARE sets a random fraction p of each delta (fine-tuned minus base) to zero and rescales the survivors by
    1/(1-p), which keeps the expected delta unchanged; the sparsified deltas are then merged by task arithmetic.

    Formula:
        delta_t   = theta_t - theta_0
        m_t       ~ Bernoulli(1 - p)   (elementwise, independent)
        delta~_t  = m_t * delta_t / (1 - p)          E[delta~_t] = delta_t
        theta     = theta_0 + scaling * sum_t w_t * delta~_t

    Hyper-parameters:
        weights: per-model weights w_t (default 1 each).
        drop_rate: p, the drop rate (default 0.9; the paper drops 90% of delta parameters without loss in
            most of its experiments and up to 99% for large models). PEFT/mergekit call 1 - p ``density``.
        scaling: lambda of task arithmetic (default 1.0).
        rescale: divide the kept entries by 1 - p (default True; False is the paper's "drop only" ablation).
        seed: seed of the dropping masks (default 0; None draws from torch's global generator, as PEFT does).
        progress: show a rich progress bar over tensors (default False).

    Source: the official code ``yule-BUAA/MergeLM`` (``model_merging_methods/mask_weights_utils.py``,
    ``mask_input_with_mask_rate``: Bernoulli(mask_rate) mask, divide by 1 - mask_rate) was read; results equal
    ``peft.utils.merge_utils.dare_linear`` under the same seed (tests/merging/test_peft_parity.py).
    """
    w = resolve_weights(weights, len(models))
    density = _density(drop_rate)
    gen = None if seed is None else torch.Generator().manual_seed(seed)
    return merge_deltas(
        base,
        models,
        lambda _k, taus: scaling * dare_linear_tensors(taus, w, density, rescale=rescale, generator=gen),
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
)
def dare_ties(
    base: StateDict,
    models: Sequence[StateDict],
    *,
    weights: Sequence[float] | None = None,
    drop_rate: float = 0.9,
    scaling: float = 1.0,
    majority_sign: Literal["total", "frequency"] = "total",
    rescale: bool = True,
    seed: int | None = 0,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Language Models are Super Mario: Absorbing Abilities from Homologous Models as a Free Lunch
    (Yu et al., ICML 2024; arXiv:2311.03099) — DARE followed by TIES-merging's sign election and disjoint mean.

    The paper applies DARE before existing merging methods, TIES-merging among them; here DARE replaces TIES's
    magnitude trim (as PEFT's ``dare_ties`` and mergekit's ``dare_ties`` do).

    Formula:
        delta~_t  = Bernoulli(1 - p) mask * delta_t / (1 - p)
        gamma     = sgn(sum_t delta~_t)   (+1 where 0)
        tau_m,p   = sum_{t: sgn(delta~_t,p) = gamma_p} w_t delta~_t,p / max(#agreeing, 1)
        theta     = theta_0 + scaling * tau_m

    Hyper-parameters:
        weights: per-model weights w_t (default 1 each).
        drop_rate: p (default 0.9, see ``dare``).
        scaling: lambda (default 1.0).
        majority_sign: "total" (summed mass, TIES's rule) or "frequency".
        rescale: divide the kept entries by 1 - p (default True).
        seed: seed of the dropping masks (default 0; None uses torch's global generator).
        progress: show a rich progress bar over tensors (default False).

    Source: DARE as in ``dare``; equals ``peft.utils.merge_utils.dare_ties`` under the same seed (tests).
    """
    w = resolve_weights(weights, len(models))
    density = _density(drop_rate)
    gen = None if seed is None else torch.Generator().manual_seed(seed)
    return merge_deltas(
        base,
        models,
        lambda _k, taus: (
            scaling * dare_ties_tensors(taus, w, density, majority_sign, rescale=rescale, generator=gen)
        ),
        desc="DARE-TIES",
        progress=progress,
    )
