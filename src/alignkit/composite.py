"""Weighted composition of objectives: ``ak.combine([("dpo", 1.0), ("sft", 1.0)])`` is itself an objective."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alignkit.registry import Objective, get
from alignkit.types import LossOutput

Spec = tuple[str | Objective, float] | tuple[str | Objective, float, dict[str, Any]]


def combine(components: Sequence[Spec], name: str | None = None) -> Objective:
    """An objective computing ``sum_k w_k * L_k(batch)``.

    Each component is ``(name_or_objective, weight)`` or ``(name_or_objective, weight, fixed_hyper_parameters)``.
    Hyper-parameters passed when calling the mix go to every component that takes them (``mix(batch, beta=0.1)``
    sets beta wherever there is one). Metrics are merged (first component wins on a name clash) and each
    component's loss is logged as ``loss/<name>``. TRL's ``loss_type=[...]`` with ``loss_weights`` is this.
    """
    if not components:
        raise ValueError("combine needs at least one (objective, weight) pair")
    parts: list[tuple[Objective, float, dict[str, Any]]] = []
    for spec in components:
        if len(spec) not in (2, 3):
            raise ValueError(f"each component is (objective, weight[, hyper_parameters]); got {spec!r}")
        obj = spec[0] if isinstance(spec[0], Objective) else get(spec[0])
        if not isinstance(obj, Objective):
            raise TypeError(f"{obj.name!r} is a {obj.kind}, not an objective")
        fixed = dict(spec[2]) if len(spec) == 3 else {}
        obj.resolve(**fixed)  # unknown names fail now, not at the first step
        parts.append((obj, float(spec[1]), fixed))
    batch_types = {o.batch_type for o, _, _ in parts if o.batch_type is not None}
    if len(batch_types) > 1:
        raise ValueError(
            f"cannot combine objectives over different batch types: {sorted(t.__name__ for t in batch_types)}"
        )
    defaults: dict[str, Any] = {}
    for obj, _, fixed in parts:
        for k, v in obj.defaults.items():
            if k not in fixed:
                defaults.setdefault(k, v)
    label = name or "+".join(f"{w:g}*{o.name}" for o, w, _ in parts)

    def mixed(batch: Any, **hp: Any) -> LossOutput:
        total = None
        losses = None
        metrics: dict[str, float] = {}
        for obj, weight, fixed in parts:
            own = {k: v for k, v in hp.items() if k in obj.defaults and k not in fixed}
            out = obj(batch, **fixed, **own)
            total = weight * out.loss if total is None else total + weight * out.loss
            losses = weight * out.losses if losses is None else losses + weight * out.losses
            for k, v in out.metrics.items():
                metrics.setdefault(k, v)
            metrics[f"loss/{obj.name}"] = out.loss.item()
        return LossOutput(loss=total, losses=losses, metrics=metrics)

    mixed.__doc__ = (
        f"Weighted mix {label}.\n\nFormula:\n    "
        + "\n    + ".join(f"{w:g} * L_{o.name}" for o, w, _ in parts)
        + "\n\n"
        + "\n\n".join(f"{o.name}:\n{o.formula}" for o, _, _ in parts)
    )
    first = parts[0][0]
    aggregation = next((o.aggregation for o, _, _ in parts if o.family != "sft"), first.aggregation)
    return Objective(
        name=label,
        kind="objective",
        fn=mixed,
        paper="; ".join(dict.fromkeys(o.paper for o, _, _ in parts)),
        arxiv="; ".join(dict.fromkeys(o.arxiv for o, _, _ in parts)),
        family=first.family,
        tags=("composite",),
        summary=f"weighted mix {label}",
        defaults=defaults,
        needs_reference=any(o.needs_reference for o, _, _ in parts),
        aggregation=aggregation,
        batch_type=next(iter(batch_types), None),
    )
