"""Optimizers beyond AdamW, registered as kind "optimizer" and built by name for ``alignkit train --optimizer``.

>>> from alignkit.optim import build_optimizer
>>> opt = build_optimizer("sam", model.parameters(), lr=1e-3, betas=(0.9, 0.999), rho=0.05)

SAM needs two passes per step (see :class:`SAM`): the trainer calls ``opt.step(closure)`` where the closure
recomputes the loss and calls backward. Bloop needs a main and an auxiliary loss (``opt.backward(main, aux)``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from alignkit.optim.bloop import Bloop, bloop_direction
from alignkit.optim.collage import CollageAdamW, effective_descent_quality, fast_two_sum, grow, two_sum
from alignkit.optim.frugal import Frugal
from alignkit.optim.sam import SAM
from alignkit.registry import get, register

__all__ = [
    "SAM",
    "Bloop",
    "CollageAdamW",
    "Frugal",
    "bloop_direction",
    "build_optimizer",
    "effective_descent_quality",
    "fast_two_sum",
    "grow",
    "needs_closure",
    "two_sum",
]


def _adamw(
    params: Iterable[Any], *, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), **kw: Any
) -> torch.optim.Optimizer:
    """AdamW (torch.optim.AdamW), the default optimizer; here so every optimizer is built the same way."""
    return torch.optim.AdamW(params, lr=lr, betas=betas, **kw)


_TAGS = ("modality:any", "optimizer")
register(
    name="sam",
    kind="optimizer",
    aliases=("asam",),
    paper="Sharpness-Aware Minimization for Efficiently Improving Generalization",
    arxiv="2010.01412",
    family="optimizer",
    tags=(*_TAGS, "generalization", "two-pass"),
    verification="official-code-parity",
)(SAM)
register(
    name="frugal",
    kind="optimizer",
    paper="FRUGAL: Memory-Efficient Optimization by Reducing State Overhead for Scalable Training",
    arxiv="2411.07837",
    family="optimizer",
    tags=(*_TAGS, "memory-efficient"),
    verification="paper-formula",
)(Frugal)
register(
    name="collage_adamw",
    kind="optimizer",
    aliases=("collage",),
    paper="Collage: Light-Weight Low-Precision Strategy for LLM Training",
    arxiv="2405.03637",
    family="optimizer",
    tags=(*_TAGS, "low-precision", "bf16"),
    verification="reconstruction",
)(CollageAdamW)
register(
    name="bloop",
    kind="optimizer",
    paper="Careful with that Scalpel: Improving Gradient Surgery with an EMA",
    arxiv="2402.02998",
    family="optimizer",
    tags=(*_TAGS, "multi-objective", "gradient-surgery"),
    verification="official-code-parity",
)(Bloop)

_BUILDERS: dict[str, Any] = {
    "adamw": _adamw,
    "sam": SAM,
    "frugal": Frugal,
    "collage_adamw": CollageAdamW,
    "bloop": Bloop,
}


def build_optimizer(
    name: str,
    param_groups: Iterable[Any],
    *,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    **kwargs: Any,
) -> torch.optim.Optimizer:
    """The optimizer ``name`` (``adamw`` or a registered optimizer name / alias) over ``param_groups``.

    ``lr`` and ``betas`` are the trainer's; ``kwargs`` are the optimizer's own hyper-parameters (``rho``,
    ``adaptive``, ``density``, ``lam`` ...) and base-optimizer arguments (``weight_decay``). ``asam`` is SAM with
    ``adaptive=True``. Unknown names and unknown hyper-parameters raise with the valid choices.
    """
    key = "adamw" if name == "adamw" else get(name).name
    if name == "asam":
        kwargs.setdefault("adaptive", True)
    if key not in _BUILDERS or (key != "adamw" and get(key).kind != "optimizer"):
        raise ValueError(
            f"{name!r} is not an optimizer alignkit can build; choose one of {sorted(_BUILDERS)}"
        )
    try:
        return _BUILDERS[key](param_groups, lr=lr, betas=betas, **kwargs)
    except TypeError as exc:
        raise TypeError(f"optimizer {name!r}: {exc}") from exc


def needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step`` must be given a closure that recomputes the loss (SAM's second pass)."""
    return isinstance(optimizer, SAM)
