"""Control+Shift (arXiv:2409.07940): generate train/test sets whose distribution shift has a chosen intensity,
by controlling how the two sets draw from two disjoint regions of a latent space."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from alignkit.registry import register

PAPER = "Control+Shift: Generating Controllable Distribution Shifts"
T = TypeVar("T")


def _check(intensity: float) -> None:
    if not 0.0 <= intensity <= 1.0:
        raise ValueError(f"intensity must be in [0, 1]; got {intensity}")


@register(
    name="control_shift",
    kind="data_rule",
    family="distribution_shift",
    paper=PAPER,
    arxiv="2409.07940",
    aliases=("controllable_shift",),
    tags=("modality:any", "distribution-shift", "generator"),
    verification="reconstruction",
)
def controlled_shift_latents(
    n_train: int, n_test: int, dim: int, *, intensity: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Control+Shift: Generating Controllable Distribution Shifts (arXiv:2409.07940).

    A decoder G maps latents to data; shifting the latent distribution shifts the data with a known intensity.
    The latent space is cut into two halves A = {z_1 < 0} and B = {z_1 >= 0}; train latents over-sample A and
    test latents over-sample B by the intensity s, so the two latent distributions share exactly 1 - s of their
    mass: s = 0 is no shift, s = 1 gives disjoint supports. Decode both with the same G (a generative model, or
    a testbed task's prompt pool with :func:`shifted_split`).

    Formula:
        P = N(0, I);  P_A = P restricted to z_1 < 0;  P_B = P restricted to z_1 >= 0;  P = (P_A + P_B) / 2
        P_train = (1 - s) P + s P_A,    P_test = (1 - s) P + s P_B
        TV(P_train, P_test) = s;   overlap = 1 - s

    Hyper-parameters:
        intensity: 0.5 — s in [0, 1] (ours; the paper sweeps it).
        seed: 0 — the draws (ours: any fixed seed, for repeatable draws).

    The half-space partition is our reading of "controlled overlap of latent supports" (the paper's exact
    latent rule was not readable here): verification "reconstruction". Returns (z_train (n_train, dim),
    z_test (n_test, dim)).
    """
    _check(intensity)
    if dim < 1:
        raise ValueError("dim must be >= 1")
    rng = np.random.default_rng(seed)

    def draw(n: int, half: int) -> np.ndarray:
        z = rng.standard_normal((n, dim))
        from_half = rng.random(n) < intensity  # these come from the set's own half
        sign = np.where(from_half, half, np.sign(z[:, 0]) + (z[:, 0] == 0))
        z[:, 0] = np.abs(z[:, 0]) * sign
        return z

    return draw(n_train, -1), draw(n_test, 1)


def shifted_split(
    pool: Sequence[T],
    latent: Callable[[T], float],
    *,
    intensity: float,
    n_train: int,
    n_test: int,
    seed: int = 0,
) -> tuple[list[T], list[T]]:
    """Control+Shift on a finite pool (e.g. a testbed task's prompts): items are split at the median of a scalar
    ``latent`` into halves A (below) and B; each train item comes from A with probability (1 + s) / 2 and each
    test item from B with probability (1 + s) / 2, drawn without replacement. s = 0: two i.i.d. samples of the
    pool; s = 1: train entirely below the median, test entirely above."""
    _check(intensity)
    vals = np.array([float(latent(p)) for p in pool])
    order = np.argsort(vals, kind="stable")
    half_a, half_b = list(order[: len(order) // 2]), list(order[len(order) // 2 :])
    rng = np.random.default_rng(seed)
    rng.shuffle(half_a)
    rng.shuffle(half_b)

    def take(n: int, own: list[int], other: list[int]) -> list[T]:
        k_own = int(rng.binomial(n, (1 + intensity) / 2))
        if k_own > len(own) or n - k_own > len(other):
            raise ValueError(
                f"the pool ({len(pool)} items) is too small for n_train={n_train}, n_test={n_test}"
            )
        picked = [own.pop() for _ in range(k_own)] + [other.pop() for _ in range(n - k_own)]
        return [pool[i] for i in rng.permutation(picked)]

    train = take(n_train, half_a, half_b)
    test = take(n_test, half_b, half_a)
    return train, test


def latent_for_task(task: str) -> Callable[[Any], float]:
    """The latent used to shift a testbed task's prompts: the VADER sentiment of the prompt line (sentiment),
    the size of the answer (arith), the prompt length otherwise."""
    if task == "sentiment":
        from alignkit.testbed.tasks import vader_compound

        return lambda p: vader_compound(p.meta["line"])
    if task == "arith":
        return lambda p: float(abs(p.meta["answer"]))
    return lambda p: float(len(p.ids))
