"""Elasticity: how fast an aligned model's behaviour snaps back under perturbing fine-tuning."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import nn

from alignkit.registry import register


def elasticity_curve(
    model: nn.Module,
    perturb_step: Callable[[nn.Module, int], None],
    probes: Mapping[str, Callable[[nn.Module], float]],
    steps: int,
) -> dict[str, list[float]]:
    """Language Models Resist Alignment: Evidence From Data Compression (Ji et al., ACL 2025; arXiv:2406.06144) —
    the elasticity measurement: fine-tune an aligned model on a perturbing set and track probe losses.

    Formula:
        curve[probe][t] = probe(model after t perturbing steps),  t = 0..steps
        rebound(probe) = (|curve[k] - curve[0]| / k) / (|curve[T] - curve[k]| / (T - k))   (``rebound_ratio``)
        > 1: fast change first, then slow (the paper's "rebound"); compare the pre-training probe with the
        alignment probe: elasticity = the aligned behaviour moves back faster than the pre-training one.

    Hyper-parameters:
        perturb_step: ``perturb_step(model, t)`` does one fine-tuning step on the perturbing data.
        probes: ``{"pretrain": f, "aligned": g, ...}``, each ``f(model) -> loss``.
        steps: number of perturbing steps T.

    Source: the paper's abstract and summaries (via the catalog: elasticity = resistance + rebound; aligned
    models return towards the pre-training distribution fast at first, then slowly; formalised with normalised
    compression rates). UNVERIFIED: the paper's compression-rate estimator and protocol details; the rebound ratio
    is this library's summary statistic, not the paper's.
    """
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not probes:
        raise ValueError("probes: needs at least one probe")
    curve = {k: [float(f(model))] for k, f in probes.items()}
    for t in range(steps):
        perturb_step(model, t)
        for k, f in probes.items():
            curve[k].append(float(f(model)))
    return curve


def rebound_ratio(values: Sequence[float], early: int) -> float:
    """Mean absolute change per step over the first ``early`` steps divided by that over the rest."""
    n = len(values) - 1
    if not 0 < early < n:
        raise ValueError(f"early must be in (0, {n}), got {early}")
    fast = abs(values[early] - values[0]) / early
    slow = abs(values[-1] - values[early]) / (n - early)
    return fast / slow if slow > 0 else float("inf") if fast > 0 else 1.0


register(
    name="elasticity",
    kind="diagnostic",
    family="harmful_finetuning",
    paper="Language Models Resist Alignment: Evidence From Data Compression",
    arxiv="2406.06144",
    tags=("safety",),
    summary="probe losses along perturbing fine-tuning; rebound ratio of early vs late change",
)(elasticity_curve)
