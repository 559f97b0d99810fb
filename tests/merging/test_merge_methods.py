"""Merge methods on tiny tensors: values worked out by hand (in the comments), limiting cases and invariants."""

from __future__ import annotations

import pytest
import torch

import alignkit as ak
from alignkit.merging import (
    average,
    dare,
    dare_sparsify,
    dare_ties,
    disperse,
    disperse_then_merge,
    magnitude_prune,
    task_arithmetic,
    ties,
    wise_ft,
    wise_ft_curve,
)
from alignkit.merging.ties import global_thresholds

D = torch.float64


def sd(**tensors) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v, dtype=D) for k, v in tensors.items()}


def test_task_arithmetic_hand_value():
    # tau_A = [1, 0], tau_B = [0, 2]; theta = [1, 2] + 2 * (0.5 * tau_A + 1 * tau_B) = [1, 2] + [1, 4] = [2, 6]
    base, a, b = sd(w=[1.0, 2.0]), sd(w=[2.0, 2.0]), sd(w=[1.0, 4.0])
    out = task_arithmetic(base, [a, b], weights=[0.5, 1.0], scaling=2.0)
    assert torch.equal(out["w"], torch.tensor([2.0, 6.0], dtype=D))
    # negation (weight -1): theta_0 - tau_A = [1, 2] - [1, 0] = [0, 2]
    neg = task_arithmetic(base, [a], weights=[-1.0])
    assert torch.equal(neg["w"], torch.tensor([0.0, 2.0], dtype=D))


def test_ties_worked_example_from_the_catalogue():
    # tau1 = [3, -1, 0.1], tau2 = [-2, -2, 0.2], density 1: gamma = sgn([1, -3, 0.3]) = [+, -, +]
    # agreeing: [3], [-1, -2], [0.1, 0.2] -> disjoint mean [3, -1.5, 0.15]
    base = sd(w=[0.0, 0.0, 0.0])
    out = ties(base, [sd(w=[3.0, -1.0, 0.1]), sd(w=[-2.0, -2.0, 0.2])], density=1.0)
    assert torch.allclose(out["w"], torch.tensor([3.0, -1.5, 0.15], dtype=D))


def test_ties_trim_elect_weighted_disjoint_mean():
    # density 0.5 keeps 2 of 4: tau1 = [4, -3, .5, -.1] -> [4, -3, 0, 0]; tau2 = [-1, 2, .2, 5] -> [0, 2, 0, 5]
    # sum = [4, -1, 0, 5] -> gamma = [+, -, + (0 -> +), +]; agreeing: [4], [-3], [], [5]
    # PEFT: weights (1, 0.5) after election, / agreeing count: [4, -3, 0, 0.5 * 5 = 2.5]; scaling 2 doubles it
    base = sd(w=[0.0] * 4)
    models = [sd(w=[4.0, -3.0, 0.5, -0.1]), sd(w=[-1.0, 2.0, 0.2, 5.0])]
    out = ties(base, models, weights=[1.0, 0.5], density=0.5, convention="peft")
    assert torch.allclose(out["w"], torch.tensor([4.0, -3.0, 0.0, 2.5], dtype=D))
    out2 = ties(base, models, weights=[1.0, 0.5], density=0.5, scaling=2.0, merge="sum", convention="peft")
    assert torch.allclose(out2["w"], torch.tensor([8.0, -6.0, 0.0, 5.0], dtype=D))
    # mergekit: weighted first [4, -3, 0, 0] and [0, 1, 0, 2.5]; sum [4, -2, 0, 2.5] -> gamma [+, -, +, +];
    # agreeing mass [4, -3, 0, 2.5] / agreeing weights [1, 1, 1 (0 -> 1), 0.5] = [4, -3, 0, 5]
    mk = ties(base, models, weights=[1.0, 0.5], density=0.5)
    assert torch.allclose(mk["w"], torch.tensor([4.0, -3.0, 0.0, 5.0], dtype=D))
    mk2 = ties(base, models, weights=[1.0, 0.5], density=0.5, scaling=2.0, merge="sum")
    assert torch.allclose(mk2["w"], torch.tensor([8.0, -6.0, 0.0, 5.0], dtype=D))
    # the trim step alone + task arithmetic: [4, -3, 0, 0] + [0, 2, 0, 5]
    mp = magnitude_prune(base, models, density=0.5)
    assert torch.allclose(mp["w"], torch.tensor([4.0, -1.0, 0.0, 5.0], dtype=D))


def test_ties_frequency_sign_election():
    # three tasks on one entry: [+1, +1, -5]: mass says -, frequency says +
    base = sd(w=[0.0])
    models = [sd(w=[1.0]), sd(w=[1.0]), sd(w=[-5.0])]
    assert ties(base, models, density=1.0)["w"].item() == -5.0
    assert ties(base, models, density=1.0, majority_sign="frequency")["w"].item() == 1.0


def test_ties_density_one_agreeing_signs_is_the_task_arithmetic_mean():
    g = torch.Generator().manual_seed(0)
    base = {"a": torch.randn(5, 4, generator=g, dtype=D), "b": torch.randn(7, generator=g, dtype=D)}
    models = [{k: v + torch.rand(v.shape, generator=g, dtype=D) for k, v in base.items()} for _ in range(3)]
    t = ties(base, models, density=1.0)
    ta = task_arithmetic(base, models, weights=[1 / 3] * 3)
    for k in base:
        assert torch.allclose(t[k], ta[k], atol=1e-12)
    # a single model at density 1 comes back unchanged
    one = ties(base, models[:1], density=1.0)
    assert all(torch.allclose(one[k], models[0][k], atol=1e-12) for k in base)


def test_ties_global_scope_ranks_over_the_whole_model():
    # tensor "big" has |tau| ~ 10, "small" ~ 0.01: global top-50% keeps all of "big" and nothing of "small",
    # per-tensor top-50% keeps half of each
    base = sd(big=[0.0] * 4, small=[0.0] * 4)
    m = sd(big=[10.0, 11.0, 12.0, 13.0], small=[0.01, 0.02, 0.03, 0.04])
    g = ties(base, [m], density=0.5, scope="global")
    p = ties(base, [m], density=0.5, scope="per_tensor")
    assert torch.equal(g["big"], m["big"]) and torch.equal(g["small"], torch.zeros(4, dtype=D))
    assert torch.equal(p["big"], torch.tensor([0, 0, 12.0, 13.0], dtype=D))
    assert torch.equal(p["small"], torch.tensor([0, 0, 0.03, 0.04], dtype=D))
    # threshold: the int(8 * 0.5) = 4th largest |tau| of the 8 entries -> 10
    assert global_thresholds(base, [m], 0.5) == [10.0]


def test_dare_entries_are_dropped_or_rescaled_and_p0_is_identity():
    delta = torch.tensor([1.0, -2.0, 3.0, 4.0, -5.0, 6.0, 7.0, 8.0], dtype=D)
    out = dare_sparsify(delta, 0.25, generator=torch.Generator().manual_seed(1))  # density 1 - p = 0.25
    kept = out != 0
    assert 0 < kept.sum() < 8
    assert torch.allclose(out[kept], delta[kept] * 4)  # 1 / (1 - p) = 4
    assert torch.equal(dare_sparsify(delta, 1.0), delta)
    base = sd(w=[0.5, 1.5])
    m = sd(w=[1.0, -1.0])
    assert torch.equal(dare(base, [m], drop_rate=0.0)["w"], m["w"])


def test_dare_is_unbiased():
    # E[m * delta / q] = delta with m ~ Bernoulli(q); Monte-Carlo mean within 5 standard errors
    q, n = 0.3, 40000
    delta = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=D)
    draws = dare_sparsify(delta.expand(n, 4).clone(), q, generator=torch.Generator().manual_seed(0))
    se = delta.abs() * ((1 - q) / q / n) ** 0.5
    assert torch.all((draws.mean(0) - delta).abs() < 5 * se)
    # and roughly q of the entries survive
    assert abs((draws != 0).double().mean().item() - q) < 0.01


def test_dare_ties_without_dropping_is_ties_without_trimming():
    g = torch.Generator().manual_seed(3)
    base = {"w": torch.randn(6, 3, generator=g, dtype=D)}
    models = [{"w": base["w"] + torch.randn(6, 3, generator=g, dtype=D)} for _ in range(3)]
    for conv in ("mergekit", "peft"):
        a = dare_ties(base, models, weights=[0.2, 0.3, 0.5], drop_rate=0.0, merge="mean", convention=conv)
        b = ties(base, models, weights=[0.2, 0.3, 0.5], density=1.0, convention=conv)
        assert torch.allclose(a["w"], b["w"], atol=1e-12), conv
    # seeded: the same seed gives the same merge, another seed another one
    assert torch.equal(dare(base, models, seed=5)["w"], dare(base, models, seed=5)["w"])
    assert not torch.equal(dare(base, models, seed=5)["w"], dare(base, models, seed=6)["w"])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_wise_ft_endpoints_are_exact(dtype):
    g = torch.Generator().manual_seed(0)
    t0 = {"w": torch.randn(4, 3, generator=g).to(dtype), "step": torch.tensor([7])}
    t1 = {"w": torch.randn(4, 3, generator=g).to(dtype), "step": torch.tensor([7])}
    assert torch.equal(wise_ft(t0, t1, alpha=0.0)["w"], t0["w"])
    assert torch.equal(wise_ft(t0, t1, alpha=1.0)["w"], t1["w"])
    assert wise_ft(t0, t1, alpha=0.3)["w"].dtype == dtype
    assert torch.equal(wise_ft(t0, t1)["step"], torch.tensor([7]))


def test_wise_ft_hand_value_keys_and_curve():
    # (1 - 0.25) * [0, 4] + 0.25 * [4, 0] = [1, 3]
    t0, t1 = sd(w=[0.0, 4.0], head=[1.0]), sd(w=[4.0, 0.0], head=[3.0])
    out = wise_ft(t0, t1, alpha=0.25)
    assert torch.equal(out["w"], torch.tensor([1.0, 3.0], dtype=D)) and out["head"].item() == 1.5
    lc = wise_ft(t0, t1, alpha=0.25, keys=["head"])  # the linear-classifier variant: only "head" is mixed
    assert torch.equal(lc["w"], t1["w"]) and lc["head"].item() == 1.5
    # a linear model's output is linear in alpha along the curve
    x = torch.tensor([1.0, 2.0], dtype=D)
    curve = wise_ft_curve(t0, t1, lambda s: float(s["w"] @ x), alphas=[0.0, 0.5, 1.0], progress=False)
    assert curve == [(0.0, 8.0), (0.5, 6.0), (1.0, 4.0)]
    with pytest.raises(ValueError, match="non-float tensor 'n'"):
        wise_ft({"n": torch.tensor([1])}, {"n": torch.tensor([2])})


def test_average_and_disperse_then_merge():
    a, b = sd(w=[1.0, 2.0]), sd(w=[3.0, 6.0])
    assert torch.equal(average([a, b])["w"], torch.tensor([2.0, 4.0], dtype=D))
    assert torch.equal(average([a, b], weights=[3, 1])["w"], torch.tensor([1.5, 3.0], dtype=D))
    assert torch.equal(average([a, a, a])["w"], a["w"])  # averaging identical models is the identity
    data = list(range(1, 9))
    parts = disperse(data, 2, seed=0)
    assert sorted(parts[0] + parts[1]) == data and len(parts[0]) == len(parts[1]) == 4
    seen = []

    def train_fn(portion, i):  # a "sub-model" whose weight is its portion's mean
        seen.append(i)
        return {"w": torch.tensor([sum(portion) / len(portion)], dtype=D)}

    # equal portions: the average of the portion means is the overall mean 4.5
    merged = disperse_then_merge(data, train_fn, k=2)
    assert merged["w"].item() == pytest.approx(4.5) and seen == [0, 1]
    # K = 1: the merged model is the single sub-model
    assert disperse_then_merge(data, train_fn, k=1)["w"].item() == pytest.approx(4.5)
    assert ak.get("dtm") is ak.get("disperse_then_merge")


def test_mismatches_name_the_tensor():
    base = sd(w=[0.0, 0.0], b=[1.0])
    with pytest.raises(ValueError, match=r"models\[1\]: tensor 'w' has shape \[3\] but base has \[2\]"):
        task_arithmetic(base, [sd(w=[0.0, 1.0], b=[1.0]), sd(w=[0.0, 1.0, 2.0], b=[1.0])])
    with pytest.raises(ValueError, match=r"models\[0\]: missing tensor 'b'"):
        ties(base, [sd(w=[0.0, 1.0])])
    with pytest.raises(ValueError, match="got 1 weights for 2 models"):
        task_arithmetic(base, [base, base], weights=[1.0])
