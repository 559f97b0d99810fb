"""WiSE-FT: interpolate the weights of the zero-shot (pre-fine-tuning) and the fine-tuned model."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from alignkit.engine._progress import make_progress
from alignkit.merging.checkpoint import StateDict, check_compatible, source_of, work_dtype
from alignkit.registry import register


@register(
    name="wise_ft",
    verification="paper-formula",
    kind="merge",
    family="weight_averaging",
    aliases=("linear_interpolation",),
    paper="Robust fine-tuning of zero-shot models",
    arxiv="2109.01903",
    summary="theta_alpha = (1 - alpha) theta_0 + alpha theta_1 for every tensor",
)
def wise_ft(
    theta_0: StateDict,
    theta_1: StateDict,
    *,
    alpha: float = 0.5,
    keys: Iterable[str] | None = None,
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """Robust fine-tuning of zero-shot models (Wortsman et al., CVPR 2022; arXiv:2109.01903) — WiSE-FT.

    Weight-space ensembling: the fine-tuned model is mixed with the model it was fine-tuned from, trading
    in-distribution accuracy against robustness to distribution shift along alpha.

    Formula:
        theta_alpha[k] = (1 - alpha) * theta_0[k] + alpha * theta_1[k]   for every float tensor k
        (alpha = 0 gives theta_0 exactly, alpha = 1 gives theta_1 exactly)

    Hyper-parameters:
        alpha: mixing coefficient (default 0.5, the official code's ``--alpha`` default; the paper sweeps
            alpha in [0, 1]: use ``wise_ft_curve``).
        keys: only these tensors are mixed and the rest are taken from theta_1 (default None = every tensor;
            the head's keys give the paper's "WiSE-FT, linear classifier" variant).
        progress: show a rich progress bar over tensors (default False).
            Operational (alignkit's interface, not a paper hyper-parameter).

    Non-float tensors are copied and must be equal in both. Computed in float32 (float64 kept) and cast back.

    Source: the official code ``mlfoundations/wise-ft`` (``src/wise_ft.py``: per key
    ``(1 - alpha) * theta_0[key] + alpha * theta_1[key]``; ``src/args.py``: ``--alpha`` default [0.5]) was read.
    """
    names = check_compatible(theta_0, [theta_1], base_name="theta_0")
    only = None if keys is None else set(keys)
    if only is not None and not only <= set(names):
        raise ValueError(f"keys not in the checkpoints: {sorted(only - set(names))[:3]}")
    out: dict[str, torch.Tensor] = {}
    with make_progress(disable=not progress) as bar:
        task = bar.add_task(f"WiSE-FT alpha={alpha:g}", total=len(names))
        for k in names:
            a, b = theta_0[k], theta_1[k]
            if not a.is_floating_point():
                if not torch.equal(a, b):
                    raise ValueError(
                        f"{source_of(theta_1, 'theta_1')}: non-float tensor {k!r} differs from theta_0's"
                    )
                out[k] = b.clone()
            elif only is not None and k not in only:
                out[k] = b.clone()
            else:
                wd = work_dtype(a)
                out[k] = ((1.0 - alpha) * a.to(wd) + alpha * b.to(wd)).to(a.dtype)
            bar.advance(task)
    return out


def wise_ft_curve(
    theta_0: StateDict,
    theta_1: StateDict,
    evaluate: Callable[[dict[str, torch.Tensor]], Any],
    *,
    alphas: Sequence[float] = tuple(i / 10 for i in range(11)),
    keys: Iterable[str] | None = None,
    progress: bool = True,
) -> list[tuple[float, Any]]:
    """Trace the WiSE-FT curve: ``[(alpha, evaluate(wise_ft(theta_0, theta_1, alpha=alpha))) for alpha]``.

    ``evaluate`` gets the interpolated state dict and returns anything (an accuracy, a dict of metrics); the
    paper plots in-distribution against distribution-shift accuracy along alpha in {0, 0.1, ..., 1}.
    """
    keys = None if keys is None else list(keys)
    out: list[tuple[float, Any]] = []
    with make_progress(disable=not progress) as bar:
        task = bar.add_task("WiSE-FT curve", total=len(alphas))
        for alpha in alphas:
            out.append((float(alpha), evaluate(wise_ft(theta_0, theta_1, alpha=float(alpha), keys=keys))))
            bar.advance(task)
    return out
