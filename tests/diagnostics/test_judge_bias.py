"""Judge style bias (after SOS-Bench, arXiv:2409.15268): agreement with gold vs style, the OLS style weight and
the partial correlation, on hand-made pairs, invariants, and a testbed proxy judge that prefers long answers."""

from __future__ import annotations

import numpy as np
import pytest

import alignkit as ak
from alignkit.diagnostics.judge_bias import judge_bias, preference_from_scores
from tests.claims_io import record_claims

diag = ak.get("judge_bias")


def _synthetic(n=400, seed=0, rho=0.5):
    rng = np.random.default_rng(seed)
    ga, gb = rng.normal(size=n), rng.normal(size=n)
    sa, sb = rng.normal(size=n) + rho * ga, rng.normal(size=n) + rho * gb  # style correlated with gold
    return ga, gb, sa, sb


def test_registered_diagnostic():
    assert diag.kind == "diagnostic" and diag.arxiv == "2409.15268"
    assert diag.defaults == {"confidence": 0.95, "n_resamples": 2000, "seed": 0}
    assert ak.get("style_over_substance") is diag


def test_hand_computed_agreements_and_weights():
    # pairs: dg = [1, -1, 2, 0], ds = [-1, -1, 1, 1]; judge P(a > b) = [1, 0, 1, 0.5] -> j = [1, -1, 1, 0]
    out = judge_bias([1, 0, 1, 0.5], [1, 0, 2, 3], [0, 1, 0, 3], [0, 0, 1, 1], [1, 1, 0, 0], n_resamples=10)
    # gold: pairs 0..2 have dg != 0, the judge agrees with all three -> 1.0
    assert out["gold_agreement"]["value"] == pytest.approx(1.0)
    # style: all 4 have ds != 0: agree on 0? j=1, ds=-1 -> 0; 1: j=-1, ds=-1 -> 1; 2: 1; 3: j=0 -> 1/2
    assert out["style_agreement"]["value"] == pytest.approx((0 + 1 + 1 + 0.5) / 4)
    # OLS j = w0 + wg z(dg) + ws z(ds): solved by hand with numpy's normal equations on the same design
    dg, ds, j = np.array([1.0, -1, 2, 0]), np.array([-1.0, -1, 1, 1]), np.array([1.0, -1, 1, 0])
    x = np.stack([np.ones(4), (dg - dg.mean()) / dg.std(), (ds - ds.mean()) / ds.std()], 1)
    w = np.linalg.solve(x.T @ x, x.T @ j)
    assert out["gold_weight"]["value"] == pytest.approx(w[1])
    assert out["style_weight"]["value"] == pytest.approx(w[2])
    assert out["style_share"]["value"] == pytest.approx(abs(w[2]) / (abs(w[1]) + abs(w[2])))
    assert out["n_pairs"] == 4


def test_partial_correlation_matches_residual_regression():
    """Parity with the textbook definition: corr of the residuals of j and ds after regressing each on dg (no
    statistics library is installed here; numpy's polyfit is the independent computation)."""
    ga, gb, sa, sb = _synthetic()
    p = preference_from_scores(ga + sa, gb + sb, temperature=1.0)
    out = judge_bias(p, ga, gb, sa, sb, n_resamples=10)
    j, dg, ds = 2 * p - 1, ga - gb, sa - sb
    rj = j - np.polyval(np.polyfit(dg, j, 1), dg)
    rs = ds - np.polyval(np.polyfit(dg, ds, 1), dg)
    assert out["partial_corr_style"]["value"] == pytest.approx(np.corrcoef(rj, rs)[0, 1], abs=1e-9)


def test_gold_judge_shows_no_style_weight_even_when_style_tracks_gold():
    ga, gb, sa, sb = _synthetic(rho=0.8)
    gold = judge_bias(preference_from_scores(ga, gb, temperature=0.5), ga, gb, sa, sb, n_resamples=500)
    assert gold["style_gold_corr"] > 0.4  # style alone would look predictive...
    assert gold["style_agreement"]["value"] > 0.6
    lo, hi = gold["style_weight"]["ci95"]
    assert lo < 0.05 and hi > -0.05 and abs(gold["style_weight"]["value"]) < 0.05  # ...but gets ~no weight
    assert gold["style_share"]["value"] < 0.1


def test_style_judge_is_detected_and_ranked_by_bias():
    ga, gb, sa, sb = _synthetic()
    shares = []
    for lam in (0.0, 0.5, 2.0, 100.0):  # the judge's weight on style relative to gold
        out = judge_bias(
            preference_from_scores(ga + lam * sa, gb + lam * sb, 0.5), ga, gb, sa, sb, n_resamples=300
        )
        shares.append(out["style_share"]["value"])
        if lam >= 2:
            assert out["style_weight"]["ci95"][0] > 0.2
            assert out["style_agreement"]["value"] > out["gold_agreement"]["value"]
    assert shares == sorted(shares) and shares[0] < 0.1 and shares[-1] > 0.9


def test_antisymmetry_swapping_a_and_b():
    """Writing every pair the other way round (b, a) with P -> 1 - P changes nothing but the position bias sign."""
    ga, gb, sa, sb = _synthetic(n=200)
    p = preference_from_scores(ga + sa, gb + sb, 1.0)
    a = judge_bias(p, ga, gb, sa, sb, n_resamples=10)
    b = judge_bias(1 - p, gb, ga, sb, sa, n_resamples=10)
    for k in ("gold_agreement", "style_agreement", "gold_weight", "style_weight", "partial_corr_style"):
        assert a[k]["value"] == pytest.approx(b[k]["value"])
    assert a["position_bias"]["value"] == pytest.approx(-b["position_bias"]["value"])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(judge_prefs=[0.5, 1.2, 0]), "judge_prefs must be probabilities"),
        (dict(gold_a=[1.0, 2.0]), "gold_a has 2 values"),
        (dict(style_b=[0.0, float("nan"), 1.0]), "style_b holds a non-finite"),
        (dict(judge_prefs=[1, 0]), "at least 3 pairs"),
        (dict(confidence=1.0), "confidence"),
    ],
)
def test_bad_input_names_the_field(kwargs, match):
    args = dict(
        judge_prefs=[1, 0, 1], gold_a=[1, 0, 1], gold_b=[0, 1, 0], style_a=[1, 1, 0], style_b=[0, 0, 1]
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        judge_bias(**args)


@pytest.mark.slow
def test_testbed_length_loving_judge_is_detected(effect_sentiment):
    """Pairs of two sampled continuations of 400 sentiment prompts from the effect base, gold reward = VADER.
    A proxy judge scoring z(gold) + 2 z(length) is flagged (style weight CI > 0); the gold judge is not."""
    from alignkit.eval import sample_and_score
    from alignkit.testbed import get_task

    base, task = effect_sentiment, get_task("sentiment")
    prompts = task.prompts(base.tokenizer, "eval", 400, seed=0)
    s = sample_and_score(base.model, base.tokenizer, task, prompts, num_samples=2, seed=5, progress=False)
    ga, gb = (np.array([r[i] for r in s.rewards]) for i in (0, 1))
    la, lb = (np.array([len(t[i]) for t in s.texts], dtype=float) for i in (0, 1))
    g_sd, l_sd = np.concatenate([ga, gb]).std(), np.concatenate([la, lb]).std()
    proxy = preference_from_scores(ga / g_sd + 2 * la / l_sd, gb / g_sd + 2 * lb / l_sd, temperature=0.5)
    gold = preference_from_scores(ga / g_sd, gb / g_sd, temperature=0.5)
    p_out = judge_bias(proxy, ga, gb, la, lb)
    g_out = judge_bias(gold, ga, gb, la, lb)
    show = ("gold_agreement", "style_agreement", "style_weight", "style_share", "partial_corr_style")
    print("proxy", {k: p_out[k] for k in show}, "corr(ds, dg)", p_out["style_gold_corr"])
    print("gold ", {k: g_out[k] for k in show})
    record_claims(
        "diag_judge_bias",
        {
            "pairs": len(prompts),
            "proxy_style_weight": p_out["style_weight"]["value"],
            "proxy_style_weight_ci": list(p_out["style_weight"]["ci95"]),
            "proxy_style_agreement": p_out["style_agreement"]["value"],
            "proxy_gold_agreement": p_out["gold_agreement"]["value"],
            "gold_style_weight": g_out["style_weight"]["value"],
            "gold_style_weight_ci": list(g_out["style_weight"]["ci95"]),
            "gold_gold_agreement": g_out["gold_agreement"]["value"],
        },
        tolerance=0.02,
    )
    assert p_out["style_weight"]["ci95"][0] > 0.3 and p_out["style_share"]["value"] > 0.6
    assert p_out["style_agreement"]["value"] > p_out["gold_agreement"]["value"]
    lo, hi = g_out["style_weight"]["ci95"]
    assert lo < 0.05 and hi > -0.05 and g_out["style_share"]["value"] < 0.15
    assert g_out["gold_agreement"]["value"] > 0.8
