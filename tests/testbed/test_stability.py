"""Stability options of the testbed model: z-loss, QK-norm, LR sensitivity (arXiv:2309.14322) and Spike No More's
scaled embedding / small init (arXiv:2312.16903); default configs keep their cache keys."""

import dataclasses
import hashlib
import json
import math

import pytest
import torch

import alignkit as ak
from alignkit.testbed import model as tb
from alignkit.testbed.stability import lm_loss_with_z_loss, lr_sensitivity_fn, z_loss_fn

TINY = dict(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, vocab_size=300)


def test_z_loss_zero_for_normalised_logits_and_its_gradient():
    h = torch.randn(2, 3, 7, dtype=torch.float64)
    assert z_loss_fn(torch.log_softmax(h, -1)).abs() < 1e-12  # log Z = 0
    h.requires_grad_(True)
    z_loss_fn(h, coef=1e-2).backward()
    lse = torch.logsumexp(h.detach(), -1, keepdim=True)
    assert torch.allclose(h.grad, 2 * 1e-2 * lse * torch.softmax(h.detach(), -1) / 6)
    # hand value: logits [0, 0] -> log Z = log 2, L = c (log 2)^2
    assert z_loss_fn(torch.zeros(1, 2), coef=1.0).item() == pytest.approx(math.log(2) ** 2)
    mask = torch.tensor([[1, 0, 1], [0, 0, 1]])
    assert torch.allclose(z_loss_fn(h.detach(), mask, coef=1.0), lse.squeeze(-1).pow(2)[mask.bool()].mean())


def test_lr_sensitivity_hand_values():
    assert lr_sensitivity_fn({1e-3: 2.0, 1e-2: 2.0}, 5.0) == 0.0  # every LR reaches the best loss
    # [2, 3, diverged -> 5 (init)] : best 2 -> (0 + 1 + 3) / 3
    assert lr_sensitivity_fn({1e-3: 2.0, 1e-2: 3.0, 1e-1: float("nan")}, 5.0) == pytest.approx(4 / 3)
    assert lr_sensitivity_fn({1e-3: 2.0, 1e-1: 9.0}, 5.0) == pytest.approx(
        1.5
    )  # worse than init counts as init
    assert ak.get("lr_sensitivity").kind == "diagnostic" and ak.get("z_loss").kind == "procedure"
    with pytest.raises(ValueError, match="final_losses"):
        lr_sensitivity_fn({}, 1.0)


def test_default_cache_keys_are_unchanged():
    """The former key(): sha256 of {"build": BUILD_VERSION, **asdict(config)} without the new fields."""
    for cfg in (tb.BaseModelConfig(), tb.BaseModelConfig(**TINY, seed=3)):
        fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in tb.STABILITY_DEFAULTS}
        old = hashlib.sha256(
            json.dumps({"build": tb.BUILD_VERSION, **fields}, sort_keys=True).encode()
        ).hexdigest()[:16]
        assert cfg.key() == old
    keys = {
        tb.BaseModelConfig(**TINY, **{k: v}).key()
        for k, v in [("qk_layernorm", True), ("z_loss", 1e-4), ("embed_scale", True), ("small_init", True)]
    }
    assert len(keys) == 4 and tb.BaseModelConfig(**TINY).key() not in keys


def test_qk_norm_makes_attention_invariant_to_the_scale_of_queries_and_keys():
    torch.manual_seed(0)
    m = tb.build_model(tb.BaseModelConfig(**TINY, qk_layernorm=True), 300)
    base = tb.build_model(tb.BaseModelConfig(**TINY), 300)
    x = torch.randint(0, 300, (2, 12))
    out = m(input_ids=x).logits
    for mm in (m, base):
        with torch.no_grad():
            for layer in mm.model.layers:
                layer.self_attn.q_proj.weight.mul_(20.0)
                layer.self_attn.k_proj.weight.mul_(20.0)
    assert torch.allclose(m(input_ids=x).logits, out, atol=1e-3)  # normalised q, k: unchanged
    assert hasattr(m.model.layers[0].self_attn, "q_norm") and not hasattr(
        base.model.layers[0].self_attn, "q_norm"
    )


def test_z_loss_pretraining_loss_equals_hf_loss_at_zero_coefficient():
    torch.manual_seed(1)
    m = tb.build_model(tb.BaseModelConfig(**TINY), 300)
    x = torch.randint(0, 300, (2, 10))
    assert torch.allclose(lm_loss_with_z_loss(m, x, 0.0), m(input_ids=x, labels=x).loss, atol=1e-6)
    logits = m(input_ids=x).logits[:, :-1]
    expect = m(input_ids=x, labels=x).loss + 0.5 * torch.logsumexp(logits, -1).pow(2).mean()
    assert torch.allclose(lm_loss_with_z_loss(m, x, 0.5), expect, atol=1e-5)


def test_spike_no_more_init_and_scaled_embed():
    d, n = 64, 2
    cfg = tb.BaseModelConfig(
        hidden_size=d,
        num_layers=n,
        num_heads=2,
        intermediate_size=128,
        vocab_size=2000,
        small_init=True,
        embed_scale=True,
    )
    m = tb.build_model(cfg, 2000)
    sigma = math.sqrt(2 / (5 * d))
    emb = m.model.embed_tokens.weight
    assert emb.std().item() == pytest.approx(sigma, rel=0.03)
    o = m.model.layers[0].self_attn.o_proj.weight
    assert o.std().item() == pytest.approx(sigma / math.sqrt(2 * n), rel=0.1)
    x = torch.arange(2000)[None]
    assert m.model.embed_tokens(x).std().item() == pytest.approx(sigma * math.sqrt(d), rel=0.03)
    # the scaled embedding changes the model's input, not its tied output head
    assert torch.equal(m.lm_head.weight, emb)


def test_options_survive_the_cache_round_trip(tmp_path):
    from alignkit.testbed.model import BaseModel, _load, _save, train_tokenizer

    docs = ["the quick brown fox jumps over the lazy dog " * 20, "a stitch in time saves nine " * 20]
    tok = train_tokenizer(docs, 300)
    cfg = tb.BaseModelConfig(**TINY, qk_layernorm=True, embed_scale=True)
    model = tb.build_model(cfg, len(tok))
    path = tmp_path / "m"
    _save(BaseModel(model, tok, cfg, path), path)
    loaded = _load(path, cfg)
    assert loaded is not None and type(loaded.model).__name__ == "Qwen3ForCausalLM"
    x = torch.randint(0, len(tok), (1, 8))
    model.eval()
    assert torch.allclose(loaded.model(input_ids=x).logits, model(input_ids=x).logits, atol=1e-5)
