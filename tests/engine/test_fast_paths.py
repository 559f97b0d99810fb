"""Every fast path of the engine gives the plain padded full-logits path's log-probs (fp64 sums) and gradients."""

import pytest
import torch

import alignkit.engine.head as lpm
from alignkit.engine.layout import Layout
from alignkit.engine.logprobs import completion_logps, full_logits_logps, head_logps, join
from alignkit.engine.packing import (
    pack_pairs,
    pack_sequences,
    packed_logps,
    packed_sequence_logps,
    packing_support,
    use_packed_attention,
)
from alignkit.engine.reference import Reference

torch.set_num_threads(2)
VOCAB = 97


def _model(**kw):
    # GQA (2 query heads per key/value head) so the packed path's head expansion is exercised
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        **kw,
    )
    torch.manual_seed(3)
    return LlamaForCausalLM(cfg)


def _pairs(seed=0, b=3):
    g = torch.Generator().manual_seed(seed)

    def r(n):
        return torch.randint(3, VOCAB, (n,), generator=g).tolist()

    plen, clen, rlen = [5, 11, 1, 7][:b], [4, 1, 9, 3][:b], [8, 6, 2, 5][:b]
    return [r(n) for n in plen], [r(n) for n in clen], [r(n) for n in rlen]


def _grads(model):
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def _assert_grads_equal(a, b):
    assert a.keys() == b.keys() and a
    for n in a:
        scale = max(1.0, a[n].abs().max().item())
        assert (a[n] - b[n]).abs().max().item() <= 2e-5 * scale, n


def _plain(model, prompts, comps, weights):
    ids, att, comp = join(prompts, comps, 0, None)
    tl = full_logits_logps(model, ids, att, comp)
    (tl.sums() * weights).sum().backward()
    return tl.sums().detach(), _grads(model)


@pytest.mark.parametrize("lora", [False, True])
def test_every_path_equals_plain_full_logits(lora):
    model = _model()
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
        for n, p in model.named_parameters():  # non-zero B so adapters change the function
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.05)
    prompts, chosen, rejected = _pairs()
    w = torch.tensor([1.0, -2.0, 0.5, 3.0, -1.0, 0.25], dtype=torch.float64)
    base_sums, base_grads = _plain(model, prompts * 2, chosen + rejected, w)
    assert base_sums.dtype == torch.float64 and (base_sums < 0).all()

    ids, att, comp = join(prompts * 2, chosen + rejected, 0, None)
    tl = completion_logps(model, ids, att, comp)
    (tl.sums() * w).sum().backward()
    assert (tl.sums().detach() - base_sums).abs().max().item() < 1e-5
    _assert_grads_equal(base_grads, _grads(model))

    with use_packed_attention(model):
        for shared in (True, False):
            pb = pack_pairs(prompts, chosen, rejected, shared_prompt=shared)
            tl = packed_logps(model, pb)
            assert tl.logps.shape == (6, 9) and tl.mask.sum().item() == sum(map(len, chosen + rejected))
            (tl.sums() * w).sum().backward()
            assert (tl.sums().detach() - base_sums).abs().max().item() < 1e-5, shared
            _assert_grads_equal(base_grads, _grads(model))
            # per-token values too: left-aligned completion tokens equal the padded path's scored tokens
            padded = completion_logps(model, ids, att, comp)
            for row in range(6):
                want = padded.logps[row][padded.mask[row].bool()]
                got = tl.logps[row][tl.mask[row].bool()]
                assert torch.allclose(want, got.detach(), atol=1e-5)
            model.zero_grad(set_to_none=True)
    assert lpm.unwrap_model(model).config._attn_implementation == "sdpa"  # restored


def test_shared_prompt_layout_positions_and_savings():
    prompts, chosen, rejected = _pairs()
    pb = pack_pairs(prompts, chosen, rejected)
    lp, lc, lr = len(prompts[0]), len(chosen[0]), len(rejected[0])
    pos = pb.position_ids[0].tolist()
    # rejected positions continue from the prompt, not from chosen
    assert pos[: lp + lc + lr] == list(range(lp + lc)) + list(range(lp, lp + lr))
    assert pb.computed_tokens == sum(map(len, prompts + chosen + rejected))
    assert pb.real_tokens == pb.computed_tokens + sum(map(len, prompts))
    # first rejected token is predicted from the prompt's last position
    assert pb.rows.tolist()[lc] == lp - 1 and pb.targets.tolist()[lc] == rejected[0][0]
    plain = pack_pairs(prompts, chosen, rejected, shared_prompt=False)
    assert plain.computed_tokens == plain.real_tokens == pb.real_tokens


def test_rejected_never_sees_chosen():
    """Changing chosen tokens leaves rejected log-probs unchanged under the shared-prompt forward."""
    model = _model()
    prompts, chosen, rejected = _pairs(seed=4)
    other = [[(t + 7) % VOCAB for t in c] + [5] for c in chosen]
    with use_packed_attention(model), torch.no_grad():
        a = packed_logps(model, pack_pairs(prompts, chosen, rejected)).sums()
        b = packed_logps(model, pack_pairs(prompts, other, rejected)).sums()
    assert torch.allclose(a[3:], b[3:], atol=1e-6) and not torch.allclose(a[:3], b[:3], atol=1e-3)


def test_packed_sft_with_empty_prompt_and_sequence_sums():
    model = _model()
    prompts, comps, _ = _pairs(seed=5)
    prompts[1] = []  # plain-text SFT row: first token has no context and is not scored (as padded)
    ids, att, comp = join(prompts, comps, 0, None)
    want = full_logits_logps(model, ids, att, comp)
    with use_packed_attention(model):
        got = packed_logps(model, pack_sequences(prompts, comps))
        assert got.mask.sum(-1).tolist() == want.mask.sum(-1).tolist()
        assert (got.sums().detach() - want.sums().detach()).abs().max().item() < 1e-5
        p2, c2, _ = _pairs(seed=6, b=4)
        sums, lengths = packed_sequence_logps(model, p2, c2, token_budget=12)  # several packs
    ids, att, comp = join(p2, c2, 0, None)
    with torch.no_grad():
        ref = full_logits_logps(model, ids, att, comp)
    assert (sums - ref.sums()).abs().max().item() < 1e-5 and lengths.tolist() == [len(c) for c in c2]


@pytest.mark.parametrize("kind", ["model", "lora"])
def test_reference_packed_equals_padded(kind):
    model = _model()
    if kind == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
        for n, p in model.named_parameters():
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.05)
    ref = Reference(kind, model)
    prompts, chosen, rejected = _pairs(seed=7)
    ids, att, comp = join(prompts * 2, chosen + rejected, 0, None)
    padded = Layout(prompts * 2, chosen + rejected, padded=(ids, att, comp))
    want = ref.logps(padded)  # one interface for both layouts (alignkit.engine.layout)
    want_sums = (want.double() * comp[:, 1:]).sum(-1)
    with use_packed_attention(model):
        packed = Layout(prompts * 2, chosen + rejected, packed=pack_pairs(prompts, chosen, rejected))
        got = ref.logps(packed)
    assert not got.requires_grad
    assert (got.double().sum(-1) - want_sums).abs().max().item() < 1e-5
    if kind == "lora":  # adapters were really disabled: the policy differs from its reference
        with use_packed_attention(model), torch.no_grad():
            pol = packed_logps(model, pack_pairs(prompts, chosen, rejected)).sums()
        assert (pol - got.double().sum(-1)).abs().max().item() > 1e-3


def test_head_keep_and_recompute_modes_agree(monkeypatch):
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=True)

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = head

        def get_output_embeddings(self):
            return self.head

    model = M()
    rows = torch.randn(13, 16, requires_grad=True)
    tgt = torch.randint(0, 50, (13,))
    g = torch.randn(13)

    def run():
        lp, _ = head_logps(model, rows, tgt)
        (lp * g).sum().backward()
        out = (lp.detach(), rows.grad.clone(), head.weight.grad.clone(), head.bias.grad.clone())
        rows.grad = head.weight.grad = head.bias.grad = None
        return out

    logits = head(rows)
    plain = torch.log_softmax(logits, -1).gather(-1, tgt[:, None]).squeeze(-1)
    (plain * g).sum().backward()
    want = (plain.detach(), rows.grad.clone(), head.weight.grad.clone(), head.bias.grad.clone())
    rows.grad = head.weight.grad = head.bias.grad = None
    keep = run()
    monkeypatch.setattr(lpm, "_KEEP_ELEMENTS", 0)  # recompute each tile's logits in backward
    monkeypatch.setattr(lpm, "_TILE_ELEMENTS", 50 * 4)  # 4 rows per tile
    recompute = run()
    for got in (keep, recompute):
        for a, b in zip(want, got, strict=True):
            assert torch.allclose(a, b, atol=1e-6)
    with torch.no_grad():
        lp, _ = head_logps(model, rows, tgt)
    assert torch.allclose(lp, want[0], atol=1e-6)


def test_packing_support_detects_unroutable_models(monkeypatch):
    model = _model()
    ok, why = packing_support(model)
    assert ok and why == "ok"
    monkeypatch.setattr(type(model), "_supports_attention_backend", False)
    ok, why = packing_support(model)
    assert not ok and "AttentionInterface" in why
    monkeypatch.undo()
    sliding = _model(sliding_window=4)
    sliding.config.sliding_window = 4
    ok, why = packing_support(sliding)
    assert not ok and "sliding" in why


def test_packed_batch_on_another_device_is_a_clear_error():
    model = _model()
    prompts, chosen, rejected = _pairs()
    pb = pack_pairs(prompts, chosen, rejected, torch.device("meta"))
    with use_packed_attention(model), pytest.raises(ValueError, match="pass device="):
        packed_logps(model, pb)
