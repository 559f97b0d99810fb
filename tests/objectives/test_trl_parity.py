"""Parity with TRL 1.16: TRL's own loss code (called through tests/objectives/trl_harness.py) and alignkit's
objectives agree to 1e-6 in loss and gradient on random fp64 inputs with unequal completion lengths."""

from __future__ import annotations

import pytest
import torch
from helpers import grads, preference_batch, token_inputs
from trl_harness import trl_cpo_losses, trl_dpo_loss, trl_kto_loss, trl_orpo_losses, trl_reward_loss

import alignkit as ak

TOL = dict(atol=1e-6, rtol=1e-6)

# TRL loss_type -> (alignkit alias, extra hyper-parameters used on both sides)
DPO_TYPES = {
    "sigmoid": {},
    "hinge": {},
    "ipo": {},
    "exo_pair": {"label_smoothing": 1e-3},
    "nca_pair": {},
    "robust": {"label_smoothing": 0.2},
    "bco_pair": {},
    "sppo_hard": {},
    "aot": {"label_smoothing": 0.1},
    "aot_unpaired": {"label_smoothing": 0.1},
    "apo_zero": {},
    "apo_down": {},
    "discopop": {"discopop_tau": 0.05},
    "sft": {},
    "sigmoid_norm": {},
}
F_DIV_TYPES = ["sigmoid", "sigmoid_norm", "hinge", "ipo", "exo_pair", "robust", "discopop"]


def assert_matches_trl(loss_type, beta, hp, seed=0, dtype=torch.float64, with_lss=False, **modifiers):
    x = token_inputs(b=5, t=9, seed=seed, dtype=dtype)
    args = [x[k] for k in ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps")]
    trl_hp = dict(hp)
    if "discopop_tau" in trl_hp:
        trl_hp["discopop_tau"] = hp["discopop_tau"]
    lss = {"lss_c": x["chosen_log_sum_sq_probs"], "lss_r": x["rejected_log_sum_sq_probs"]} if with_lss else {}
    ref_loss, ref_metrics = trl_dpo_loss(
        loss_type, *args, x["chosen_mask"], x["rejected_mask"], beta=beta, **trl_hp, **modifiers, **lss
    )
    obj = ak.get(loss_type)
    ours_hp = {k: v for k, v in hp.items() if k in obj.defaults}
    if obj.name == "sft":
        out = obj(preference_batch(x))
    else:
        out = obj(preference_batch(x, with_lss=with_lss), beta=beta, **ours_hp, **modifiers)
    torch.testing.assert_close(out.loss, ref_loss.to(out.loss.dtype), **TOL)
    g_ours = grads(out.loss, x["chosen_logps"], x["rejected_logps"])
    g_trl = grads(ref_loss, x["chosen_logps"], x["rejected_logps"])
    for a, b in zip(g_ours, g_trl, strict=True):
        a = torch.zeros_like(x["chosen_logps"]) if a is None else a
        b = torch.zeros_like(x["chosen_logps"]) if b is None else b
        torch.testing.assert_close(a, b, **TOL)
    return out, ref_metrics


@pytest.mark.parametrize("loss_type", list(DPO_TYPES))
@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_trainer_loss_types(loss_type, beta):
    out, trl_metrics = assert_matches_trl(loss_type, beta, DPO_TYPES[loss_type], seed=int(beta * 10))
    if loss_type != "sft":
        for name in (
            "rewards/chosen",
            "rewards/rejected",
            "rewards/margins",
            "rewards/accuracies",
            "logps/chosen",
            "logps/rejected",
        ):
            assert out.metrics[name] == pytest.approx(trl_metrics[name], abs=1e-6), name


@pytest.mark.parametrize("loss_type", F_DIV_TYPES)
@pytest.mark.parametrize("f_div", ["forward_kl", "js_divergence"])
def test_f_divergences(loss_type, f_div):
    assert_matches_trl(loss_type, 0.1, DPO_TYPES[loss_type], seed=3, f_divergence_type=f_div)


@pytest.mark.parametrize("coef", [0.5, 1.0, 1.5])
def test_alpha_divergence(coef):
    # TRL's alpha-divergence clamps by dtype and only knows fp16/bf16/fp32, so this runs in fp32.
    x_type = torch.float32
    out, _ = assert_matches_trl(
        "sigmoid",
        0.1,
        {},
        seed=4,
        dtype=x_type,
        f_divergence_type="alpha_divergence",
        f_alpha_divergence_coef=coef,
    )
    assert torch.isfinite(out.loss)


def test_shared_modifier_defaults_are_trl_dpoconfig_defaults():
    """The DPO family's shared modifiers default to TRL 1.16 ``DPOConfig``'s values (their documented source)."""
    import dataclasses

    from trl import DPOConfig

    trl_defaults = {f.name: f.default for f in dataclasses.fields(DPOConfig)}
    for name in ("dpo", "ipo", "hinge", "sigmoid_norm"):
        ours = ak.get(name).defaults
        for key in ("ld_alpha", "use_weighting", "f_divergence_type", "f_alpha_divergence_coef"):
            assert ours[key] == trl_defaults[key], (name, key, ours[key], trl_defaults[key])


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "apo_zero", "nca_pair"])
def test_ld_dpo(loss_type):
    assert_matches_trl(loss_type, 0.1, DPO_TYPES[loss_type], seed=5, ld_alpha=0.5)


# Not "hinge": TRL 1.16 multiplies the ReLU output in place under use_weighting, and its own backward fails.
@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "bco_pair"])
def test_wpo_weighting(loss_type):
    assert_matches_trl(loss_type, 0.1, DPO_TYPES[loss_type], seed=6, with_lss=True, use_weighting=True)


def test_weighted_mix_matches_trl_multi_loss():
    """TRL's loss_type=["sigmoid", "sft"] with loss_weights = ak.combine (RPO's Appendix-F / TRL form)."""
    x = token_inputs(b=4, t=6, seed=7)
    args = [x[k] for k in ("chosen_logps", "rejected_logps", "ref_chosen_logps", "ref_rejected_logps")]
    ref_loss, _ = trl_dpo_loss(
        ["sigmoid", "sft"], *args, x["chosen_mask"], x["rejected_mask"], beta=0.2, loss_weights=[1.0, 0.3]
    )
    mix = ak.combine([("dpo", 1.0), ("sft", 0.3)])
    out = mix(preference_batch(x), beta=0.2)
    torch.testing.assert_close(out.loss, ref_loss, **TOL)
    for a, b in zip(grads(out.loss, *args[:2]), grads(ref_loss, *args[:2]), strict=True):
        torch.testing.assert_close(a, b, **TOL)
    # RPO with nll="mean" is the same objective
    rpo = ak.get("rpo")(preference_batch(x), beta=0.2, eta=0.3, nll="mean")
    dpo = ak.get("dpo")(preference_batch(x), beta=0.2)
    sft_per_example = -(x["chosen_logps"].sum(-1) / x["chosen_mask"].sum(-1))
    torch.testing.assert_close(rpo.loss, dpo.loss + 0.3 * sft_per_example.mean(), **TOL)


@pytest.mark.parametrize("loss_type", ["kto", "apo_zero_unpaired"])
@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.33, 0.7)])
def test_kto_trainer(loss_type, weights):
    g = torch.Generator().manual_seed(11)
    n, t = 6, 5
    mask = (torch.arange(t) < torch.tensor([5, 3, 4, 1, 5, 2]).unsqueeze(1)).double()
    lp = lambda: -torch.rand(n, t, generator=g, dtype=torch.float64) * 2 * mask  # noqa: E731
    logps = lp().requires_grad_()
    ref, kl, ref_kl = lp(), lp(), lp()
    labels = torch.tensor([1, 0, 1, 1, 0, 0])
    ref_loss, trl_metrics = trl_kto_loss(
        loss_type,
        logps,
        ref,
        labels,
        mask,
        kl,
        ref_kl,
        mask,
        beta=0.2,
        desirable_weight=weights[0],
        undesirable_weight=weights[1],
    )
    batch = ak.UnpairedBatch(
        logps=logps,
        mask=mask,
        labels=labels.bool(),
        ref_logps=ref,
        kl_logps=kl.sum(-1),
        ref_kl_logps=ref_kl.sum(-1),
    )
    out = ak.get(loss_type)(batch, beta=0.2, desirable_weight=weights[0], undesirable_weight=weights[1])
    torch.testing.assert_close(out.loss, ref_loss, **TOL)
    torch.testing.assert_close(grads(out.loss, logps)[0], grads(ref_loss, logps)[0], **TOL)
    for name in ("rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected"):
        assert out.metrics[name] == pytest.approx(trl_metrics[name], abs=1e-6), name
    if loss_type == "kto":
        assert out.metrics["kl"] == pytest.approx(trl_metrics["kl"], abs=1e-9)


def _seq(seed, b=5):
    g = torch.Generator().manual_seed(seed)
    lengths_c = torch.randint(1, 9, (b,), generator=g).double()
    lengths_r = torch.randint(1, 9, (b,), generator=g).double()
    c = (-torch.rand(b, generator=g, dtype=torch.float64) * 2 * lengths_c).requires_grad_()
    r = (-torch.rand(b, generator=g, dtype=torch.float64) * 2 * lengths_r).requires_grad_()
    return c, r, lengths_c, lengths_r


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_cpo_matches_trl(label_smoothing):
    c, r, lc, lr = _seq(1)
    batch = ak.PreferenceBatch.from_sequence_logps(c, r, chosen_lengths=lc, rejected_lengths=lr)
    out = ak.get("cpo")(batch, beta=0.3, label_smoothing=label_smoothing, cpo_alpha=0.0)
    losses, cr, rr = trl_cpo_losses("sigmoid", c, r, beta=0.3, label_smoothing=label_smoothing)
    torch.testing.assert_close(out.losses, losses, **TOL)
    torch.testing.assert_close(grads(out.loss, c, r)[0], grads(losses.mean(), c, r)[0], **TOL)
    assert out.metrics["rewards/chosen"] == pytest.approx(cr.mean().item())
    # with the NLL term: TRL adds cpo_alpha * cross-entropy over chosen tokens = token-mean NLL
    out2 = ak.get("cpo")(batch, beta=0.3, label_smoothing=label_smoothing, cpo_alpha=1.0)
    torch.testing.assert_close(out2.loss, losses.mean() + (-c.sum() / lc.sum()), **TOL)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.4])
def test_simpo_matches_trl(gamma):
    c, r, lc, lr = _seq(2)
    batch = ak.PreferenceBatch.from_sequence_logps(c, r, chosen_lengths=lc, rejected_lengths=lr)
    out = ak.get("simpo")(batch, beta=2.0, gamma=gamma)
    losses, cr, rr = trl_cpo_losses("simpo", c / lc, r / lr, beta=2.0, simpo_gamma=gamma)
    torch.testing.assert_close(out.losses, losses, **TOL)
    torch.testing.assert_close(grads(out.loss, c, r)[1], grads(losses.mean(), c, r)[1], **TOL)
    assert out.metrics["rewards/margins"] == pytest.approx((cr - rr).mean().item())


@pytest.mark.parametrize("alpha", [0.1, 0.25, -0.2])
def test_alphapo_matches_trl(alpha):
    c, r, lc, lr = _seq(3)
    batch = ak.PreferenceBatch.from_sequence_logps(c, r, chosen_lengths=lc, rejected_lengths=lr)
    out = ak.get("alphapo")(batch, beta=2.5, gamma=1.0, alpha=alpha)
    losses, cr, rr = trl_cpo_losses("simpo", c / lc, r / lr, beta=2.5, simpo_gamma=1.0, alpha=alpha)
    torch.testing.assert_close(out.losses, losses, **TOL)
    torch.testing.assert_close(grads(out.loss, c, r)[0], grads(losses.mean(), c, r)[0], **TOL)


def test_orpo_matches_trl():
    c, r, lc, lr = _seq(4)
    batch = ak.PreferenceBatch.from_sequence_logps(c, r, chosen_lengths=lc, rejected_lengths=lr)
    out = ak.get("orpo")(batch, beta=0.1)
    or_losses, *_ = trl_orpo_losses(c / lc, r / lr, beta=0.1)
    nll = -c.sum() / lc.sum()  # TRL's CrossEntropyLoss over chosen tokens
    expected = nll - or_losses.mean()  # TRL: loss = policy_nll_loss - losses.mean()
    torch.testing.assert_close(out.loss, expected, **TOL)
    torch.testing.assert_close(grads(out.loss, c, r)[1], grads(expected, c, r)[1], **TOL)


@pytest.mark.parametrize("with_margin", [False, True])
@pytest.mark.parametrize("center", [None, 0.01])
def test_bradley_terry_matches_reward_trainer(with_margin, center):
    g = torch.Generator().manual_seed(5)
    rc = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    rr = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    margin = torch.rand(6, generator=g, dtype=torch.float64) if with_margin else None
    ref = trl_reward_loss(rc, rr, margin=margin, center_rewards_coefficient=center)
    out = ak.get("reward_model")(ak.RewardBatch(rc, rr, margin), center_rewards_coefficient=center)
    torch.testing.assert_close(out.loss, ref, **TOL)
    torch.testing.assert_close(grads(out.loss, rc, rr)[0], grads(ref, rc, rr)[0], **TOL)
