"""Triplet (batch-hard, batch-all), Metrix, proto-triplet / ICNN and contextual similarity: hand values,
brute-force loops, limiting cases, gradients, and parity with pytorch-metric-learning and official code."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import alignkit as ak
from alignkit.objectives.representation import EmbeddingBatch
from alignkit.objectives.representation.contextual import contextual_similarity
from alignkit.objectives.representation.proto_icnn import EpisodeBatch, icnn_score


def _batch(points, labels, grad=False, dtype=torch.float32):
    e = torch.tensor(points, dtype=dtype)
    if e.dim() == 1:
        e = e.unsqueeze(1)
    return EmbeddingBatch(embeddings=e.requires_grad_(grad), labels=torch.tensor(labels))


def _random(n_classes=4, per=3, dim=5, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n_classes * per, dim, generator=g, dtype=dtype)
    return emb, torch.arange(n_classes).repeat_interleave(per)


# ---- batch-hard triplet (arXiv:1703.07737) ----


def test_batch_hard_hand_values():
    """1-D points {0, 2 | 1, 5}, labels A A B B, margin 0.5:
    anchor 0: hardest pos |0-2| = 2, hardest neg min(1, 5) = 1 -> 0.5 + 2 - 1 = 1.5
    anchor 2: pos 2, neg min(1, 3) = 1 -> 1.5;  anchor 1: pos 4, neg 1 -> 3.5;  anchor 5: pos 4, neg 3 -> 1.5
    mean = 2.0; soft margin: mean softplus(1, 1, 3, 1)."""
    b = _batch([0.0, 2.0, 1.0, 5.0], [0, 0, 1, 1])
    out = ak.get("batch_hard_triplet")(b, soft=False, margin=0.5)
    assert out.loss.item() == pytest.approx(2.0)
    assert out.losses.tolist() == pytest.approx([1.5, 1.5, 3.5, 1.5])
    soft = ak.get("batch_hard_triplet")(b)
    want = sum(math.log1p(math.exp(v)) for v in (1.5 - 0.5, 1.5 - 0.5, 3.5 - 0.5, 1.5 - 0.5)) / 4
    assert soft.loss.item() == pytest.approx(want)


def test_batch_hard_catalogue_example_is_zero_and_skips_anchor_without_positive():
    """{0, 1 | 3}, labels A A B, m = 0.5: anchor 0: [0.5 + 1 - 3]_+ = 0; anchor 1: [0.5 + 1 - 2]_+ = 0;
    the B anchor has no positive and is left out."""
    out = ak.get("batch_hard_triplet")(_batch([0.0, 1.0, 3.0], [0, 0, 1]), soft=False, margin=0.5)
    assert out.loss.item() == 0.0 and len(out.losses) == 2


def _brute_force_batch_hard(emb, labels, margin, soft):
    losses = []
    for a in range(len(labels)):
        pos = [torch.dist(emb[a], emb[p]) for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        neg = [torch.dist(emb[a], emb[n]) for n in range(len(labels)) if labels[n] != labels[a]]
        if not pos or not neg:
            continue
        v = max(pos) - min(neg)
        losses.append(F.softplus(v) if soft else (v + margin).clamp_min(0))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("soft", [False, True])
def test_batch_hard_equals_brute_force_and_pytorch_metric_learning(soft, dtype):
    pml = pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.losses import TripletMarginLoss
    from pytorch_metric_learning.miners import BatchHardMiner
    from pytorch_metric_learning.reducers import MeanReducer

    assert pml.__version__
    emb, labels = _random(dtype=dtype)
    ours = ak.get("batch_hard_triplet")(EmbeddingBatch(emb, labels), soft=soft, margin=0.2).loss
    assert ours.item() == pytest.approx(_brute_force_batch_hard(emb, labels, 0.2, soft).item(), rel=1e-6)
    dist = LpDistance(normalize_embeddings=False)
    loss_fn = TripletMarginLoss(
        margin=0.0 if soft else 0.2, smooth_loss=soft, distance=dist, reducer=MeanReducer()
    )
    theirs = loss_fn(emb, labels, BatchHardMiner(distance=dist)(emb, labels))
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


@pytest.mark.parametrize("nonzero_only", [False, True])
def test_batch_all_equals_pytorch_metric_learning(nonzero_only):
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.losses import TripletMarginLoss
    from pytorch_metric_learning.reducers import AvgNonZeroReducer, MeanReducer

    emb, labels = _random(seed=1)
    ours = ak.get("batch_all_triplet")(
        EmbeddingBatch(emb, labels), margin=0.2, nonzero_only=nonzero_only
    ).loss
    reducer = AvgNonZeroReducer() if nonzero_only else MeanReducer()
    theirs = TripletMarginLoss(margin=0.2, distance=LpDistance(normalize_embeddings=False), reducer=reducer)(
        emb, labels
    )
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
    n_triplets = sum(
        1
        for a, p, n in itertools.permutations(range(12), 3)
        if labels[a] == labels[p] and labels[n] != labels[a]
    )
    assert len(ak.get("batch_all_triplet")(EmbeddingBatch(emb, labels)).losses) == n_triplets


def test_batch_hard_gradient_reaches_only_anchors_and_their_hardest_rows():
    """{0, 2 | 1, 5} with hard margin: every anchor is active; row 5's hardest positive is 1 and hardest
    negative 2. Gradients are finite; a far-away extra class member that is nobody's hardest gets none."""
    b = _batch([0.0, 2.0, 1.0, 5.0, 100.0, 101.0], [0, 0, 1, 1, 2, 2], grad=True)
    out = ak.get("batch_hard_triplet")(b, soft=False, margin=0.5)
    out.loss.backward()
    g = b.embeddings.grad
    assert torch.isfinite(g).all() and g[:4].abs().sum() > 0
    assert g[4:].abs().sum() == 0  # class 2 anchors: [0.5 + 1 - 95]_+ = 0, and never anyone's hardest


def test_triplet_rejects_labels_without_any_valid_anchor():
    with pytest.raises(ValueError, match="EmbeddingBatch.labels"):
        ak.get("batch_hard_triplet")(_batch([0.0, 1.0, 2.0], [0, 1, 2]))
    with pytest.raises(ValueError, match="EmbeddingBatch.labels"):
        ak.get("batch_all_triplet")(_batch([0.0, 1.0], [0, 0]))


# ---- Metrix (arXiv:2106.04990) ----


def test_metrix_without_mixing_is_the_contrastive_loss_by_brute_force():
    emb, labels = _random(seed=2)
    out = ak.get("metrix")(EmbeddingBatch(emb, labels), mix_weight=0.0)
    x = F.normalize(emb, dim=-1)
    want = []
    for a in range(len(labels)):
        pos = [1 - x[a] @ x[p] for p in range(len(labels)) if p != a and labels[p] == labels[a]]
        neg = [(x[a] @ x[n] - 0.5).clamp_min(0) for n in range(len(labels)) if labels[n] != labels[a]]
        want.append(sum(pos) / len(pos) + sum(neg) / len(neg))
    assert out.losses.tolist() == pytest.approx(torch.stack(want).tolist(), rel=1e-5)


def test_metrix_mixed_term_limits_and_seed():
    """lam = 1 turns the mixed embedding into the positive (the positive term), lam = 0 into the negative."""
    from alignkit.objectives.representation.metrix import contrastive_terms, mix_embeddings

    p, n = F.normalize(torch.randn(3, 4), dim=-1), F.normalize(torch.randn(3, 4), dim=-1)
    assert torch.allclose(mix_embeddings(p, n, torch.ones(3)), p)
    assert torch.allclose(mix_embeddings(p, n, torch.zeros(3)), n)
    rp, rn = contrastive_terms(torch.tensor([0.2, 0.8]), 0.5)
    assert rp.tolist() == pytest.approx([0.8, 0.2]) and rn.tolist() == pytest.approx([0.0, 0.3])
    emb, labels = _random(seed=3)
    b = EmbeddingBatch(emb.requires_grad_(), labels)
    one, two = ak.get("metrix")(b, seed=7), ak.get("metrix")(b, seed=7)
    assert one.loss.item() == two.loss.item() and one.metrics["metrix/mixed"] > 0
    one.loss.backward()
    assert torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0


# ---- proto-triplet and ICNN (arXiv:2305.09062) ----


def test_proto_triplet_hand_value_and_separated_clusters():
    """Support {0, 2} (class 0, prototype 1) and {10, 12} (class 1, prototype 11); query 3 of class 0:
    d_pos = (3-1)^2 = 4, d_neg = (3-11)^2 = 64 -> [4 - 64 + 1]_+ = 0; query 7 of class 0: 36 - 16 + 1 = 21."""
    emb = torch.tensor([[0.0], [2.0], [10.0], [12.0], [3.0], [7.0]])
    b = EpisodeBatch(emb, torch.tensor([0, 0, 1, 1, 0, 0]), support=torch.tensor([1, 1, 1, 1, 0, 0]).bool())
    out = ak.get("proto_triplet")(b, ce_weight=0.0)
    assert out.losses.tolist() == pytest.approx([0.0, 21.0])
    ce = ak.get("proto_triplet")(b, margin=0.0)
    want_ce = F.cross_entropy(
        -torch.tensor([[4.0, 64.0], [36.0, 16.0]]), torch.tensor([0, 0]), reduction="none"
    )
    assert ce.losses.tolist() == pytest.approx((want_ce + torch.tensor([0.0, 20.0])).tolist())


def test_episode_batch_errors_name_the_field():
    emb = torch.randn(4, 2)
    with pytest.raises(ValueError, match="EpisodeBatch needs support"):
        EpisodeBatch(emb, torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match=r"EpisodeBatch.labels: query classes \[2\]"):
        EpisodeBatch(emb, torch.tensor([0, 1, 2, 2]), support=torch.tensor([1, 1, 0, 0]).bool())


def test_icnn_separated_clusters_score_one_and_gradients_flow():
    emb = torch.tensor(
        [[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [9.0, 9.0], [9.1, 9.0], [9.0, 9.1]], requires_grad=True
    )
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    out = ak.get("icnn_loss")(EmbeddingBatch(emb, labels), k=2)
    assert out.loss.item() == pytest.approx(0.0, abs=1e-6)
    mixed = ak.get("icnn_loss")(EmbeddingBatch(emb, torch.tensor([0, 1, 0, 1, 0, 1])), k=2)
    assert mixed.loss.item() > 0.3
    mixed.loss.backward()
    assert torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0
    # hand value: point 0 of [0, 1, 3] with labels [0, 0, 1], k = 2: neighbours 1 (d=1, same), 3 (d=3, other)
    s = icnn_score(torch.tensor([[0.0], [1.0], [3.0]]), torch.tensor([0, 0, 1]), k=2)
    assert s[0].item() == pytest.approx(math.exp(-1) / (math.exp(-1) + math.exp(-3)))


# ---- contextual similarity (arXiv:2210.01908): official code restated ----


class _OfficialGreaterThan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return (x >= y).float()

    @staticmethod
    def backward(ctx, grad_output):
        g = 10.0
        return grad_output * g, None


def _official_jaccard(scores, k, eps):
    """Chris210634/metric-learning-using-contextual-similarity losses.py get_jaccard_similarity (restated)."""
    D = (2.0 - 2.0 * scores).clamp(min=0.0)
    vk, ik = (-D).topk(k)
    Nk_mask = _OfficialGreaterThan.apply(-D + eps, vk[:, -1:].detach())
    intersection = (Nk_mask @ Nk_mask.T) / Nk_mask.sum(1, keepdim=True).detach()
    Nk_mask_not = 1.0 - Nk_mask
    intersection_not = (Nk_mask_not @ Nk_mask_not.T) / Nk_mask_not.sum(1, keepdim=True).detach()
    W_tilde = 0.5 * (intersection + intersection_not) * Nk_mask
    Nk_over_2_mask = _OfficialGreaterThan.apply(-D + eps, vk[:, (k // 2) - 1 : (k // 2)].detach())
    Rk_over_2_mask = Nk_over_2_mask * Nk_over_2_mask.T
    js = (Rk_over_2_mask @ W_tilde) / Rk_over_2_mask.sum(1, keepdim=True)
    return 0.5 * (js + js.T)


def _official_hybrid(f, y, lam=0.4, gamma=0.1, k=4, eps=0.05, pos=0.75, neg=0.6, reg_sim=0.25):
    w = (y.float().unsqueeze(0).T == y.float().unsqueeze(0)).float()
    scores = f @ f.T
    reg_loss = (scores.mean() - reg_sim).square()
    js = _official_jaccard(scores, k, eps)
    I_neg = torch.ones_like(js) - torch.eye(js.shape[0])
    loss_context = (
        (((1.0 - js).square() * w * I_neg).sum() + (js.square() * (1.0 - w) * I_neg).sum())
        / js.shape[0]
        / js.shape[0]
    )
    L_pos = F.relu(pos - scores) * w
    L_neg = F.relu(scores - neg) * (1.0 - w)
    l_p = L_pos.sum() / (L_pos > 0.0).sum() if (L_pos > 0.0).sum() >= 1e-5 else torch.tensor(0.0)
    l_n = L_neg.sum() / (L_neg > 0.0).sum() if (L_neg > 0.0).sum() >= 1e-5 else torch.tensor(0.0)
    return lam * loss_context + gamma * reg_loss + (1.0 - lam - gamma) * (l_p + l_n)


def test_contextual_similarity_equals_the_official_code_values_and_gradients():
    emb, labels = _random(n_classes=4, per=4, dim=6, seed=4)
    e1, e2 = emb.clone().requires_grad_(), emb.clone().requires_grad_()
    ours = ak.get("contextual_similarity")(EmbeddingBatch(e1, labels))
    theirs = _official_hybrid(F.normalize(e2, dim=-1), labels)
    assert ours.loss.item() == pytest.approx(theirs.item(), rel=1e-6)
    ours.loss.backward()
    theirs.backward()
    assert torch.allclose(e1.grad, e2.grad, atol=1e-6)


def test_contextual_similarity_limits():
    """Two tight clusters of k points (each point's k-neighbourhood is its own cluster): contextual similarity
    is 1 inside a cluster and 0 across; the matrix is symmetric; k out of range is an error."""
    g = torch.Generator().manual_seed(0)
    a = torch.tensor([1.0, 0.0, 0.0]) + 0.01 * torch.randn(4, 3, generator=g)
    b = torch.tensor([-1.0, 0.0, 0.0]) + 0.01 * torch.randn(4, 3, generator=g)
    x = F.normalize(torch.cat([a, b]), dim=-1)
    js = contextual_similarity(x @ x.T, k=4, eps=0.0)
    same = torch.block_diag(torch.ones(4, 4), torch.ones(4, 4))
    assert torch.allclose(js, same) and torch.allclose(js, js.T)
    with pytest.raises(ValueError, match="k must be"):
        contextual_similarity(x @ x.T, k=9)
