"""Weighted composition of objectives: ``ak.combine([("dpo", 1.0), ("sft", 1.0)])`` is itself an objective."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alignkit.registry import Objective, get
from alignkit.spec import VERIFICATION_LEVELS, StateSpec, merge_specs
from alignkit.types import LossOutput

Spec = tuple[str | Objective, float] | tuple[str | Objective, float, dict[str, Any]]


def combine(components: Sequence[Spec], name: str | None = None) -> Objective:
    """An objective computing ``sum_k w_k * L_k(batch)``.

    Each component is ``(name_or_objective, weight)`` or ``(name_or_objective, weight, fixed_hyper_parameters)``.
    Hyper-parameters passed when calling the mix go to every component that takes them (``mix(batch, beta=0.1)``
    sets beta wherever there is one). Metrics are merged (first component wins on a name clash) and each
    component's loss is logged as ``loss/<name>``. TRL's ``loss_type=[...]`` with ``loss_weights`` is this.

    The mix's spec is the union of its parts' (``alignkit.spec.merge_specs``; the same whatever their order). A mix
    of per-example and per-token parts returns ``LossOutput.by_normalisation`` so the trainer weights each part by
    its own share of the batch. Parts with running state keep it under ``"<part name>/<state name>"``.
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
    spec = merge_specs(o.spec for o, _, _ in parts)
    defaults: dict[str, Any] = {}
    for obj, _, fixed in parts:
        for k, v in obj.hyper_parameters.items():
            if k not in fixed:
                defaults.setdefault(k, v)
    # running state of each part, namespaced by the part's name (and position when a part repeats)
    names = [o.name for o, _, _ in parts]
    keys = [n if names.count(n) == 1 else f"{n}#{i}" for i, n in enumerate(names)]
    state_init: dict[str, float] = {}
    for key, (obj, _, _) in zip(keys, parts, strict=True):
        if obj.state is not None:
            state_init.update({f"{key}/{k}": v for k, v in obj.state.init.items()})
    defaults.update(state_init)
    label = name or "+".join(f"{w:g}*{o.name}" for o, w, _ in parts)

    def mixed(batch: Any, **hp: Any) -> LossOutput:
        total = None
        losses = None
        by_norm: dict[str, Any] = {}
        metrics: dict[str, float] = {}
        stats: dict[str, float] = {}
        for key, (obj, weight, fixed) in zip(keys, parts, strict=True):
            own = {k: v for k, v in hp.items() if k in obj.hyper_parameters and k not in fixed}
            if obj.state is not None:
                own.update({k: hp[f"{key}/{k}"] for k in obj.state.init})
            out = obj(batch, **fixed, **own)
            total = weight * out.loss if total is None else total + weight * out.loss
            losses = weight * out.losses if losses is None else losses + weight * out.losses
            part = weight * out.loss
            by_norm[obj.normalisation] = (
                part if obj.normalisation not in by_norm else by_norm[obj.normalisation] + part
            )
            for k, v in out.metrics.items():
                metrics.setdefault(k, v)
            metrics[f"loss/{obj.name}"] = out.loss.item()
            stats.update({f"{key}/{k}": v for k, v in out.state.items()})
        return LossOutput(loss=total, losses=losses, metrics=metrics, state=stats, by_normalisation=by_norm)

    def update(state: dict[str, float], stats: dict[str, float]) -> dict[str, float]:
        new = dict(state)
        for key, (obj, _, _) in zip(keys, parts, strict=True):
            if obj.state is None:
                continue
            mine = {k: state[f"{key}/{k}"] for k in obj.state.init}
            got = {k[len(key) + 1 :]: v for k, v in stats.items() if k.startswith(f"{key}/")}
            new.update({f"{key}/{k}": v for k, v in obj.state.update(mine, got).items()})
        return new

    mixed.__doc__ = (
        f"Weighted mix {label}.\n\nFormula:\n    "
        + "\n    + ".join(f"{w:g} * L_{o.name}" for o, w, _ in parts)
        + "\n\n"
        + "\n\n".join(f"{o.name}:\n{o.formula}" for o, _, _ in parts)
    )
    families = sorted({o.family for o, _, _ in parts})
    return Objective(
        name=label,
        kind="objective",
        fn=mixed,
        paper="; ".join(dict.fromkeys(o.paper for o, _, _ in parts)),
        arxiv="; ".join(dict.fromkeys(o.arxiv for o, _, _ in parts)),
        family=families[0] if len(families) == 1 else "composite",
        tags=("composite",),
        summary=f"weighted mix {label}",
        defaults=defaults,
        needs_reference=spec.needs_reference,
        aggregation=next(
            (o.aggregation for o, _, _ in parts if o.normalisation == "example"), spec.aggregation
        ),
        batch_type=next(iter(batch_types), None),
        requires=spec.requires,
        optional=spec.optional,
        requires_when=spec.requires_when,
        normalisation=spec.normalisation,
        state=StateSpec(init=state_init, update=update) if state_init else None,
        verification=_weakest(o.verification for o, _, _ in parts),
    )


def _weakest(levels: Any) -> str | None:
    """A mix is verified as well as its least-verified part."""
    order = list(VERIFICATION_LEVELS)
    known = [lv for lv in levels]
    if not known or any(lv is None for lv in known):
        return None
    return max(known, key=order.index)
