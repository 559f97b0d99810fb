from __future__ import annotations

import pytest
import torch

import alignkit as ak
from alignkit.decoding import (
    DecodeContext,
    DistillBatch,
    add_identity_layer,
    clm,
    distill_batch,
    inra,
    next_token_logits,
    sample_text,
)

PROMPTS = ["hi", "abc"]
IDS = torch.tensor([[0, 1, 40, 50, 60], [1, 41, 42, 43, 44]])


def test_identity_layer_is_exact_at_init_and_only_it_trains(ref):
    new = add_identity_layer(ref)
    assert len(new.model.layers) == len(ref.model.layers) + 1 == new.config.num_hidden_layers
    assert torch.allclose(next_token_logits(new, IDS, 0), next_token_logits(ref, IDS, 0), atol=1e-5)
    trainable = sum(p.numel() for p in new.parameters() if p.requires_grad)
    assert trainable == sum(p.numel() for p in ref.model.layers[0].parameters())
    assert [layer.self_attn.layer_idx for layer in new.model.layers] == [0, 1]
    assert all(p.requires_grad for p in ref.parameters())  # the original is untouched


def _perturbed(ref):
    new = add_identity_layer(ref)
    with torch.no_grad():
        new.model.layers[0].self_attn.o_proj.weight.normal_(
            0, 0.5, generator=torch.Generator().manual_seed(0)
        )
    return new


@pytest.mark.parametrize("decoder,hp", [(clm, "lam"), (inra, "control")])
def test_control_endpoints(ref, tok, decoder, hp):
    aligned = _perturbed(ref)
    greedy = dict(max_new_tokens=5, temperature=0.0)
    ctx = DecodeContext(ref_model=ref, sampling=greedy)
    assert decoder(aligned, tok, PROMPTS, ctx, **{hp: 0.0}) == sample_text(ref, tok, PROMPTS, **greedy)
    assert decoder(aligned, tok, PROMPTS, ctx, **{hp: 1.0}) == sample_text(aligned, tok, PROMPTS, **greedy)
    s = dict(max_new_tokens=5, seed=4, num_samples=2)
    ctx = DecodeContext(ref_model=ref, sampling=s)
    assert decoder(aligned, tok, PROMPTS, ctx, **{hp: 2.0}) == decoder(
        aligned, tok, PROMPTS, ctx, **{hp: 2.0}
    )


def test_trra_hand_values_and_limits():
    za = torch.tensor([[[2.0, 0.0]]])
    zr = torch.tensor([[[0.0, 0.0]]])
    # lam = 0.5 teacher = softmax([1, 0]); student uniform -> KL = sum p log(2p)
    p = torch.softmax(torch.tensor([1.0, 0.0]), -1)
    want = float((p * torch.log(2 * p)).sum())
    out = ak.get("trra")(DistillBatch(torch.zeros(1, 1, 2), za, zr), lam=0.5)
    assert out.loss.item() == pytest.approx(want, abs=1e-6)
    # lam = 1: teacher is the aligned model, zero loss when the student equals it; lam = 0 likewise for ref
    assert ak.get("trra")(DistillBatch(za.clone(), za, zr), lam=1.0).loss.item() == pytest.approx(0, abs=1e-7)
    assert ak.get("trra")(DistillBatch(zr.clone(), za, zr), lam=0.0).loss.item() == pytest.approx(0, abs=1e-7)
    # lam = 2 teacher = softmax(2 z_a - z_r): a student with those logits has zero loss
    z = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0))
    zr2 = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(1))
    assert ak.get("trra")(DistillBatch(2 * z - zr2, z, zr2), lam=2.0).loss.item() == pytest.approx(
        0, abs=1e-6
    )
    # masked positions do not count
    s = torch.randn(1, 2, 5, requires_grad=True)
    m = torch.tensor([[1.0, 0.0]])
    full = ak.get("trra")(DistillBatch(s, z[:1, :2], zr2[:1, :2], mask=m))
    one = ak.get("trra")(DistillBatch(s[:, :1], z[:1, :1], zr2[:1, :1]))
    assert full.loss.item() == pytest.approx(one.loss.item(), abs=1e-6)
    full.loss.backward()
    assert s.grad[0, 1].abs().sum() == 0 and s.grad[0, 0].abs().sum() > 0


def test_trra_errors_and_sft_term(aligned, ref):
    with pytest.raises(ValueError, match="aligned_logits"):
        DistillBatch(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4), torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="labels"):
        ak.get("trra")(DistillBatch(*[torch.zeros(1, 2, 3)] * 3), sft_weight=1.0)
    student = add_identity_layer(ref)
    b = distill_batch(student, aligned, ref, IDS, (IDS != 0).long(), torch.ones_like(IDS))
    out = ak.get("trra")(b, lam=1.5, sft_weight=0.5)
    out.loss.backward()
    assert torch.isfinite(out.loss) and "sft/nll" in out.metrics
    assert student.model.layers[0].mlp.down_proj.weight.grad is not None
    assert student.model.layers[1].mlp.down_proj.weight.grad is None
