"""Plot a fitted law against its data (matplotlib, Agg backend; writes a PNG)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from alignkit.scaling.fit import FitResult


def plot_fit(
    result: FitResult,
    data: Mapping[str, Any],
    path: str | Path,
    *,
    x: str | None = None,
    group: str | None = None,
    title: str | None = None,
) -> Path:
    """Data as points, the fit as a line with its bootstrap band, against input ``x`` (default: the law's
    first input that varies); other inputs are held per group (``group``, default the second input)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = {k: np.asarray(data[k]) for k in result.inputs}
    varying = [k for k in result.inputs if np.unique(cols[k]).size > 1] or list(result.inputs)
    x = x or varying[0]
    others = [k for k in result.inputs if k != x]
    group = group if group is not None else (others[0] if others else None)
    y = np.asarray(data[result.target], dtype=float)
    keys = np.asarray(data[group]) if group else np.zeros(y.size)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    groups = list(dict.fromkeys(keys.tolist()))[:10]
    for i, g in enumerate(groups):
        m = keys == g
        color = f"C{i % 10}"
        label = (
            f"{group}={g:.3g}" if group and isinstance(g, float) else (f"{group}={g}" if group else "runs")
        )
        ax.scatter(cols[x][m], y[m], color=color, s=18, label=label, zorder=3)
        xs = np.geomspace(cols[x][m].min(), cols[x][m].max(), 100) if cols[x][m].min() > 0 else None
        if xs is None:
            xs = np.linspace(cols[x][m].min(), cols[x][m].max(), 100)
        grid = {x: xs}
        order = np.argsort(cols[x][m])
        for k in others:  # hold the other inputs at this group's values, interpolated along x
            grid[k] = np.interp(xs, cols[x][m][order], cols[k][m][order].astype(float))
        lo, hi = result.predict_interval(grid)
        ax.plot(xs, result.predict(grid), color=color, lw=1.5)
        ax.fill_between(xs, lo, hi, color=color, alpha=0.15, lw=0)
    if cols[x].min() > 0 and cols[x].max() / cols[x].min() > 20:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel(result.target)
    coef = ", ".join(f"{k}={v:.3g}" for k, v in result.params.items())
    ax.set_title(title or f"{result.law}: {coef}", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
