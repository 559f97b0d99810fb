"""Number-for-number parity with ``peft.utils.merge_utils`` on random tensors (PEFT is called, not re-typed)."""

from __future__ import annotations

import pytest
import torch
from peft.utils import merge_utils as pm

from alignkit.merging import dare, dare_ties, magnitude_prune, task_arithmetic, ties
from alignkit.merging.dare import dare_linear_tensors, dare_ties_tensors
from alignkit.merging.task_arithmetic import weighted_sum
from alignkit.merging.ties import magnitude_prune_tensors, ties_tensors

SHAPES = [(7,), (5, 6), (3, 4, 5)]


def task_tensors(shape, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(n)], torch.rand(n, generator=g) + 0.1


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("density", [0.0, 0.3, 0.7, 1.0])
def test_deterministic_methods(shape, density):
    taus, w = task_tensors(shape, seed=len(shape))
    assert torch.allclose(weighted_sum(taus, w), pm.task_arithmetic(taus, w), atol=1e-6)
    with pytest.warns(UserWarning) if density >= 1 else _nothing():
        ref = pm.magnitude_prune(taus, w, density)
    assert torch.allclose(magnitude_prune_tensors(taus, w, density), ref, atol=1e-6)
    for method in ("total", "frequency"):
        with pytest.warns(UserWarning) if density >= 1 else _nothing():
            ref = pm.ties(taus, w, density, majority_sign_method=method)
        assert torch.allclose(ties_tensors(taus, w.tolist(), density, method), ref, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("density", [0.2, 0.5, 0.9])
def test_random_methods_under_the_same_seed(shape, density):
    taus, w = task_tensors(shape, seed=10 + len(shape))
    torch.manual_seed(123)
    ours = dare_linear_tensors(taus, w.tolist(), density)
    torch.manual_seed(123)
    assert torch.allclose(ours, pm.dare_linear(taus, w, density), atol=1e-6)
    torch.manual_seed(7)
    ours = dare_ties_tensors(taus, w.tolist(), density, "total")
    torch.manual_seed(7)
    assert torch.allclose(ours, pm.dare_ties(taus, w, density, "total"), atol=1e-6)


def test_state_dict_level_equals_peft_per_tensor():
    """The registered merges on whole state dicts = PEFT applied tensor by tensor to the task vectors."""
    g = torch.Generator().manual_seed(0)
    base = {f"t{i}": torch.randn(s, generator=g) for i, s in enumerate(SHAPES)}
    models = [{k: v + 0.1 * torch.randn(v.shape, generator=g) for k, v in base.items()} for _ in range(2)]
    w = [0.6, 0.4]
    wt = torch.tensor(w)
    taus = {k: [m[k] - base[k] for m in models] for k in base}
    checks = [
        (task_arithmetic(base, models, weights=w), lambda k: pm.task_arithmetic(taus[k], wt)),
        (ties(base, models, weights=w, density=0.2, convention="peft"), lambda k: pm.ties(taus[k], wt, 0.2)),
        (
            magnitude_prune(base, models, weights=w, density=0.4),
            lambda k: pm.magnitude_prune(taus[k], wt, 0.4),
        ),
    ]
    for merged, peft_delta in checks:
        for k in base:
            assert torch.allclose(merged[k], base[k] + peft_delta(k), atol=1e-6), k
    # DARE with seed=None draws from the global generator, key by key, model by model, as PEFT does
    for fn, ref in ((dare, pm.dare_linear), (dare_ties, pm.dare_ties)):
        torch.manual_seed(99)
        merged = fn(base, models, weights=w, drop_rate=0.7, seed=None, convention="peft")
        torch.manual_seed(99)
        for k in base:
            assert torch.allclose(merged[k], base[k] + ref(taus[k], wt, 1 - 0.7), atol=1e-6), (fn, k)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
