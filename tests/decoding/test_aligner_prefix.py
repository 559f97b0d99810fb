from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import alignkit as ak
from alignkit.decoding import (
    DecodeContext,
    add_aligner_prefix,
    aligner_prefix,
    load_aligner_prefix,
    sample_text,
)
from alignkit.decoding.aligner_prefix import trainable_parameter_count
from alignkit.engine.tiny import tiny_llama

IDS = torch.tensor([[1, 40, 41, 42, 43], [1, 50, 51, 52, 53]])


@pytest.fixture()
def base():
    return tiny_llama(hidden_size=16, num_layers=2, num_heads=2, seed=4).eval()


def test_init_is_the_base_model_and_only_prefix_and_gates_train(base):
    m = add_aligner_prefix(base, n_tokens=1)
    with torch.no_grad():
        assert torch.equal(m(input_ids=IDS).logits, base(input_ids=IDS).logits)
    trainable = {n: p.numel() for n, p in m.named_parameters() if p.requires_grad}
    assert set(trainable) == {"aligner_prefix.prefix", "aligner_prefix.gates"}
    assert sum(trainable.values()) == trainable_parameter_count(1, 16, 2, 2) == 16 + 2 * 2
    assert trainable_parameter_count(1, 4096, 32, 32) == 5120  # LLaMA-7B: the paper's "5,000 parameters"
    assert not hasattr(base, "aligner_prefix")  # the original is untouched (a copy was made)
    with pytest.raises(ValueError, match="already"):
        add_aligner_prefix(m, copy_model=False)


def test_one_token_term_by_hand(base):
    # n = 1: softmax over one key is 1, so layer l adds W_O [tanh(g_lh) * (P W_V)_h]_h at every position
    m = add_aligner_prefix(base, n_tokens=1)
    ap = m.aligner_prefix
    with torch.no_grad():
        ap.gates.copy_(torch.tensor([[0.5, -1.0], [2.0, 0.0]]))
    attn = m.model.layers[1].self_attn
    hidden = torch.randn(2, 3, 16)
    v = attn.v_proj(ap.prefix).view(2, 8)  # [heads (kv = 2), head_dim]
    want = F.linear((torch.tanh(ap.gates[1])[:, None] * v).reshape(16), attn.o_proj.weight)
    got = ap.prefix_attention(attn, hidden, 1)
    assert torch.allclose(got, want.expand(2, 3, 16), atol=1e-6)
    # n = 2: a real softmax over the two prefix keys, per head
    m2 = add_aligner_prefix(base, n_tokens=2)
    ap2 = m2.aligner_prefix
    with torch.no_grad():
        ap2.gates.fill_(0.3)
    attn = m2.model.layers[0].self_attn
    q = attn.q_proj(hidden).view(2, 3, 2, 8)
    k = attn.k_proj(ap2.prefix).view(2, 2, 8)
    v = attn.v_proj(ap2.prefix).view(2, 2, 8)
    a = torch.softmax(torch.einsum("bthd,nhd->bthn", q, k) / 8**0.5, -1)
    o = torch.einsum("bthn,nhd->bthd", a, v) * torch.tanh(torch.tensor(0.3))
    want = F.linear(o.reshape(2, 3, 16), attn.o_proj.weight)
    assert torch.allclose(ap2.prefix_attention(attn, hidden, 0), want, atol=1e-6)


def test_gradients_flow_to_gates_then_prefix_only(base):
    m = add_aligner_prefix(base)
    loss = m(input_ids=IDS, labels=IDS).loss
    loss.backward()
    ap = m.aligner_prefix
    # zero gates at init: d/dP = 0 (as in LLaMA-Adapter), d/dg != 0
    assert torch.isfinite(ap.gates.grad).all() and ap.gates.grad.abs().sum() > 0
    assert ap.prefix.grad.abs().sum() == 0
    assert all(p.grad is None for n, p in m.named_parameters() if not n.startswith("aligner_prefix"))
    with torch.no_grad():
        ap.gates.fill_(0.5)
    m.zero_grad()
    m(input_ids=IDS, labels=IDS).loss.backward()
    assert torch.isfinite(ap.prefix.grad).all() and ap.prefix.grad.abs().sum() > 0


def test_trains_with_the_engine_and_decodes(base, tok, sampling):
    m = add_aligner_prefix(tiny_llama(vocab_size=len(tok), hidden_size=16, num_layers=1, seed=3))
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    r = ak.train(
        objective="sft",
        model=m,
        tokenizer=tok,
        data=[{"prompt": "a", "completion": "bc"}] * 4,
        batch_size=2,
        max_steps=3,
        learning_rate=5e-2,
        progress=False,
    )
    after = dict(r.model.named_parameters())
    for n, p in before.items():
        assert torch.equal(after[n], p) != n.startswith("aligner_prefix"), n
    # decoding: scale 0 is the base model, scale 1 the trained prefix; a deep copy uses its own prefix
    trained = r.model.eval()
    plain = copy.deepcopy(trained)
    with torch.no_grad():
        plain.aligner_prefix.gates.zero_()
    x = torch.tensor([[1, 40, 41]])
    with torch.no_grad():
        z_plain, z_trained = plain(input_ids=x).logits, trained(input_ids=x).logits
        z_base = tiny_llama(vocab_size=len(tok), hidden_size=16, num_layers=1, seed=3)(input_ids=x).logits
    assert torch.equal(z_plain, z_base) and not torch.allclose(z_trained, z_plain, atol=1e-4)
    ctx = DecodeContext(sampling=sampling)
    prompts = ["a", "hi"]
    assert aligner_prefix(trained, tok, prompts, ctx, scale=0.0) == sample_text(
        plain, tok, prompts, **sampling
    )
    on = aligner_prefix(trained, tok, prompts, ctx)
    assert on == sample_text(trained, tok, prompts, **sampling) and trained.aligner_prefix.scale == 1.0
    # reattaching the saved state to the bare base reproduces the trained model
    bare = tiny_llama(vocab_size=len(tok), hidden_size=16, num_layers=1, seed=3)
    state = {k: v.detach() for k, v in trained.aligner_prefix.state_dict().items()}
    assert (
        aligner_prefix(bare, tok, prompts, DecodeContext(sampling=sampling, extra={"aligner_prefix": state}))
        == on
    )
    with pytest.raises(ValueError, match="aligner_prefix"):
        aligner_prefix(bare, tok, prompts, ctx)
    with pytest.raises(ValueError, match="'gates'"):
        load_aligner_prefix(bare, {"prefix": state["prefix"]})
