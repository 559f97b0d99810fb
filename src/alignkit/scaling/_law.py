"""How a scaling law is declared: a registered pure function ``law(x, *, coef=paper_value, ...) -> y`` whose
keyword defaults are the paper's fitted coefficients, plus what the fitter needs (input columns, target column,
bounds, whether residuals are taken in log space)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from alignkit.registry import Component, register


@dataclass(frozen=True)
class LawSpec:
    """What :func:`alignkit.scaling.fit` reads from a law.

    ``inputs``: the CSV columns the law takes (keys of ``x``); ``target``: the column it predicts; ``bounds``:
    ``{coef: (low, high)}`` for every coefficient; ``log_residuals``: fit ``log y`` (losses, positive metrics) or
    ``y`` itself; ``fixed``: coefficients the fit holds at their defaults unless asked to free them."""

    inputs: tuple[str, ...]
    target: str
    bounds: Mapping[str, tuple[float, float]]
    log_residuals: bool = True
    fixed: tuple[str, ...] = ()


def scaling_law(
    *,
    name: str,
    paper: str,
    arxiv: str,
    inputs: Iterable[str],
    target: str,
    bounds: Mapping[str, tuple[float, float]],
    log_residuals: bool = True,
    fixed: Iterable[str] = (),
    aliases: Iterable[str] = (),
    tags: Iterable[str] = (),
    verification: str | None = None,
) -> Callable[[Callable[..., np.ndarray]], Component]:
    """Register ``fn`` as kind ``scaling_law`` and attach its :class:`LawSpec` (``component.fn.law``)."""

    def deco(fn: Callable[..., np.ndarray]) -> Component:
        spec = LawSpec(tuple(inputs), target, dict(bounds), log_residuals, tuple(fixed))
        fn.law = spec  # type: ignore[attr-defined]
        comp = register(
            name=name,
            kind="scaling_law",
            family="scaling",
            paper=paper,
            arxiv=arxiv,
            aliases=aliases,
            tags=("modality:any", *tags),
            verification=verification,
        )(fn)
        missing = sorted(set(comp.defaults) - set(spec.bounds))
        if missing:
            raise ValueError(f"scaling law {name!r}: no bounds for {missing}")
        return comp

    return deco


def law_spec(component: Component) -> LawSpec:
    spec = getattr(component.fn, "law", None)
    if spec is None or component.kind != "scaling_law":
        raise TypeError(f"{component.name!r} is a {component.kind}, not a scaling law")
    return spec


def columns(x: Mapping[str, Any], names: Iterable[str], law: str) -> list[np.ndarray]:
    """``x[name]`` as float arrays, with an error naming the missing column."""
    out = []
    for n in names:
        if n not in x:
            raise ValueError(f"scaling law {law!r} needs column {n!r}; got {sorted(x)}")
        out.append(np.asarray(x[n], dtype=float))
    return out
