"""Learning-rate schedules as ``LambdaLR`` multipliers: constant, linear, cosine and warmup-stable-decay (WSD) with
the cooldown shapes studied for WSD.

>>> lam = lr_lambda("wsd", total=1000, warmup=50, decay_ratio=0.2, cooldown="1-sqrt")
>>> torch.optim.lr_scheduler.LambdaLR(optimizer, lam)

``constant`` / ``linear`` / ``cosine`` / ``wsd`` with ``cooldown="linear"`` and ``min_ratio=0`` give exactly the
values of the trainer's former ``_schedule`` (tested). The warmup is linear, ``(step + 1) / (warmup + 1)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from alignkit.registry import register

KINDS = ("constant", "linear", "cosine", "wsd")

#: cooldown progress u in [0, 1] -> multiplier f(u) in [0, 1], f(0) = 1, f(1) = 0, non-increasing.
COOLDOWN_SHAPES: dict[str, Callable[[float], float]] = {
    "linear": lambda u: 1.0 - u,
    "cosine": lambda u: 0.5 * (1.0 + math.cos(math.pi * u)),
    "1-sqrt": lambda u: 1.0 - math.sqrt(u),
    "1-square": lambda u: 1.0 - u * u,
    "mirror-cosine": lambda u: 2.0 * (1.0 - u) - 0.5 * (1.0 + math.cos(math.pi * u)),
}


def cooldown_factor(shape: str, u: float, min_ratio: float = 0.0) -> float:
    """The cooldown multiplier at progress ``u`` (clamped to [0, 1]): min_ratio + (1 - min_ratio) * f(u) — the
    cooldown shapes of the WSD schedule paper (arXiv:2508.01483).

    Formula:
        linear: f = 1 - u;  cosine: f = (1 + cos(pi u)) / 2;  1-sqrt: f = 1 - sqrt(u);  1-square: f = 1 - u^2;
        mirror-cosine: f = 2 (1 - u) - (1 + cos(pi u)) / 2   (the cosine reflected about the linear decay)
        eta(t) = eta_max * (min_ratio + (1 - min_ratio) * f(u)),  u = (t - t_decay) / (T - t_decay)

    Hyper-parameters:
        shape: the cooldown shape; "1-sqrt" is the one the paper finds best among the simple shapes (with
            Hägele et al. 2024, arXiv:2405.18392), "linear" is the trainer's former WSD decay.
        min_ratio: 0.0 — decay to zero (the paper's and the former trainer's setting).
    """
    if shape not in COOLDOWN_SHAPES:
        raise ValueError(f"cooldown shape must be one of {sorted(COOLDOWN_SHAPES)}; got {shape!r}")
    u = min(1.0, max(0.0, u))
    return min_ratio + (1.0 - min_ratio) * COOLDOWN_SHAPES[shape](u)


register(
    name="wsd_cooldown",
    kind="procedure",
    paper="Training Dynamics of the Cooldown Stage in Warmup-Stable-Decay Learning Rate Scheduler",
    arxiv="2508.01483",
    family="optimizer",
    tags=("modality:any", "lr-schedule", "stability"),
    verification="paper-formula",
)(cooldown_factor)


def lr_lambda(
    kind: str,
    total: int,
    warmup: int,
    decay_ratio: float,
    *,
    cooldown: str = "linear",
    min_ratio: float = 0.0,
) -> Callable[[int], float]:
    """The multiplier ``f(step)`` of schedule ``kind`` over ``total`` steps (for ``torch.optim.lr_scheduler.LambdaLR``).

    ``warmup``: linear warmup steps. ``decay_ratio``: WSD's cooldown fraction of ``total``. ``cooldown``: WSD's
    cooldown shape (:data:`COOLDOWN_SHAPES`); ``min_ratio``: WSD's final multiplier.
    """
    if kind not in KINDS:
        raise ValueError(f"lr_scheduler must be one of {KINDS}; got {kind!r}")
    if cooldown not in COOLDOWN_SHAPES:
        raise ValueError(f"cooldown shape must be one of {sorted(COOLDOWN_SHAPES)}; got {cooldown!r}")
    if kind != "wsd" and (cooldown != "linear" or min_ratio):
        raise ValueError("cooldown and min_ratio apply to the 'wsd' schedule only")
    decay_start = total - max(1, int(round(decay_ratio * total)))

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if step < decay_start:
            return 1.0
        u = (step - decay_start) / max(1, total - decay_start)
        if cooldown == "linear" and not min_ratio:
            return max(0.0, 1.0 - u)  # the former trainer's expression, kept verbatim
        return cooldown_factor(cooldown, u, min_ratio)

    return f
