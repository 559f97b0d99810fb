"""Judge style bias: how far a proxy judge's pairwise preferences follow a style feature rather than the gold
reward (after "Style over Substance", SOS-Bench)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from alignkit.registry import register

PAPER = "Style over Substance: Failure Modes of LLM Judges in Alignment Benchmarking"
STATS = (
    "gold_agreement",
    "style_agreement",
    "gold_weight",
    "style_weight",
    "style_share",
    "partial_corr_style",
)


def _vector(name: str, values: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence (one value per pair); got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} holds a non-finite value at index {int(np.argmin(np.isfinite(arr)))}")
    return arr


def _agreement(j: np.ndarray, d: np.ndarray) -> float:
    """Mean over pairs with d != 0 of (1 + j sign(d)) / 2; NaN if every d is 0."""
    keep = d != 0
    if not keep.any():
        return float("nan")
    return float(np.mean((1.0 + j[keep] * np.sign(d[keep])) / 2.0))


def _zscore(x: np.ndarray) -> np.ndarray:
    sd = x.std()
    return (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = a.std(), b.std()
    if sa == 0 or sb == 0:
        return 0.0
    return float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb))


def _stats(j: np.ndarray, dg: np.ndarray, ds: np.ndarray) -> dict[str, float]:
    x = np.stack([np.ones_like(dg), _zscore(dg), _zscore(ds)], axis=1)
    coef, *_ = np.linalg.lstsq(x, j, rcond=None)
    wg, ws = float(coef[1]), float(coef[2])
    denom = abs(wg) + abs(ws)
    r_js, r_jg, r_sg = _corr(j, ds), _corr(j, dg), _corr(ds, dg)
    den = np.sqrt(max((1 - r_jg**2) * (1 - r_sg**2), 0.0))
    return {
        "gold_agreement": _agreement(j, dg),
        "style_agreement": _agreement(j, ds),
        "gold_weight": wg,
        "style_weight": ws,
        "style_share": abs(ws) / denom if denom > 0 else float("nan"),
        "partial_corr_style": (r_js - r_jg * r_sg) / den if den > 1e-12 else float("nan"),
        "position_bias": float(coef[0]),
    }


@register(
    name="judge_bias",
    verification="reconstruction",
    aliases=("style_over_substance",),
    kind="diagnostic",
    family="reward",
    paper=PAPER,
    arxiv="2409.15268",
    tags=("paired", "feedback:llm-judge", "evaluation"),
)
def judge_bias(
    judge_prefs: Sequence[float] | np.ndarray,
    gold_a: Sequence[float] | np.ndarray,
    gold_b: Sequence[float] | np.ndarray,
    style_a: Sequence[float] | np.ndarray,
    style_b: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Style over Substance: Failure Modes of LLM Judges in Alignment Benchmarking (SOS-Bench,
    arXiv:2409.15268): LLM judges reward style (length, formatting, tone) over substance. This diagnostic measures
    it for one proxy judge on pairs whose gold reward is known: how often the judge agrees with the gold reward
    vs with a style feature, and the weight of style in the judge's preferences once gold is controlled for.

    Formula:
        (pair i of completions a, b; judge_prefs = P_judge(a > b) in [0, 1], hard 0/1 or soft)
        j_i = 2 P_i - 1,   dg_i = gold_a,i - gold_b,i,   ds_i = style_a,i - style_b,i
        gold_agreement  = mean_{i: dg_i != 0} (1 + j_i sign(dg_i)) / 2      (ties of the judge count 1/2)
        style_agreement = mean_{i: ds_i != 0} (1 + j_i sign(ds_i)) / 2
        OLS  j ~ w_0 + w_g z(dg) + w_s z(ds)   (z: standardised over the pairs)
        style_weight = w_s,  gold_weight = w_g,  style_share = |w_s| / (|w_g| + |w_s|),  position_bias = w_0
        partial_corr_style = (r_js - r_jg r_sg) / sqrt((1 - r_jg^2)(1 - r_sg^2))   (corr(j, ds | dg))
    Each statistic gets a percentile-bootstrap CI over pairs. A judge that follows only the gold reward has
    style_weight ~ 0 and partial_corr_style ~ 0 even when style and gold are correlated; a style-driven judge
    has style_agreement > gold_agreement and a style_weight whose CI excludes 0.

    Hyper-parameters:
        confidence: 0.95 — level of the bootstrap CIs.
            Operational (alignkit's interface, not a paper hyper-parameter).
        n_resamples: 2000 — bootstrap resamples of the pairs.
            Operational (alignkit's interface, not a paper hyper-parameter).
        seed: 0 — bootstrap seed. Operational (alignkit's interface, not a paper hyper-parameter).

    Returns ``{name: {"value", "ci95": [lo, hi]}}`` for each of ``gold_agreement``, ``style_agreement``,
    ``gold_weight``, ``style_weight``, ``style_share``, ``partial_corr_style``, ``position_bias``, plus
    ``n_pairs`` and ``style_gold_corr`` (corr(ds, dg), the confounding the regression removes).

    Source: the SOS-Bench paper compares LLM-judge rankings (Arena-Hard-Auto) with concrete-benchmark factor
    scores; it defines no per-pair statistic. This operationalisation for a testbed with a known gold reward
    (agreement rates, OLS style weight, partial correlation) is this library's, not the paper's.
    """
    j_p = _vector("judge_prefs", judge_prefs)
    n = j_p.size
    if n < 3:
        raise ValueError(f"judge_prefs needs at least 3 pairs; got {n}")
    if np.any((j_p < 0) | (j_p > 1)):
        raise ValueError(
            f"judge_prefs must be probabilities in [0, 1]; index {int(np.argmax((j_p < 0) | (j_p > 1)))}"
        )
    arrays = {}
    for name, v in (("gold_a", gold_a), ("gold_b", gold_b), ("style_a", style_a), ("style_b", style_b)):
        arrays[name] = _vector(name, v)
        if arrays[name].size != n:
            raise ValueError(f"{name} has {arrays[name].size} values; judge_prefs has {n}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1; got {n_resamples}")
    j = 2.0 * j_p - 1.0
    dg = arrays["gold_a"] - arrays["gold_b"]
    ds = arrays["style_a"] - arrays["style_b"]
    point = _stats(j, dg, ds)
    rng = np.random.default_rng(seed)
    boot = {k: np.empty(n_resamples) for k in point}
    for r in range(n_resamples):
        idx = rng.integers(0, n, size=n)
        for k, v in _stats(j[idx], dg[idx], ds[idx]).items():
            boot[k][r] = v
    alpha = (1 - confidence) / 2
    out: dict[str, Any] = {}
    for k, v in point.items():
        b = boot[k][np.isfinite(boot[k])]
        lo, hi = np.quantile(b, [alpha, 1 - alpha]) if b.size else (float("nan"), float("nan"))
        out[k] = {"value": v, "ci95": [float(lo), float(hi)]}
    out["n_pairs"] = n
    out["style_gold_corr"] = _corr(ds, dg)
    return out


def preference_from_scores(
    score_a: Sequence[float], score_b: Sequence[float], temperature: float = 0.0
) -> np.ndarray:
    """P(a > b) of a judge that scores each completion: sigmoid((s_a - s_b) / T), or hard 1 / 0.5 / 0 at T = 0."""
    sa, sb = _vector("score_a", score_a), _vector("score_b", score_b)
    if sa.size != sb.size:
        raise ValueError(f"score_a has {sa.size} values; score_b has {sb.size}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0; got {temperature}")
    d = sa - sb
    if temperature == 0:
        return 0.5 * (1.0 + np.sign(d))
    return 0.5 * (1.0 + np.tanh(d / (2.0 * temperature)))  # = sigmoid(d / T), without overflow
