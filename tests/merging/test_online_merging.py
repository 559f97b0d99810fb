"""OnDARE / OnTIES: one optimiser step on a toy model does what the paper's code does."""

from __future__ import annotations

import pytest
import torch

import alignkit as ak
from alignkit.merging import OnlineMergingOptimizer, ondare, onties

D = torch.float64


def toy(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 2).to(D)


def states(model, shift_seed=1, scale=0.5):
    g = torch.Generator().manual_seed(shift_seed)
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ref = {k: v + scale * torch.randn(v.shape, generator=g, dtype=D) for k, v in base.items()}
    return base, ref


def backward(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 3, generator=g, dtype=D)
    model.zero_grad()
    (model(x) ** 2).sum().backward()


def sgd(lr):
    return lambda ps: torch.optim.SGD(ps, lr=lr)


def test_registered_with_the_official_defaults():
    c = ak.get("ondare")
    assert c.kind == "optimizer" and c.arxiv == "2405.17931"
    assert c.defaults["reserve_p"] == 0.01 and c.defaults["alpha"] == 1e-7 and c.defaults["use_merge"] is True
    assert ak.get("onties").defaults["rescale"] is False


@pytest.mark.parametrize("factory", [ondare, onties])
def test_no_merge_full_reserve_is_plain_adamw(factory):
    """alpha = 0, reserve_p = 1, use_merge = False: the wrapper is the inner AdamW, step for step.
    (OnTIES still applies sign consensus with tau_ref, as the official code does: it needs tau_ref = 0.)"""
    m1, m2 = toy(), toy()
    base, ref = states(m1)
    if factory is onties:
        ref = base
    opt = factory(m1.named_parameters(), base, ref, lr=1e-2, reserve_p=1.0, alpha=0.0, use_merge=False)
    plain = torch.optim.AdamW(m2.parameters(), lr=1e-2, eps=1e-6, weight_decay=0.0)
    for step in range(4):
        for m, o in ((m1, opt), (m2, plain)):
            backward(m, seed=step)
            o.step()
    for p, q in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-12)


def test_ondare_alpha_one_adds_exactly_the_reference_delta():
    model = toy()
    base, ref = states(model, scale=0.3)  # |tau| < 1 mostly; the clamp to +-clip_val applies anyway
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = ondare(model.named_parameters(), base, ref, reserve_p=1.0, alpha=1.0, inner=sgd(0.1))
    backward(model)
    opt.step()
    for n, p in model.named_parameters():
        assert torch.allclose(p, before[n] + (ref[n] - base[n]).clamp(-1, 1), atol=1e-12)


def test_ondare_step_drops_and_rescales_the_update():
    """SGD inner with lr 1: delta = -grad. Each entry of (update - alpha tau_ref) / (1 - alpha) is 0 or delta / q."""
    q, alpha = 0.5, 0.25
    model = toy()
    base, ref = states(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = ondare(model.named_parameters(), base, ref, reserve_p=q, alpha=alpha, inner=sgd(1.0), seed=3)
    backward(model)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt.step()
    total_kept = 0
    for n, p in model.named_parameters():
        tau = opt.state[p]["tau_ref"]
        raw = (ref[n] - base[n]) / q
        assert torch.all((tau == 0) | torch.isclose(tau, raw.clamp(-1, 1)))  # tau_ref: DARE then clamp
        part = (p - before[n] - alpha * tau) / (1 - alpha)
        delta = -grads[n]
        assert torch.all(
            torch.isclose(part, torch.zeros_like(part), atol=1e-12) | torch.isclose(part, delta / q)
        )
        total_kept += int((part.abs() > 1e-12).sum())
    assert 0 < total_kept < 8  # 8 parameters: some dropped, some kept


def test_onties_sign_consensus_example():
    """tau_ref = [1, -1], update = [-0.5, -0.5], alpha = 0.5: s = sgn([0.5, -1.5]) = [+, -];
    tau' = [1, -1], update' = [0, -0.5] -> step = 0.5 * [1, -1] + 0.5 * [0, -0.5] = [0.5, -0.75]."""
    w = torch.nn.Parameter(torch.zeros(2, dtype=D))
    base, ref = {"w": torch.zeros(2, dtype=D)}, {"w": torch.tensor([1.0, -1.0], dtype=D)}
    opt = onties([("w", w)], base, ref, reserve_p=1.0, alpha=0.5, inner=sgd(0.5))
    w.grad = torch.ones(2, dtype=D)  # SGD lr 0.5 -> update [-0.5, -0.5]
    opt.step()
    assert torch.allclose(w.detach(), torch.tensor([0.5, -0.75], dtype=D))


def test_onties_trims_the_update_to_its_largest_entries():
    w = torch.nn.Parameter(torch.zeros(4, dtype=D))
    zero = {"w": torch.zeros(4, dtype=D)}
    opt = onties([("w", w)], zero, zero, reserve_p=0.5, alpha=0.0, inner=sgd(1.0))
    w.grad = torch.tensor([1.0, -4.0, 0.5, 3.0], dtype=D)  # update [-1, 4, -.5, -3]; top 2: 4, -3
    opt.step()
    # sign election with tau_ref = 0: s = sgn(update~) -> nothing else removed
    assert torch.equal(w.detach(), torch.tensor([0.0, 4.0, 0.0, -3.0], dtype=D))


def test_online_step_merges_the_accumulated_update_every_k_steps():
    w = torch.nn.Parameter(torch.zeros(2, dtype=D))
    base, ref = {"w": torch.zeros(2, dtype=D)}, {"w": torch.tensor([0.5, -0.5], dtype=D)}
    opt = ondare([("w", w)], base, ref, reserve_p=1.0, alpha=1.0, online_step=2, inner=sgd(1.0))
    w.grad = torch.tensor([1.0, 2.0], dtype=D)
    opt.step()  # plain step: w = -grad
    assert torch.equal(w.detach(), torch.tensor([-1.0, -2.0], dtype=D))
    opt.step()  # merge step: roll back both updates, apply alpha * tau_ref + 0 * accumulated
    assert torch.allclose(w.detach(), torch.tensor([0.5, -0.5], dtype=D))


def test_weight_decay_after_the_merge_and_scheduler_compatibility():
    w = torch.nn.Parameter(torch.ones(2, dtype=D))
    zero = {"w": torch.zeros(2, dtype=D)}
    opt = ondare([("w", w)], zero, zero, reserve_p=1.0, alpha=0.0, lr=0.1, weight_decay=0.5, inner=sgd(0.1))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5)  # halves the shared lr to 0.05
    assert opt.inner.param_groups[0]["lr"] == pytest.approx(0.05)
    w.grad = torch.tensor([1.0, 0.0], dtype=D)
    opt.step()
    sched.step()
    # w = [1 - 0.05, 1] then * (1 - 0.05 * 0.5)
    assert torch.allclose(w.detach(), torch.tensor([0.95, 1.0], dtype=D) * (1 - 0.025))
    assert isinstance(opt, OnlineMergingOptimizer) and opt.state_dict()["steps"] == 1


def test_mismatched_reference_names_the_tensor():
    model = toy()
    base, ref = states(model)
    ref["weight"] = torch.zeros(5, dtype=D)
    with pytest.raises(ValueError, match=r"reference: tensor 'weight' has shape \[5\]"):
        ondare(model.named_parameters(), base, ref)
    ref["weight"] = base["weight"].clone()
    del base["bias"]
    with pytest.raises(ValueError, match="base: missing tensor 'bias'"):
        onties(model.named_parameters(), base, ref)
