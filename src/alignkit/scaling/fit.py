"""Fit a registered scaling law to runs: multi-start bounded least squares (scipy), bootstrap intervals,
prediction, and reading CSV files of runs (``#`` lines are provenance comments)."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alignkit.registry import Component, get
from alignkit.scaling._law import LawSpec, law_spec


def _law(law: str | Component) -> tuple[Component, LawSpec]:
    comp = get(law) if isinstance(law, str) else law
    return comp, law_spec(comp)


def read_runs(path: str | Path) -> dict[str, np.ndarray]:
    """A CSV of runs as ``{column: array}``; numeric columns are floats, others strings; ``#`` lines skipped."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no CSV of runs at {p}")
    with p.open(newline="") as fh:
        rows = list(csv.DictReader(line for line in fh if line.strip() and not line.lstrip().startswith("#")))
    if not rows:
        raise ValueError(f"{p}: no rows")
    out: dict[str, np.ndarray] = {}
    for col in rows[0]:
        vals = [r[col] for r in rows]
        try:
            out[col] = np.array([float(v) for v in vals])
        except ValueError:
            out[col] = np.array(vals)
    return out


def select(data: Mapping[str, Any], where: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The rows of ``data`` whose columns equal the given values (numbers compared as floats, others as text);
    an unknown column or a selection with no rows is an error naming it."""
    cols = {k: np.asarray(v) for k, v in data.items()}
    n = len(next(iter(cols.values()))) if cols else 0
    mask = np.ones(n, bool)
    for col, want in where.items():
        if col not in cols:
            raise ValueError(f"no column {col!r} to select on; got {sorted(cols)}")
        v = cols[col]
        if v.dtype.kind in "fiu":
            try:
                mask &= v == float(want)
            except ValueError:
                raise ValueError(f"column {col!r} is numeric; cannot select {col}={want!r}") from None
        else:
            mask &= v == str(want)
    if not mask.any():
        raise ValueError(f"no rows with {dict(where)}")
    return {k: v[mask] for k, v in cols.items()}


@dataclass
class FitResult:
    """A fitted law: point estimate, bootstrap percentile interval per coefficient, fit quality."""

    law: str
    params: dict[str, float]
    ci: dict[str, tuple[float, float]]
    fixed: dict[str, float]
    n: int
    rmse: float
    r2: float
    target: str
    inputs: tuple[str, ...]
    boot: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))
    level: float = 0.95

    def coefficients(self) -> dict[str, float]:
        return {**self.fixed, **self.params}

    def predict(self, x: Mapping[str, Any]) -> np.ndarray:
        return get(self.law)(x, **self.coefficients())

    def predict_interval(self, x: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Percentile band of the prediction over the bootstrap refits (same level as ``ci``)."""
        if self.boot.size == 0:
            p = self.predict(x)
            return p, p
        names = list(self.params)
        preds = np.stack(
            [get(self.law)(x, **self.fixed, **dict(zip(names, b, strict=True))) for b in self.boot]
        )
        q = (1 - self.level) / 2
        return np.quantile(preds, q, axis=0), np.quantile(preds, 1 - q, axis=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "law": self.law,
            "params": self.params,
            "ci": {k: list(v) for k, v in self.ci.items()},
            "level": self.level,
            "fixed": self.fixed,
            "n": self.n,
            "rmse": self.rmse,
            "r2": self.r2,
            "target": self.target,
            "inputs": list(self.inputs),
            "bootstrap_fits": int(self.boot.shape[0]),
        }


def _starts(bounds: list[tuple[float, float]], p0: np.ndarray, k: int, rng: np.random.Generator) -> list:
    out = [p0]
    for _ in range(max(0, k - 1)):
        s = []
        for lo, hi in bounds:
            if lo > 0 and hi / lo > 100:
                s.append(float(np.exp(rng.uniform(np.log(lo), np.log(hi)))))
            else:
                s.append(float(rng.uniform(lo, hi)))
        out.append(np.array(s))
    return out


def _solve(resid, p0s, lo, hi, tol=1e-12, max_nfev=4000, huber=None):  # noqa: ANN001, ANN202 - private helper
    from scipy.optimize import least_squares

    robust = {"loss": "huber", "f_scale": huber} if huber else {}
    best = None
    for p0 in p0s:
        p0 = np.clip(p0, lo + 1e-12 * (hi - lo), hi - 1e-12 * (hi - lo))
        try:
            r = least_squares(
                resid, p0, bounds=(lo, hi), x_scale="jac", max_nfev=max_nfev, xtol=tol, ftol=tol, **robust
            )
        except (ValueError, FloatingPointError):
            continue
        if np.isfinite(r.cost) and (best is None or r.cost < best.cost):
            best = r
    return best


def fit(
    law: str | Component,
    data: Mapping[str, Any],
    *,
    target: str | None = None,
    fix: Mapping[str, float] | None = None,
    p0: Mapping[str, float] | None = None,
    n_boot: int = 200,
    starts: int = 8,
    level: float = 0.95,
    seed: int = 0,
    huber: float | None = None,
) -> FitResult:
    """Fit ``law``'s free coefficients to ``data`` (columns: the law's inputs and its target).

    Residuals are ``log y_hat - log y`` for laws that declare log residuals (losses), else ``y_hat - y``.
    The search starts at ``p0`` (default: the law's published coefficients) and at ``starts - 1`` random points
    in the bounds; the lowest cost wins. ``n_boot`` refits on rows resampled with replacement give the
    percentile interval at ``level`` (0 turns the bootstrap off). ``fix`` holds coefficients at given values.
    ``huber=delta`` minimises the Huber loss of the residuals instead of their squares (Hoffmann et al. fit
    Chinchilla's law with delta = 1e-3 on log residuals, which is close to least absolute deviations)."""
    comp, spec = _law(law)
    target = target or spec.target
    x = {k: np.asarray(data[k]) for k in spec.inputs if k in data}
    comp(x, **comp.defaults)  # raises naming a missing input column
    if target not in data:
        raise ValueError(
            f"scaling law {comp.name!r}: data has no target column {target!r}; got {sorted(data)}"
        )
    fix = dict(fix or {})
    unknown = sorted((set(fix) | set(p0 or {})) - set(comp.defaults))
    if unknown:
        raise ValueError(
            f"scaling law {comp.name!r} has no coefficient {unknown}; it has {sorted(comp.defaults)}"
        )
    fixed = {**{k: comp.defaults[k] for k in spec.fixed if k not in fix}, **fix}
    names = [k for k in comp.defaults if k not in fixed]
    y = np.asarray(data[target], dtype=float)
    n = y.size
    if n < len(names):
        raise ValueError(f"{n} runs cannot determine {len(names)} coefficients {names}; fix some with fix=")
    if spec.log_residuals and np.any(y <= 0):
        raise ValueError(f"column {target!r} must be positive for a log-residual fit of {comp.name!r}")
    lo = np.array([spec.bounds[k][0] for k in names], dtype=float)
    hi = np.array([spec.bounds[k][1] for k in names], dtype=float)
    start = np.array([float({**comp.defaults, **(p0 or {})}[k]) for k in names])

    def make_resid(idx: np.ndarray):  # noqa: ANN202
        xs = {k: v[idx] for k, v in x.items()}
        ys = y[idx]

        def resid(p: np.ndarray) -> np.ndarray:
            with np.errstate(all="ignore"):
                pred = comp(xs, **fixed, **dict(zip(names, p, strict=True)))
                r = np.log(np.clip(pred, 1e-300, None)) - np.log(ys) if spec.log_residuals else pred - ys
            return np.where(np.isfinite(r), r, 1e6)

        return resid

    rng = np.random.default_rng(seed)
    all_idx = np.arange(n)
    if huber is not None and not huber > 0:
        raise ValueError(f"huber must be a positive delta; got {huber}")
    p0s = _starts(list(zip(lo, hi, strict=True)), start, starts, rng)
    best = _solve(make_resid(all_idx), p0s, lo, hi, huber=huber)
    if best is None:
        raise ValueError(f"scaling law {comp.name!r}: no start converged; pass p0= closer to the data")
    params = dict(zip(names, map(float, best.x), strict=True))
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        r = _solve(make_resid(idx), [best.x], lo, hi, tol=1e-8, max_nfev=300, huber=huber)
        if r is not None:
            boots.append(r.x)
    boot = np.array(boots) if boots else np.zeros((0, len(names)))
    q = (1 - level) / 2
    ci = {
        k: (float(np.quantile(boot[:, i], q)), float(np.quantile(boot[:, i], 1 - q)))
        if boot.size
        else (params[k], params[k])
        for i, k in enumerate(names)
    }
    pred = comp(x, **fixed, **params)
    rmse = float(np.sqrt(np.mean((pred - y) ** 2)))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1 - float(np.sum((pred - y) ** 2)) / ss_tot if ss_tot > 0 else float("nan")
    return FitResult(
        law=comp.name,
        params=params,
        ci=ci,
        fixed=fixed,
        n=n,
        rmse=rmse,
        r2=r2,
        target=target,
        inputs=spec.inputs,
        boot=boot,
        level=level,
    )


def fit_groups(
    law: str | Component, data: Mapping[str, Any], group_by: str, **kwargs: Any
) -> dict[str, FitResult]:
    """One fit per value of column ``group_by`` (LLMs on the Line: one line per pretraining dataset)."""
    if group_by not in data:
        raise ValueError(f"no column {group_by!r} to group by; got {sorted(data)}")
    keys = np.asarray(data[group_by])
    out = {}
    for g in dict.fromkeys(keys.tolist()):
        m = keys == g
        out[str(g)] = fit(law, {k: np.asarray(v)[m] for k, v in data.items()}, **kwargs)
    return out


def predict(law: str | Component, x: Mapping[str, Any], **coefficients: float) -> np.ndarray:
    """``law(x)`` with the given coefficients over its defaults (the paper's values)."""
    comp, _ = _law(law)
    return comp(x, **{**comp.defaults, **coefficients})
