"""``convention="mergekit"``: ties / dare / dare_ties equal mergekit 0.1.5's merge methods in-process.

mergekit's ``GeneralizedTaskArithmeticMerge.merge_group`` is called on the same tensors (base first), with its
default parameters for each method; the DARE masks come from torch's global generator in mergekit, so ours run
with ``seed=None`` after the same ``torch.manual_seed``. The two conventions are also compared on the case the
review found: weights [0.5, 0.5], where PEFT's rule gives half of mergekit's delta.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from alignkit.merging import dare, dare_ties, ties

mk_registry = pytest.importorskip("mergekit.merge_methods.registry")
mk_base = pytest.importorskip("mergekit.merge_methods.base")
mk_gta = pytest.importorskip("mergekit.merge_methods.generalized_task_arithmetic")

SHAPES = [(7, 5), (11,), (3, 4, 2)]


def _models(seed: int, n: int = 3, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    base = {f"t{i}": torch.randn(s, generator=g, dtype=dtype) for i, s in enumerate(SHAPES)}
    models = [
        {k: v + 0.1 * torch.randn(v.shape, generator=g, dtype=dtype) for k, v in base.items()}
        for _ in range(n)
    ]
    return base, models


def _mergekit(method, base, models, weights, density, **params):
    """mergekit's merge of every tensor (its defaults for ``method`` unless overridden in ``params``)."""
    m = mk_registry.get(method) if isinstance(method, str) else method
    defaults = {p.name: p.default for p in m.spec.parameters if p.name not in ("weight", "density")}
    defaults.update(params)
    ids = range(1, len(models) + 1)
    out = {}
    for k in base:
        group = mk_base.TensorGroup.from_tensors([base[k]] + [mm[k] for mm in models], base_index=0)
        out[k] = m.merge_group(
            group,
            weight=dict(zip(ids, weights, strict=True)),
            density=dict.fromkeys(ids, density),
            **defaults,
        )
    return out


@pytest.mark.parametrize("weights", [[1.0, 1.0, 1.0], [0.5, 0.3, 0.2], [0.7, -0.4, 1.3]])
@pytest.mark.parametrize("density", [0.2, 0.5, 1.0])
def test_ties_equals_mergekit(weights, density):
    base, models = _models(0)
    ours = ties(base, models, weights=weights, density=density)  # convention="mergekit" is the default
    ref = _mergekit("ties", base, models, weights, density)
    for k in base:
        assert torch.allclose(ours[k], ref[k], atol=1e-12, rtol=0), k
    # mergekit's normalize=false is our merge="sum"; count consensus is our "frequency"
    ours = ties(base, models, weights=weights, density=density, merge="sum", majority_sign="frequency")
    counting = dataclasses.replace(mk_registry.get("ties"), consensus_method=mk_gta.ConsensusMethod.count)
    ref = _mergekit(counting, base, models, weights, density, normalize=False)
    for k in base:
        assert torch.allclose(ours[k], ref[k], atol=1e-12, rtol=0), k


def test_tiny_tensors_keep_one_entry_in_mergekit_and_none_in_peft():
    """mergekit keeps max(1, int(k * n)) entries, PEFT int(k * n): a 3-entry tensor at density 0.2."""
    base = {"b": torch.zeros(3, dtype=torch.float64)}
    models = [{"b": torch.tensor([0.1, -0.5, 0.2], dtype=torch.float64)}]
    assert torch.equal(
        ties(base, models, density=0.2)["b"], torch.tensor([0.0, -0.5, 0.0], dtype=torch.float64)
    )
    assert torch.equal(
        ties(base, models, density=0.2, convention="peft")["b"], torch.zeros(3, dtype=torch.float64)
    )


def test_half_weights_peft_gives_half_of_mergekit():
    """The review's case: weights [0.5, 0.5]; mergekit divides by the agreeing weights, PEFT by their count."""
    base, models = _models(1, n=2)
    mk = ties(base, models, weights=[0.5, 0.5], density=0.5)
    pf = ties(base, models, weights=[0.5, 0.5], density=0.5, convention="peft")
    unit = ties(base, models, density=0.5, convention="peft")
    for k in base:
        assert torch.allclose(
            mk[k] - base[k], unit[k] - base[k], atol=1e-12
        )  # relative weights: same as unit
        assert torch.allclose(pf[k] - base[k], 0.5 * (mk[k] - base[k]), atol=1e-12)


def test_sign_is_elected_on_weighted_deltas_in_mergekit():
    """One entry: +1 (weight 0.1) against -0.5 (weight 1): unweighted sum +0.5 elects +, weighted -0.4 elects -."""
    base = {"w": torch.zeros(1, dtype=torch.float64)}
    models = [
        {"w": torch.tensor([1.0], dtype=torch.float64)},
        {"w": torch.tensor([-0.5], dtype=torch.float64)},
    ]
    mk = ties(base, models, weights=[0.1, 1.0], density=1.0)["w"].item()
    pf = ties(base, models, weights=[0.1, 1.0], density=1.0, convention="peft")["w"].item()
    assert mk == pytest.approx(-0.5)  # (1.0 * -0.5) / 1.0
    assert pf == pytest.approx(0.1)  # (0.1 * 1.0) / 1 agreeing model


@pytest.mark.parametrize(("ours", "method"), [(dare, "dare_linear"), (dare_ties, "dare_ties")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dare_equals_mergekit_under_the_same_seed(ours, method, dtype):
    base, models = _models(2, dtype=dtype)
    w = [0.6, 0.3, 0.5]
    torch.manual_seed(123)
    got = ours(base, models, weights=w, drop_rate=0.7, seed=None)
    torch.manual_seed(123)
    ref = _mergekit(method, base, models, w, 0.3)
    for k in base:
        assert torch.allclose(got[k], ref[k], atol=1e-6 if dtype == torch.float32 else 1e-12, rtol=0), k
    # the L1 rescale keeps each task vector's L1 norm (the paper's 1/(1-p) keeps it only in expectation)
    torch.manual_seed(5)
    one = dare(base, models[:1], drop_rate=0.7, seed=None)
    for k in base:
        want = (models[0][k] - base[k]).abs().sum()
        assert torch.allclose((one[k] - base[k]).abs().sum(), want, rtol=1e-5), k


def test_dare_ties_merge_rule_per_convention():
    base, models = _models(3)
    s = dare_ties(base, models, drop_rate=0.5, seed=1)
    m = dare_ties(base, models, drop_rate=0.5, seed=1, merge="mean")
    assert any(not torch.allclose(s[k], m[k]) for k in base)  # mergekit's default sums
    with pytest.raises(ValueError, match="disjoint mean only"):
        dare_ties(base, models, convention="peft", merge="sum")
    with pytest.raises(ValueError, match="convention must be"):
        ties(base, models, convention="mergkit")
