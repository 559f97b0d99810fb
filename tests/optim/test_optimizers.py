"""Optimizers (SAM/ASAM, FRUGAL, Collage, Bloop): reference steps written from the papers / official code, limiting
cases, and resume-equals-uninterrupted through state_dict on a small model trained here."""

import copy
import io

import pytest
import torch

import alignkit as ak
from alignkit.optim import (
    SAM,
    Bloop,
    CollageAdamW,
    Frugal,
    bloop_direction,
    build_optimizer,
    effective_descent_quality,
    fast_two_sum,
    grow,
    needs_closure,
    two_sum,
)
from tests.claims_io import interval_figures, record_claims

BF = torch.bfloat16


# --- SAM / ASAM (55) ------------------------------------------------------------------------------------------------


def test_sam_step_on_a_quadratic_matches_the_paper():
    """L = 1/2 sum_i a_i w_i^2, g = a*w, e = rho g/||g||, SAM gradient = a*(w + e); SGD base: w - lr * a * (w + e)."""
    a = torch.tensor([1.0, 3.0], dtype=torch.float64)
    w0 = torch.tensor([0.5, -1.0], dtype=torch.float64)
    w = torch.nn.Parameter(w0.clone())
    opt = SAM([w], torch.optim.SGD, rho=0.1, lr=0.2)

    def closure():
        loss = 0.5 * (a * w**2).sum()
        loss.backward()
        return loss

    closure()
    opt.step(closure)
    g = a * w0
    e = 0.1 * g / g.norm()
    assert torch.allclose(w.detach(), w0 - 0.2 * a * (w0 + e), atol=1e-14)


def test_asam_perturbation_is_scaled_by_the_weights():
    """ASAM: e = rho * w^2 g / || |w| g ||."""
    a = torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)
    w0 = torch.tensor([0.3, -2.0, 1.5], dtype=torch.float64)
    w = torch.nn.Parameter(w0.clone())
    opt = build_optimizer("asam", [w], lr=0.0, betas=(0.9, 0.999), rho=0.5, weight_decay=0.0)
    (0.5 * (a * w**2).sum()).backward()
    opt.first_step()
    g = a * w0
    e = 0.5 * w0**2 * g / (w0.abs() * g).norm()
    assert torch.allclose(w.detach(), w0 + e, atol=1e-14)
    opt.second_step()  # lr 0: back exactly at w
    assert torch.allclose(w.detach(), w0, atol=1e-14)


def test_sam_rho_zero_is_the_base_optimizer_and_needs_a_closure():
    torch.manual_seed(0)
    m1 = torch.nn.Linear(4, 3)
    m2 = copy.deepcopy(m1)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    sam = SAM(m1.parameters(), torch.optim.AdamW, rho=0.0, lr=1e-2)
    adam = torch.optim.AdamW(m2.parameters(), lr=1e-2)
    for _ in range(3):

        def loss_fn():
            return torch.nn.functional.cross_entropy(m1(x), y)

        loss_fn().backward()
        sam.step(lambda f=loss_fn: (lo := f()).backward() or lo)
        sam.zero_grad()
        adam.zero_grad()
        torch.nn.functional.cross_entropy(m2(x), y).backward()
        adam.step()
    for p, q in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-7)
    assert needs_closure(sam) and not needs_closure(adam)
    with pytest.raises(ValueError, match="closure"):
        sam.step()


# --- FRUGAL (96) --------------------------------------------------------------------------------------------------


def _grads(model, x, y):
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()


def test_frugal_density_one_is_adamw_and_zero_is_signsgd():
    torch.manual_seed(1)
    m1 = torch.nn.Linear(5, 4)
    m2, m3 = copy.deepcopy(m1), copy.deepcopy(m1)
    x, y = torch.randn(8, 5), torch.randint(0, 4, (8,))
    f1 = Frugal(m1.parameters(), lr=1e-2, density=1.0, weight_decay=0.1)
    adam = torch.optim.AdamW(m2.parameters(), lr=1e-2, weight_decay=0.1)
    f0 = Frugal(m3.parameters(), lr=1e-2, density=0.0, lr_free=0.05)
    for _ in range(4):
        for m, o in ((m1, f1), (m2, adam)):
            _grads(m, x, y)
            o.step()
        w_before = m3.weight.detach().clone()
        _grads(m3, x, y)
        g = m3.weight.grad.clone()
        f0.step()
        assert torch.allclose(m3.weight, w_before - 0.05 * g.sign())
    for p, q in zip(m1.parameters(), m2.parameters(), strict=True):
        assert torch.allclose(p, q, atol=1e-6)


def test_frugal_reference_step_and_state_size():
    """One step by hand: Adam on the selected columns (first step: m_hat/sqrt(v_hat) = sign(g)), signSGD elsewhere;
    state only on the selected columns; a redraw at update_gap resets the moments."""
    w = torch.nn.Parameter(torch.randn(3, 8))
    opt = Frugal([w], lr=0.1, lr_free=0.01, density=0.25, update_gap=2, eps=0.0)
    g = torch.randn(3, 8)
    w0 = w.detach().clone()
    w.grad = g.clone()
    opt.step()
    cols = opt.state[w]["columns"]
    assert cols.numel() == 2 and opt.state[w]["exp_avg"].shape == (3, 2)
    free = torch.ones(8, dtype=torch.bool)
    free[cols] = False
    expect = w0.clone()
    expect[:, cols] -= 0.1 * g[:, cols].sign()
    expect[:, free] -= 0.01 * g[:, free].sign()
    assert torch.allclose(w.detach(), expect)
    for _ in range(2):
        w.grad = torch.randn(3, 8)
        opt.step()
    assert opt.state[w]["adam_step"] == 1  # step 2 redrew the subspace and reset the moments


# --- Collage (101) ---------------------------------------------------------------------------------------------------


def test_fast_two_sum_is_exact_in_bf16():
    g = torch.Generator().manual_seed(2)
    a = (torch.randn(1000, generator=g) * 10).to(BF)
    b = (torch.randn(1000, generator=g) * 0.01).to(BF)
    big, small = (
        torch.where(a.abs() >= b.abs(), a, b),
        torch.where(a.abs() >= b.abs(), b, a),
    )  # Fast2Sum needs |a|>=|b|
    s, e = fast_two_sum(big, small)
    assert s.dtype == BF and torch.equal(s.double() + e.double(), a.double() + b.double())
    s, e = two_sum(b, a)  # TwoSum: any order
    assert torch.equal(s.double() + e.double(), a.double() + b.double())


def test_multi_component_float_keeps_updates_bf16_loses():
    """1.0 + 1e-4, 1000 times: bf16 rounds every addition away (ulp(1) = 2^-7, the whole 0.1 is lost); the MCF
    pair keeps all but the low component's own rounding (<= 2^-17 a step, here 2.6% of the 0.1 in total)."""
    plain = torch.ones(1, dtype=BF)
    hi, lo = torch.ones(1, dtype=BF), torch.zeros(1, dtype=BF)
    d = torch.full((1,), 1e-4, dtype=BF)
    for _ in range(1000):
        plain = plain + d
        hi, lo = grow(hi, lo, d)
    exact = 1.0 + 1000 * d.double().item()
    assert plain.item() == 1.0
    assert abs(hi.double().item() + lo.double().item() - exact) < 0.005 < abs(plain.item() - exact)


def _regression_run(make_opt, dtype, steps=200, seed=3):
    torch.manual_seed(seed)
    x = torch.randn(64, 8)
    w_true = torch.randn(8, 1)
    y = x @ w_true
    w = torch.nn.Parameter((torch.randn(8, 1) * 0.1 + 4.0).to(dtype))  # magnitude ~4: ulp(4) in bf16 = 2^-5
    opt = make_opt([w])
    for _ in range(steps):
        opt.zero_grad()
        ((x.to(dtype) @ w).float() - y).pow(2).mean().backward()
        opt.step()
    return w, opt


def test_collage_recovers_the_precision_of_fp32_master_weights():
    """AdamW with lr 1e-3 on weights ~4: each step (~1e-3) is below half an ulp of bf16 at 4 (2^-6 = 0.0156), so
    plain bf16 AdamW barely moves, while Collage's hi + lo tracks fp32 AdamW (the remaining gap comes from the
    bf16 forward pass and bf16 moments, which Collage-light keeps). Training seeds 0, 1, 2 (data and initial
    weights; all three optimisers start from the same ones): the mean error and its 95% t-interval across seeds."""
    from alignkit.eval.metrics import seed_interval
    from tests.effect import TRAINING_SEEDS

    errs: dict[str, list[float]] = {"plain": [], "collage": []}
    for seed in TRAINING_SEEDS:
        ref, _ = _regression_run(
            lambda p: torch.optim.AdamW(p, lr=1e-3, weight_decay=0.0), torch.float32, seed=seed
        )
        plain, _ = _regression_run(lambda p: CollageAdamW(p, lr=1e-3, mcf=False), BF, seed=seed)
        col, opt = _regression_run(lambda p: CollageAdamW(p, lr=1e-3, mcf=True), BF, seed=seed)
        errs["plain"].append((plain.double() - ref.double()).abs().max().item())
        errs["collage"].append((opt.master_value(col) - ref.double()).abs().max().item())
    iv = {k: seed_interval(v) for k, v in errs.items()}
    record_claims(
        "optim_collage",
        {
            **interval_figures("err_plain_bf16", iv["plain"]),
            **interval_figures("err_collage", iv["collage"]),
            "ratio_seeds": [p / c for p, c in zip(errs["plain"], errs["collage"], strict=True)],
        },
        tolerance=1e-3,
    )
    # max |w - w_fp32|: Collage's error is over 10x smaller on every seed
    assert all(p > 0.1 and c < p / 10 for p, c in zip(errs["plain"], errs["collage"], strict=True)), errs
    before = torch.full((4,), 4.0, dtype=BF)
    upd = torch.full((4,), -1e-3)
    assert effective_descent_quality(before, before + upd.to(BF), upd) == 0.0  # the plain bf16 add loses all
    hi, lo = grow(before, torch.zeros(4, dtype=BF), upd.to(BF))
    assert effective_descent_quality(before, hi.double() + lo.double(), upd) == pytest.approx(1.0, abs=1e-2)
    with pytest.raises(TypeError, match="bf16"):
        CollageAdamW([torch.nn.Parameter(torch.zeros(2))])


# --- Bloop (116): apple/ml-bloop's JAX code restated in torch ---------------------------------------------------------


def _official_bloop(grad_main, grad_aux, grad_main_ema, ema=0.1, lbda=0.1, eps=1e-7):
    """bloop.optim._bloop_direction_general + utils.tree_proj / update_ema (rescale=False, use_ratio_only=False)."""
    grad_main_ema = [a + ema * (b - a) for a, b in zip(grad_main_ema, grad_main, strict=True)]  # update_ema
    dot = sum(torch.vdot(a.flatten(), b.flatten()) for a, b in zip(grad_main_ema, grad_aux, strict=True))
    sq = sum(torch.vdot(a.flatten(), a.flatten()) for a in grad_main_ema)
    ratio = dot / (sq + eps)
    projected = [b - ratio * a for b, a in zip(grad_aux, grad_main_ema, strict=True)]
    return [a + lbda * b for a, b in zip(grad_main, projected, strict=True)], grad_main_ema


def test_bloop_direction_matches_official_code_and_is_orthogonal():
    g = torch.Generator().manual_seed(4)
    shapes = [(3, 2), (4,)]
    gm = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    ga = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    prev = [torch.randn(s, generator=g, dtype=torch.float64) for s in shapes]
    d, m = bloop_direction(gm, ga, prev, lam=0.3, ema=0.2)
    d_ref, m_ref = _official_bloop(gm, ga, prev, ema=0.2, lbda=0.3)
    assert all(torch.allclose(a, b) for a, b in zip(d + m, d_ref + m_ref, strict=True))
    d0, m0 = bloop_direction(
        gm, ga, prev, lam=0.3, ema=0.2, eps=0.0
    )  # without the official eps: exact projection
    proj = [(x - y) / 0.3 for x, y in zip(d0, gm, strict=True)]
    assert abs(sum((p * q).sum() for p, q in zip(proj, m0, strict=True))) < 1e-12
    par = [2.5 * x for x in m]  # g_aux parallel to the EMA: nothing of it survives
    d_par, _ = bloop_direction(gm, par, prev, lam=0.3, ema=0.2)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(d_par, gm, strict=True))


def test_bloop_optimizer_step_with_sgd_base():
    torch.manual_seed(5)
    w = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    opt = Bloop([w], torch.optim.SGD, lam=0.5, ema=0.1, lr=0.1)
    w0 = w.detach().clone()
    main, aux = (w**2).sum(), (w - 1).abs().sum()
    opt.backward(main, aux)
    opt.step()
    gm, ga = 2 * w0, torch.sign(w0 - 1)
    d, _ = bloop_direction([gm], [ga], None, lam=0.5, ema=0.1)
    assert torch.allclose(w.detach(), w0 - 0.1 * d[0])
    # no auxiliary loss: the base optimizer's step
    w1 = w.detach().clone()
    opt.zero_grad()
    (w**2).sum().backward()
    opt.step()
    assert torch.allclose(w.detach(), w1 - 0.1 * 2 * w1)


# --- resume equals uninterrupted -----------------------------------------------------------------------------------


def _train(opt_name, steps, kw, state=None, model_state=None):
    torch.manual_seed(6)
    dtype = BF if opt_name == "collage_adamw" else torch.float32
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).to(dtype)
    if model_state is not None:
        model.load_state_dict(model_state)
    opt = build_optimizer(opt_name, model.parameters(), lr=1e-2, betas=(0.9, 0.99), **kw)
    if state is not None:
        opt.load_state_dict(state)
    data = torch.Generator().manual_seed(7)
    xs = [torch.randn(16, 6, generator=data).to(dtype) for _ in range(6)]
    ys = [torch.randint(0, 3, (16,), generator=data) for _ in range(6)]
    start = 6 - steps if state is not None else 0
    for t in range(start, start + steps):

        def loss_fn(t=t):
            return torch.nn.functional.cross_entropy(model(xs[t]).float(), ys[t])

        opt.zero_grad()
        if opt_name == "bloop":
            opt.backward(loss_fn(), sum(p.float().pow(2).sum() for p in model.parameters()))
            opt.step()
        elif needs_closure(opt):
            loss_fn().backward()
            opt.step(lambda f=loss_fn: (lo := f()).backward() or lo)
        else:
            loss_fn().backward()
            opt.step()
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    return model, torch.load(buf, weights_only=True)


@pytest.mark.parametrize(
    "name,kw",
    [
        ("sam", {"rho": 0.05}),
        ("frugal", {"density": 0.5, "update_gap": 2}),
        ("collage_adamw", {}),
        ("bloop", {"lam": 0.1}),
    ],
)
def test_resume_equals_uninterrupted(name, kw):
    full, _ = _train(name, 6, kw)
    half, state = _train(name, 3, kw)
    resumed, _ = _train(name, 3, kw, state=state, model_state=copy.deepcopy(half.state_dict()))
    for p, q in zip(full.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q), name


def test_registered_and_built_by_name():
    for n in ("sam", "asam", "frugal", "collage", "bloop"):
        assert ak.get(n).kind == "optimizer"
    assert {c.name for c in ak.list_components(kind="optimizer")} >= {
        "sam",
        "frugal",
        "collage_adamw",
        "bloop",
    }
    with pytest.raises(TypeError, match="frugal"):
        build_optimizer("frugal", torch.nn.Linear(2, 2).parameters(), lr=1e-3, rhoo=1)
    with pytest.raises(ValueError, match="not an optimizer alignkit can build"):
        build_optimizer("dpo", torch.nn.Linear(2, 2).parameters(), lr=1e-3)
