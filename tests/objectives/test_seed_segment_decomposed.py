"""Segment-decomposed preference score (LongAlign, arXiv:2410.11817) applied to sequences."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import alignkit as ak
from alignkit.objectives.preference.segment_decomposed import segment_mean_embedding

D = torch.float64
score = ak.get("segment_decomposed_score")


def _emb(seed, b=4, d=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=D), torch.randn(b, d, generator=g, dtype=D)


def test_w1_is_cosine_and_decomposition_identity():
    e_in, e_out = _emb(0)
    cos = F.cosine_similarity(e_in, e_out, dim=-1)
    assert torch.allclose(score(e_in, e_out, w=1.0), cos, atol=1e-12)
    ei, eo = F.normalize(e_in, dim=-1), F.normalize(e_out, dim=-1)
    bar = F.normalize(ei.mean(0), dim=0)
    for w in (0.0, 0.3, 0.7):
        shared = (ei @ bar) * (eo @ bar)
        specific = ((ei - (ei @ bar).unsqueeze(-1) * bar) * eo).sum(-1)
        assert torch.allclose(score(e_in, e_out, w=w), specific + w * shared, atol=1e-12)
    # w = 0: an output pointing along the shared direction scores 0 for every input
    assert score(e_in, bar.expand(4, -1), w=0.0).abs().max() < 1e-12


def test_segment_mean():
    segs = torch.randn(5, 3, dtype=D)
    ids = torch.tensor([0, 1, 1, 2, 2])
    m = segment_mean_embedding(segs, ids, 3)
    assert torch.allclose(m[0], F.normalize(segs[0], dim=0))  # one segment = its own (unit) embedding
    want = (F.normalize(segs[1], dim=0) + F.normalize(segs[2], dim=0)) / 2  # mean, not renormalised
    assert torch.allclose(m[1], want)
    with pytest.raises(ValueError, match="no segment"):
        segment_mean_embedding(segs, ids, 4)


def _official_dense_score(text_embs, image_fea, batch_ids, weight):
    """luping-liu/LongAlign loss.py ``dense_score`` (do_ortho=True, no accelerator), restated on tensors."""
    image_fea = image_fea / image_fea.norm(dim=-1, keepdim=True)
    text_embs = text_embs / text_embs.norm(dim=-1, keepdim=True)
    pooled = torch.zeros_like(text_embs[: max(batch_ids) + 1])
    ids = torch.tensor(batch_ids)
    for i in range(max(batch_ids) + 1):
        pooled[i] = text_embs[ids == i].mean(dim=0)
    ortho = pooled.mean(dim=0)
    ortho = (ortho / ortho.norm())[None]
    pooled_ = pooled - (1 - weight) * torch.sum(pooled * ortho, dim=-1, keepdim=True) * ortho
    return torch.diagonal(pooled_ @ image_fea.T)


@pytest.mark.parametrize("w", [0.0, 0.3, 1.0])
def test_official_dense_score_on_multi_segment_inputs(w):
    g = torch.Generator().manual_seed(7)
    batch_ids = [0, 0, 0, 1, 2, 2, 3, 3, 3, 3]
    segs = torch.randn(len(batch_ids), 6, generator=g, dtype=D)
    out = torch.randn(4, 6, generator=g, dtype=D)
    want = _official_dense_score(segs, out, batch_ids, w)
    got = score(segs, out, w=w, segment_batch_ids=torch.tensor(batch_ids))
    assert torch.allclose(got, want, atol=1e-12, rtol=0)
    # renormalising the pooled mean (the old, wrong rule) gives a different score on these inputs
    pooled = segment_mean_embedding(segs, torch.tensor(batch_ids), 4)
    assert (score(F.normalize(pooled, dim=-1), out, w=w) - want).abs().max() > 1e-3


def test_gradients_reach_outputs_only_and_train_as_bradley_terry():
    e_in, e_c = _emb(1)
    _, e_r = _emb(2)
    e_in.requires_grad_()
    e_c.requires_grad_()
    rb = ak.RewardBatch(score(e_in, e_c), score(e_in, e_r))
    out = ak.get("bradley_terry")(rb)
    out.loss.backward()
    assert e_in.grad is None and e_c.grad is not None and torch.isfinite(e_c.grad).all()
    with pytest.raises(ValueError, match="input_embeddings"):
        score(e_in[:2], e_c)
    with pytest.raises(ValueError, match="segment_batch_ids"):
        score(e_in, e_c[:2], segment_batch_ids=torch.tensor([0, 0, 1, 2]))
