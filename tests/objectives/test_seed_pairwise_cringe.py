"""Pairwise Cringe (arXiv:2312.16682): the token contrast by hand, the gate's limits, the unlikelihood limit."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import alignkit as ak
from alignkit.batches_extra import CringePreferenceBatch
from alignkit.objectives.preference.pairwise_cringe import sample_positive_tokens

D = torch.float64


def test_k1_contrast_token_by_hand():
    logits = torch.tensor([[[2.0, 1.0, 0.0]]], dtype=D)
    ids, logps = sample_positive_tokens(logits, torch.tensor([[0]]), k=1)
    assert ids.item() == 1
    neg = torch.log_softmax(logits, -1)[0, 0, 0]
    # 2-way CE over [positive, negative] logits: -log(e^1 / (e^1 + e^2)) = 1.3133
    assert F.softplus(neg - logps[0, 0]).item() == pytest.approx(math.log(1 + math.e), abs=1e-12)


def test_sampler_never_returns_the_label_and_stays_in_top_k():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 50, 12, generator=g, dtype=D)
    labels = logits.argmax(-1)
    ids, _ = sample_positive_tokens(logits, labels, k=3, generator=g)
    assert (ids != labels).all()
    top4 = logits.topk(4, -1).indices
    assert (top4 == ids.unsqueeze(-1)).any(-1).all()


def _batch(c, r, pos=None):
    kw = dict(
        chosen_logps=torch.tensor([c], dtype=D, requires_grad=True),
        rejected_logps=torch.tensor([r], dtype=D, requires_grad=True),
    )
    if pos is None:
        return ak.PreferenceBatch(**kw), kw
    kw["rejected_positive_logps"] = torch.tensor([pos], dtype=D, requires_grad=True)
    return CringePreferenceBatch(**kw), kw


def test_hand_value_and_gate():
    # M = -1 - (-2) = 1; b = 0, tau = 1 -> g = sigma(-1); cr = softplus(log p(l) - log p(s)) per token, mean
    b, _ = _batch([-0.5, -0.5], [-1.0, -1.0], pos=[-2.0, -0.5])
    cr_sum = (F.softplus(torch.tensor(1.0)) + F.softplus(torch.tensor(-0.5))).item()
    g = 1 / (1 + math.e)
    out = ak.get("pairwise_cringe")(b, alpha=2.0, pooling="sequence")  # per-pair token means
    assert out.loss.item() == pytest.approx(0.5 + 2.0 * g * cr_sum / 2, abs=1e-7)
    # default: ParlAI's one token mean over the batch: (NLL sum 1.0 + 2 g cr_sum) / (2 + 2 tokens)
    out = ak.get("pairwise_cringe")(b, alpha=2.0)
    assert out.loss.item() == pytest.approx((1.0 + 2.0 * g * cr_sum) / 4, abs=1e-7)
    assert out.losses.mean().item() == pytest.approx(out.loss.item(), abs=1e-12)


def test_gate_limits():
    b, _ = _batch([-0.5, -0.5], [-30.0, -30.0])  # M = 59 >> b: gate ~ 0, only the NLL on y_w remains
    assert ak.get("pairwise_cringe")(
        b, margin=0.0, temperature=1.0, pooling="sequence"
    ).loss.item() == pytest.approx(0.5, abs=1e-12)
    out = ak.get("pairwise_cringe")(b, margin=200.0)  # M << b: gate ~ 1
    assert out.metrics["cringe/gate"] == pytest.approx(1.0, abs=1e-12)


def test_without_contrast_tokens_it_is_unlikelihood():
    b, _ = _batch([-0.5], [-0.2])
    out = ak.get("pairwise_cringe")(b, margin=1e6, alpha=1.0, pooling="sequence")  # gate = 1
    assert out.loss.item() == pytest.approx(0.5 - math.log(1 - math.exp(-0.2)), abs=1e-9)


def test_gradients_push_the_rejected_token_down_and_the_contrast_up():
    b, kw = _batch([-0.5, -0.7], [-1.0, -1.2], pos=[-1.5, -0.9])
    out = ak.get("pairwise_cringe")(b)
    out.loss.backward()
    assert (kw["rejected_logps"].grad > 0).all()  # descent lowers log p of rejected tokens
    assert (kw["rejected_positive_logps"].grad < 0).all()  # and raises the sampled contrast tokens
    assert (kw["chosen_logps"].grad < 0).all()


def test_bad_inputs():
    with pytest.raises(ValueError, match="rejected_positive_logps"):
        CringePreferenceBatch(
            chosen_logps=-torch.rand(1, 3),
            rejected_logps=-torch.rand(1, 3),
            rejected_positive_logps=-torch.rand(1, 2),
        )
    with pytest.raises(ValueError, match="k must"):
        sample_positive_tokens(torch.zeros(1, 1, 3), torch.zeros(1, 1, dtype=torch.long), k=3)
    b, _ = _batch([-0.5], [-0.2])
    with pytest.raises(ValueError, match="temperature"):
        ak.get("pairwise_cringe")(b, temperature=0.0)
    with pytest.raises(ValueError, match="pooling"):
        ak.get("pairwise_cringe")(b, pooling="batch")


def _parlai_cringe(x, y, classifier_labels, ignore_index, num_pos_predictions=1, ct_loss_weight=1.0):
    """ParlAI projects/cringe/cringe_loss.py: ``ContrastiveCrossEntropyLoss.__call__`` (reduction 'none',
    defaults) and ``compute_loss``'s ``loss.sum() / target_tokens.sum()``, restated. x: (N, V) logits."""
    ce = F.cross_entropy(x, y, reduction="none", ignore_index=ignore_index) * classifier_labels.abs()
    labels_ct = (classifier_labels.abs() - 1).abs().bool()
    preds = torch.topk(x, k=num_pos_predictions + 1, dim=-1)
    y_rep = y.unsqueeze(-1).repeat(1, num_pos_predictions + 1)
    logits = preds.values - (preds.indices == y_rep) * 1e10
    pred_mask = torch.cat(
        (torch.zeros_like(logits)[:, :-1], ((preds.indices == y_rep).sum(-1).unsqueeze(1) - 1).abs()), 1
    )
    logits = logits - pred_mask * 1e10
    idx = torch.distributions.Categorical(logits=logits).sample()
    sampled = preds.values[torch.arange(x.shape[0]), idx]
    x_ct = torch.stack([x[torch.arange(x.shape[0]), y.clamp(min=0)], sampled], -1)
    y_ct = (classifier_labels.abs() - 1).abs().long()
    ct = F.cross_entropy(x_ct, y_ct, reduction="none") * labels_ct
    notnull = y.ne(ignore_index)
    loss = (ce + ct_loss_weight * ct) * notnull
    return loss.sum() / notnull.sum()


def test_equals_parlai_cringe_when_the_gate_is_open():
    """g = 1 (margin 1e6): pairwise Cringe = ParlAI's binary Cringe on the chosen (positive) and rejected
    (negative) responses, token-pooled, k = 1 (deterministic contrast token), with padding."""
    g = torch.Generator().manual_seed(0)
    B, T, V = 3, 5, 11
    x_c, x_r = torch.randn(B, T, V, generator=g, dtype=D), torch.randn(B, T, V, generator=g, dtype=D)
    y_c, y_r = torch.randint(V, (B, T), generator=g), torch.randint(V, (B, T), generator=g)
    m_c = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    m_r = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    lp_c = torch.log_softmax(x_c, -1).gather(-1, y_c.unsqueeze(-1)).squeeze(-1)
    lp_r = torch.log_softmax(x_r, -1).gather(-1, y_r.unsqueeze(-1)).squeeze(-1)
    _, pos = sample_positive_tokens(x_r, y_r, k=1)
    batch = CringePreferenceBatch(
        chosen_logps=lp_c,
        rejected_logps=lp_r,
        chosen_mask=m_c,
        rejected_mask=m_r,
        rejected_positive_logps=pos,
    )
    ours = ak.get("pairwise_cringe")(batch, margin=1e6).loss
    pad = -100
    y = torch.cat([y_c.masked_fill(m_c == 0, pad), y_r.masked_fill(m_r == 0, pad)]).reshape(-1)
    x = torch.cat([x_c, x_r]).reshape(-1, V)
    labels = torch.cat([torch.ones(B, T), torch.zeros(B, T)]).reshape(-1).long()
    assert ours.item() == pytest.approx(_parlai_cringe(x, y, labels, pad).item(), abs=1e-12)
    assert ak.get("pairwise_cringe").defaults["pooling"] == "tokens"
