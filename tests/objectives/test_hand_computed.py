"""Each objective on a tiny input whose value is worked out by hand (in the comments), plus the limiting case
or invariant its paper implies."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import preference_batch, token_inputs

import alignkit as ak

D = torch.float64


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def lsig(x: float) -> float:
    return math.log(sig(x))


def pair(c=-1.0, r=-2.0, rc=-1.5, rr=-1.5, lc=2.0, lr=4.0, grad=True) -> ak.PreferenceBatch:
    """One pair from sequence sums: log-ratios 0.5 (chosen) and -0.5 (rejected), so u = 1."""
    t = lambda v: torch.tensor([v], dtype=D, requires_grad=grad)  # noqa: E731
    return ak.PreferenceBatch.from_sequence_logps(
        t(c),
        t(r),
        torch.tensor([rc], dtype=D),
        torch.tensor([rr], dtype=D),
        chosen_lengths=torch.tensor([lc], dtype=D),
        rejected_lengths=torch.tensor([lr], dtype=D),
    )


def value(name: str, batch=None, **hp) -> float:
    return ak.get(name)(batch if batch is not None else pair(), **hp).loss.item()


# --- hand-computed values (u = 1: chosen log-ratio 0.5, rejected -0.5; |y_w| = 2, |y_l| = 4) ----------------
HAND = [
    ("dpo", {"beta": 0.1}, -lsig(0.1)),
    ("dpo", {"beta": 0.1, "label_smoothing": 0.2}, -0.8 * lsig(0.1) - 0.2 * lsig(-0.1)),
    ("hinge", {"beta": 0.1}, 1 - 0.1),  # max(0, 1 - 0.1 * 1)
    # per-token log-ratios 0.5/2 - (-0.5)/4 = 0.375; target 1/(2*0.1) = 5
    ("ipo", {"beta": 0.1}, (0.375 - 5.0) ** 2),
    (
        "exo_pair",
        {"beta": 1.0, "label_smoothing": 0.01},
        sig(1) * (lsig(1) - math.log(0.99)) + sig(-1) * (lsig(-1) - math.log(0.01)),
    ),
    ("nca_pair", {"beta": 1.0}, -lsig(0.5) - 0.5 * lsig(-0.5) - 0.5 * lsig(0.5)),
    ("robust", {"beta": 1.0, "label_smoothing": 0.25}, (-(0.75) * lsig(1) + 0.25 * lsig(-1)) / 0.5),
    ("bco_pair", {"beta": 1.0}, -lsig(0.5) - lsig(0.5)),
    ("sppo_hard", {"beta": 0.5}, (0.5 - 1.0) ** 2 + (-0.5 + 1.0) ** 2),
    # one pair: sorting is the identity; policy margin 1, reference margin 0
    ("aot", {"beta": 1.0}, -lsig(1.0)),
    ("aot_unpaired", {"beta": 1.0}, -lsig(1.0)),
    ("apo_zero", {"beta": 1.0}, (1 - sig(0.5)) + sig(-0.5)),
    ("apo_down", {"beta": 1.0}, sig(0.5) + (1 - sig(1.0))),
    ("discopop", {"beta": 1.0, "discopop_tau": 0.5}, (1 - sig(2.0)) * -lsig(1.0) + sig(2.0) * math.exp(-1.0)),
    ("sigmoid_norm", {"beta": 1.0}, -lsig(0.375)),
    # rpo (sum): dpo + eta*beta*NLL_sum; NLL_sum = 1.0
    ("rpo", {"beta": 0.1, "eta": 0.5}, -lsig(0.1) + 0.5 * 0.1 * 1.0),
    ("rpo", {"beta": 0.1, "eta": 0.5, "nll": "mean"}, -lsig(0.1) + 0.5 * 0.5),
    # reference-free: policy margin log pi(y_w) - log pi(y_l) = 1; token NLL of chosen = 1/2
    ("cpo", {"beta": 1.0, "cpo_alpha": 1.0}, -lsig(1.0) + 0.5),
    # simpo: average log-probs -0.5 and -0.5 -> margin 0; loss = -log sigma(0 - gamma)
    ("simpo", {"beta": 2.0, "gamma": 1.0}, -lsig(-1.0)),
    ("alphapo", {"beta": 1.0, "gamma": 0.0, "alpha": 0.5}, -lsig(0.0)),
    # orpo: P_w = P_l = exp(-0.5) -> odds ratio 1 -> log sigma(0); NLL = 0.5
    ("orpo", {"beta": 0.1}, 0.5 - 0.1 * lsig(0.0)),
    ("beta_orpo", {"beta": 2.0}, -lsig(0.0)),
    # beta_asft at beta=1: -log P_w - log(1 - P_l), P = exp(-0.5)
    ("beta_asft", {"beta": 1.0}, 0.5 - math.log(1 - math.exp(-0.5))),
]


@pytest.mark.parametrize(
    ("name", "hp", "expected"), HAND, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(HAND)]
)
def test_hand_computed(name, hp, expected):
    assert value(name, **hp) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_sft_hand_computed():
    logps = torch.tensor([[-1.0, -2.0, 0.0], [-3.0, 0.0, 0.0]], dtype=D)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]], dtype=D)
    out = ak.get("sft")(ak.SFTBatch(logps, mask))
    assert out.loss.item() == pytest.approx((1 + 2 + 3) / 3)
    assert out.metrics["nll/per_example_mean"] == pytest.approx((1.5 + 3.0) / 2)
    # equals PyTorch's cross-entropy on logits whose log-softmax gives these targets
    logits = torch.randn(2, 3, 5, dtype=D)
    target = torch.randint(0, 5, (2, 3))
    lp = torch.log_softmax(logits, -1).gather(-1, target.unsqueeze(-1)).squeeze(-1)
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(-1, 5), target.masked_fill(mask == 0, -100).reshape(-1)
    )
    assert ak.get("sft")(ak.SFTBatch(lp, mask)).loss.item() == pytest.approx(ce.item(), rel=1e-12)


def test_kto_hand_computed():
    # rewards r = log pi - log ref: +1 (desirable), -1 (undesirable); KL pairs give z0 = mean(0.5, -0.1) = 0.2
    batch = ak.UnpairedBatch.from_sequence_logps(
        torch.tensor([-1.0, -3.0], dtype=D),
        torch.tensor([True, False]),
        ref_logps=torch.tensor([-2.0, -2.0], dtype=D),
        kl_logps=torch.tensor([-1.0, -2.1], dtype=D),
        ref_kl_logps=torch.tensor([-1.5, -2.0], dtype=D),
    )
    out = ak.get("kto")(batch, beta=1.0, desirable_weight=1.5, undesirable_weight=0.5)
    expected = (1.5 * (1 - sig(1 - 0.2)) + 0.5 * (1 - sig(0.2 + 1))) / 2
    assert out.loss.item() == pytest.approx(expected)
    assert out.metrics["kl"] == pytest.approx(0.2)
    # KL below zero is clamped to zero (the paper's max(0, .))
    neg = ak.UnpairedBatch.from_sequence_logps(
        torch.tensor([-1.0], dtype=D),
        torch.tensor([True]),
        ref_logps=torch.tensor([-2.0], dtype=D),
        kl_logps=torch.tensor([-3.0], dtype=D),
        ref_kl_logps=torch.tensor([-1.0], dtype=D),
    )
    assert ak.get("kto")(neg, beta=1.0).loss.item() == pytest.approx(1 - sig(1.0))


def test_apo_zero_unpaired_hand_computed():
    batch = ak.UnpairedBatch.from_sequence_logps(
        torch.tensor([-1.0, -3.0], dtype=D),
        torch.tensor([True, False]),
        ref_logps=torch.tensor([-2.0, -2.0], dtype=D),
    )
    out = ak.get("apo_zero_unpaired")(batch, beta=1.0)
    assert out.loss.item() == pytest.approx(((1 - sig(1.0)) + sig(-1.0)) / 2)


def test_bco_running_mean():
    batch = ak.UnpairedBatch.from_sequence_logps(
        torch.tensor([-1.0, -3.0], dtype=D),
        torch.tensor([True, False]),
        ref_logps=torch.tensor([-2.0, -2.0], dtype=D),
    )
    # rewards beta*r = +0.5, -0.5; previous state: mean 0.3 over 2 -> delta = (0.6 + 0) / 4 = 0.15
    out = ak.get("bco")(batch, beta=0.5, running_mean=0.3, running_count=2)
    assert out.metrics["bco/running_mean"] == pytest.approx(0.15)
    assert out.metrics["bco/running_count"] == 4
    assert out.loss.item() == pytest.approx((-lsig(0.5 - 0.15) - lsig(-(-0.5 - 0.15))) / 2)
    # feeding the state back reproduces a running mean over everything seen
    out2 = ak.get("bco")(batch, beta=0.5, running_mean=out.metrics["bco/running_mean"], running_count=4)
    assert out2.metrics["bco/running_mean"] == pytest.approx((0.6 + 0.0 + 0.0) / 6)


def test_bradley_terry_hand_computed():
    b = ak.RewardBatch(
        torch.tensor([2.0, 0.0], dtype=D),
        torch.tensor([1.0, 1.0], dtype=D),
        torch.tensor([0.5, 0.0], dtype=D),
    )
    out = ak.get("bradley_terry")(b, center_rewards_coefficient=0.1)
    expected = (-lsig(0.5) - lsig(-1.0)) / 2 + 0.1 * (9 + 1) / 2
    assert out.loss.item() == pytest.approx(expected)
    assert out.metrics["accuracy"] == 0.5


# --- limiting cases and invariants ------------------------------------------------------------------------------
def test_dpo_at_zero_margin_is_log2():
    b = pair(c=-1.0, r=-2.0, rc=-1.0, rr=-2.0)  # policy == reference
    assert value("dpo", b) == pytest.approx(math.log(2))


def test_cdpo_half_is_symmetric_in_the_label():
    """With eps = 0.5 the label carries no information: L(u) = L(-u), and the gradient vanishes at u = 0."""
    swapped = pair(c=-2.0, r=-1.0, rc=-1.5, rr=-1.5)  # u = -1
    assert value("dpo", pair(), beta=0.3, label_smoothing=0.5) == pytest.approx(
        value("dpo", swapped, beta=0.3, label_smoothing=0.5)
    )
    x = torch.tensor([-1.0], dtype=D, requires_grad=True)
    b = ak.PreferenceBatch.from_sequence_logps(
        x, torch.tensor([-2.0], dtype=D), torch.tensor([-1.0], dtype=D), torch.tensor([-2.0], dtype=D)
    )
    ak.get("dpo")(b, beta=0.3, label_smoothing=0.5).loss.backward()
    assert x.grad.item() == pytest.approx(0.0, abs=1e-15)


def test_hinge_is_zero_past_margin():
    assert value("hinge", pair(c=-0.0, r=-20.0), beta=0.1) == 0.0


def test_ipo_minimum_at_target_margin():
    # per-token margin h = 1/(2 tau) = 5 when chosen log-ratio is 10 over 2 tokens and rejected 0
    b = pair(c=-0.5, r=-1.5, rc=-10.5, rr=-1.5, lc=2.0, lr=4.0)
    out = ak.get("ipo")(b, beta=0.1)
    out.loss.backward()
    assert out.loss.item() == pytest.approx(0.0, abs=1e-20)


def test_sppo_minimum():
    b = pair(c=-1.0, r=-2.0, rc=-2.0, rr=-1.0)  # log-ratios +1, -1 = +-1/(2*0.5)
    assert value("sppo_hard", b, beta=0.5) == pytest.approx(0.0, abs=1e-24)


def test_robust_is_unbiased_under_label_noise():
    """rDPO (Lemma 3.1): E_flip[rDPO] = DPO: (1-eps) L(u) + eps L(-u) = -log sigma(beta u)."""
    eps, beta = 0.3, 0.7
    fwd = value("robust", pair(), beta=beta, label_smoothing=eps)
    flipped = value("robust", pair(c=-2.0, r=-1.0, rc=-1.5, rr=-1.5), beta=beta, label_smoothing=eps)
    assert (1 - eps) * fwd + eps * flipped == pytest.approx(-lsig(beta))
    assert value("robust", pair(), beta=beta, label_smoothing=0.0) == pytest.approx(
        value("dpo", pair(), beta=beta)
    )


def test_exo_matches_reverse_kl_definition():
    # the loss is KL(q || p) between Bernoulli(sigma(u)) and Bernoulli(1 - eps); it is >= 0 and 0 at q = p
    eps = 0.05
    u_star = math.log((1 - eps) / eps)  # sigma(u*) = 1 - eps
    b = pair(c=-1.0, r=-2.0, rc=-1.0 - u_star, rr=-2.0)
    assert value("exo_pair", b, beta=1.0, label_smoothing=eps) == pytest.approx(0.0, abs=1e-12)
    assert value("exo_pair", pair(), beta=1.0, label_smoothing=eps) > 0


def test_rpo_eta_zero_is_dpo():
    x = token_inputs(seed=2)
    a = ak.get("rpo")(preference_batch(x), beta=0.1, eta=0.0).loss
    b = ak.get("dpo")(preference_batch(x), beta=0.1).loss
    assert a.item() == pytest.approx(b.item(), rel=1e-14)


def test_rpo_gradient_on_chosen():
    """nll='sum': dL/dlogp_w = -beta (1 - sigma(beta u)) - eta beta (catalog 132's check)."""
    x = torch.tensor([-1.0], dtype=D, requires_grad=True)
    b = ak.PreferenceBatch.from_sequence_logps(
        x, torch.tensor([-2.0], dtype=D), torch.tensor([-1.5], dtype=D), torch.tensor([-1.5], dtype=D)
    )
    ak.get("rpo")(b, beta=0.2, eta=0.5).loss.backward()
    assert x.grad.item() == pytest.approx(-0.2 * (1 - sig(0.2)) - 0.5 * 0.2)


def test_aot_is_permutation_invariant_and_dpo_for_one_pair():
    x = token_inputs(b=6, seed=9)
    base = ak.get("aot")(preference_batch(x), beta=0.3).loss
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(1))
    y = {k: v[perm].detach() for k, v in x.items()}
    assert ak.get("aot")(preference_batch(y), beta=0.3).loss.item() == pytest.approx(base.item(), rel=1e-12)
    one = {k: v[:1].detach() for k, v in x.items()}
    assert ak.get("aot")(preference_batch(one), beta=0.3).loss.item() == pytest.approx(
        ak.get("dpo")(preference_batch(one), beta=0.3).loss.item(), rel=1e-12
    )


def test_apo_gradient_directions():
    """APO-zero raises the chosen and lowers the rejected likelihood; APO-down lowers both."""
    for name, sign_c in (("apo_zero", -1), ("apo_down", 1)):
        c = torch.tensor([-1.0], dtype=D, requires_grad=True)
        r = torch.tensor([-2.0], dtype=D, requires_grad=True)
        b = ak.PreferenceBatch.from_sequence_logps(
            c, r, torch.tensor([-1.5], dtype=D), torch.tensor([-1.5], dtype=D)
        )
        ak.get(name)(b, beta=0.5).loss.backward()
        assert math.copysign(1, c.grad.item()) == sign_c  # gradient descent moves opposite to the gradient
        assert r.grad.item() > 0  # the rejected log-prob is pushed down in both


def test_discopop_limits():
    # tau -> 0: pure logistic for negative margins, pure exponential for positive ones
    neg = pair(c=-2.0, r=-1.0, rc=-1.5, rr=-1.5)  # u = -1
    assert value("discopop", neg, beta=1.0, discopop_tau=1e-4) == pytest.approx(-lsig(-1.0), rel=1e-9)
    assert value("discopop", pair(), beta=1.0, discopop_tau=1e-4) == pytest.approx(math.exp(-1.0), rel=1e-9)


def test_sigmoid_norm_is_length_invariant():
    # repeating every token twice doubles sums and lengths; per-token log-ratios, and the loss, do not change
    x = token_inputs(seed=4)
    y = {k: torch.cat([v, v], dim=-1).detach() for k, v in x.items()}
    a = ak.get("sigmoid_norm")(preference_batch(x), beta=1.0).loss.item()
    b = ak.get("sigmoid_norm")(preference_batch(y), beta=1.0).loss.item()
    assert a == pytest.approx(b, rel=1e-12)
    assert ak.get("dpo")(preference_batch(y), beta=1.0).loss.item() != pytest.approx(a)


def test_cpo_without_nll_is_dpo_with_uniform_reference():
    x = token_inputs(seed=5)
    b = preference_batch(x)
    zero_ref = dict(
        x,
        ref_chosen_logps=torch.zeros_like(x["ref_chosen_logps"]),
        ref_rejected_logps=torch.zeros_like(x["ref_rejected_logps"]),
    )
    assert ak.get("cpo")(b, beta=0.2, cpo_alpha=0.0).loss.item() == pytest.approx(
        ak.get("dpo")(preference_batch(zero_ref), beta=0.2).loss.item(), rel=1e-12
    )


def test_simpo_gamma_zero_is_length_normalised_reference_free_dpo():
    x = token_inputs(seed=6)
    zero_ref = dict(
        x,
        ref_chosen_logps=torch.zeros_like(x["ref_chosen_logps"]),
        ref_rejected_logps=torch.zeros_like(x["ref_rejected_logps"]),
    )
    a = ak.get("simpo")(preference_batch(x), beta=1.5, gamma=0.0).loss.item()
    b = ak.get("sigmoid_norm")(preference_batch(zero_ref), beta=1.5).loss.item()
    assert a == pytest.approx(b, rel=1e-12)


def test_alphapo_tends_to_simpo():
    x = token_inputs(seed=7)
    a = ak.get("alphapo")(preference_batch(x), beta=2.0, gamma=0.5, alpha=1e-7).loss.item()
    b = ak.get("simpo")(preference_batch(x), beta=2.0, gamma=0.5).loss.item()
    assert a == pytest.approx(b, rel=1e-5)
    assert ak.get("alphapo")(
        preference_batch(x), beta=2.0, gamma=0.5, alpha=0.0
    ).loss.item() == pytest.approx(b)


def test_beta_orpo_at_beta_one_is_orpo_term():
    x = token_inputs(seed=8)
    b = preference_batch(x)
    orpo = ak.get("orpo")(b, beta=0.1)
    nll = orpo.metrics["nll_loss"]
    or_term = (orpo.loss.item() - nll) / 0.1  # ORPO = NLL + lambda * (-log sigma(log OR))
    assert ak.get("beta_orpo")(b, beta=1.0).loss.item() == pytest.approx(or_term, rel=1e-10)


def test_beta_asft_at_half_probability_is_two_log_two():
    half = math.log(0.5)
    b = pair(c=2 * half, r=4 * half)  # per-token average log-prob log 0.5 on both sides
    assert value("beta_asft", b, beta=1.0) == pytest.approx(2 * math.log(2))
    assert value("beta_asft", b, beta=3.0) == pytest.approx(2 * math.log(2))  # o = 0 whatever beta


def test_log_odds_is_stable_near_zero():
    from alignkit.objectives._math import log_odds

    lo = log_odds(torch.tensor([-1e-8, -50.0], dtype=D))
    assert torch.isfinite(lo).all()
    assert lo[0].item() == pytest.approx(math.log(1 / 1e-8), rel=1e-6)
    assert lo[1].item() == pytest.approx(-50.0, rel=1e-6)


def test_bradley_terry_margin_shifts_the_decision():
    b0 = ak.RewardBatch(torch.tensor([1.0]), torch.tensor([0.0]))
    b1 = ak.RewardBatch(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([1.0]))
    assert ak.get("bt")(b1).loss.item() == pytest.approx(math.log(2))
    assert ak.get("bt")(b0).loss.item() < ak.get("bt")(b1).loss.item()
