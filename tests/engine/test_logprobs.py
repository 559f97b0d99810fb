import pytest
import torch

from alignkit.engine import completion_logps, sample, sequence_logps
from alignkit.engine.logprobs import join
from alignkit.engine.tiny import tiny_llama

torch.set_num_threads(2)


def _naive(model, ids, att, comp):
    logits = model(input_ids=ids, attention_mask=att).logits.double()
    lp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    mask = (comp[:, 1:] * att[:, 1:]).double()
    return lp * mask, mask, logits


def _batch(vocab=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(3, vocab, (n,), generator=g).tolist() for n in (3, 5, 1, 4)]
    comps = [torch.randint(3, vocab, (n,), generator=g).tolist() for n in (4, 2, 6, 3)]
    return prompts, comps


def test_completion_logps_matches_naive_with_grads():
    torch.manual_seed(0)
    model = tiny_llama(vocab_size=64)
    prompts, comps = _batch()
    ids, att, comp = join(prompts, comps, 0, None)
    tl = completion_logps(model, ids, att, comp, with_log_sum_sq=True)
    ref, mask, logits = _naive(model, ids, att, comp)
    assert tl.logps.shape == (4, ids.shape[1] - 1)
    assert torch.equal(tl.mask.double(), mask)
    assert torch.allclose(tl.logps.double(), ref, atol=1e-5)
    assert torch.allclose(tl.sums(), ref.sum(-1), atol=1e-5)
    assert tl.sums().dtype == torch.float64
    assert tl.lengths().tolist() == [4, 2, 6, 3]
    # WPO's log sum_v p_v^2
    logp = torch.log_softmax(logits[:, :-1], -1)
    lss = torch.logsumexp(2 * logp, -1) * mask
    assert torch.allclose(tl.log_sum_sq.double() * mask, lss, atol=1e-5)
    # gradients equal the naive computation's
    w = torch.randn(4, dtype=torch.float64)
    (tl.sums() * w).sum().backward()
    g1 = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    ref2, _, _ = _naive(model, ids, att, comp)
    (ref2.sum(-1) * w).sum().backward()
    for n, p in model.named_parameters():
        assert torch.allclose(g1[n].double(), p.grad.double(), atol=1e-5), n


def test_tiled_head_with_checkpoint_matches(monkeypatch):
    import alignkit.engine.head as lpm

    model = tiny_llama(vocab_size=64)
    prompts, comps = _batch(seed=1)
    ids, att, comp = join(prompts, comps, 0, None)
    full = completion_logps(model, ids, att, comp)
    full.sums().sum().backward()
    g_full = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    monkeypatch.setattr(lpm, "_TILE_ELEMENTS", 64 * 3)  # 3 rows per tile -> several checkpointed tiles
    tiled = completion_logps(model, ids, att, comp)
    assert torch.allclose(full.logps, tiled.logps, atol=1e-6)
    tiled.sums().sum().backward()
    for a, p in zip(g_full, model.parameters(), strict=True):
        assert torch.allclose(a, p.grad, atol=1e-6)


def test_sequence_logps_order_and_padding():
    model = tiny_llama(vocab_size=64)
    prompts, comps = _batch(seed=2)
    sums, lengths = sequence_logps(model, prompts, comps, batch_size=3, pad_token_id=0)
    assert sums.dtype == torch.float64
    for i in range(4):
        ids, att, comp = join([prompts[i]], [comps[i]], 0, None)
        with torch.no_grad():
            ref, _, _ = _naive(model, ids, att, comp)
        assert abs(sums[i].item() - ref.sum().item()) < 1e-5
        assert lengths[i].item() == len(comps[i])
    with pytest.raises(ValueError, match="prompt 0 is empty"):
        sequence_logps(model, [[]], [[5]])


def test_lora_model_and_disabled_adapter_equals_base():
    from peft import LoraConfig, get_peft_model

    base = tiny_llama(vocab_size=64)
    prompts, comps = _batch(seed=3)
    base_sums, _ = sequence_logps(base, prompts, comps)
    peft_model = get_peft_model(
        tiny_llama(vocab_size=64), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    )
    with torch.no_grad():  # make the adapters do something
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    lora_sums, _ = sequence_logps(peft_model, prompts, comps)
    assert (lora_sums - base_sums).abs().max() > 1e-3
    with peft_model.disable_adapter():
        off_sums, _ = sequence_logps(peft_model, prompts, comps)
    assert torch.allclose(off_sums, base_sums, atol=1e-5)
    # gradients reach the LoRA parameters only
    ids, att, comp = join(prompts, comps, 0, None)
    completion_logps(peft_model, ids, att, comp).sums().sum().backward()
    grads = {n: p.grad for n, p in peft_model.named_parameters() if p.requires_grad}
    assert grads and all(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "lora_A" in n)


def test_sampling_seeded_and_topk1_is_greedy():
    model = tiny_llama(vocab_size=64)
    prompts = [[5, 6, 7], [8], [9, 10, 11, 12, 13]]
    a = sample(model, prompts, num_samples=3, max_new_tokens=6, seed=4, progress=False, eos_token_id=2)
    b = sample(model, prompts, num_samples=3, max_new_tokens=6, seed=4, progress=False, eos_token_id=2)
    c = sample(model, prompts, num_samples=3, max_new_tokens=6, seed=5, progress=False, eos_token_id=2)
    assert a == b
    assert a != c
    assert len(a) == 3 and all(len(s) == 3 for s in a)
    for per in a:
        for toks in per:
            assert 1 <= len(toks) <= 6
            assert 2 not in toks[:-1]  # truncated after EOS
    greedy = sample(model, prompts, temperature=0, max_new_tokens=6, progress=False, eos_token_id=2)
    top1 = sample(model, prompts, top_k=1, max_new_tokens=6, seed=9, progress=False, eos_token_id=2)
    assert greedy == top1
    # left padding gives the same greedy continuation as each prompt alone
    for p, g in zip(prompts, greedy, strict=True):
        alone = sample(model, [p], temperature=0, max_new_tokens=6, progress=False, eos_token_id=2)
        assert alone[0] == g


def test_sample_with_logps_gives_sample_s_completions_and_their_forward_log_probs():
    from alignkit.engine import sample_with_logps

    model = tiny_llama(vocab_size=64)
    prompts = [[5, 6, 7], [8], [9, 10, 11, 12, 13]]
    kw = dict(
        num_samples=3, max_new_tokens=16, seed=4, progress=False, eos_token_id=[2, 3, 4, 5], batch_size=4
    )
    plain = sample(model, prompts, **kw)
    ids, logps = sample_with_logps(model, prompts, **kw)
    assert ids == plain  # the same random draws: recording the logits does not change sampling
    assert any(len(c) < 16 for per in ids for c in per)  # some stop at EOS (masked past it)
    flat_p = [p for p, per in zip(prompts, ids, strict=True) for _ in per]
    flat_c = [c for per in ids for c in per]
    sums, _ = sequence_logps(model, flat_p, flat_c)
    got = torch.tensor([x for per in logps for x in per])
    assert torch.allclose(got, sums.float(), atol=1e-4), (got, sums)
    # the raw logits, not the processed ones: at temperature 0.5 the completions differ but logps stay pi's own
    ids_t, logps_t = sample_with_logps(model, prompts, **{**kw, "temperature": 0.5})
    sums_t, _ = sequence_logps(model, flat_p, [c for per in ids_t for c in per])
    assert torch.allclose(torch.tensor([x for per in logps_t for x in per]), sums_t.float(), atol=1e-4)


def test_generate_text():
    from alignkit.engine import generate
    from alignkit.engine.tiny import char_tokenizer

    tok = char_tokenizer()
    model = tiny_llama(vocab_size=len(tok))
    out = generate(model, tok, ["hello", "a"], num_samples=2, max_new_tokens=5, progress=False)
    assert len(out) == 2 and all(len(o) == 2 and all(isinstance(s, str) for s in o) for o in out)


def test_head_workspace_reuses_and_bounds_buffers():
    from alignkit.engine.head import _HeadWorkspace

    ws = _HeadWorkspace(keep=2)
    cpu = torch.device("cpu")
    a = ws.take(100, cpu)
    assert a.numel() == 100 and a.dtype == torch.float32
    ws.give(a)
    b = ws.take(60, cpu)  # fits in the held buffer: the same storage comes back
    assert b.data_ptr() == a.data_ptr()
    ws.give(b)
    ws.give(torch.empty(10))
    ws.give(torch.empty(20))  # three held > keep: the smallest goes
    assert ws.held_bytes() == 4 * (100 + 20)
    c = ws.take(500, cpu)  # nothing fits: the held buffers are dropped before allocating
    assert c.numel() == 500 and ws.held_bytes() == 0
    ws.give(c)
    ws.clear()
    assert ws.held_bytes() == 0


def test_head_reuses_logit_buffers_across_steps_with_equal_results(monkeypatch):
    """Training fwd+bwd and no-grad tiles draw their [N, V] buffers from the workspace; values never change."""
    import alignkit.engine.head as lpm

    ws = lpm._HeadWorkspace(keep=2)
    monkeypatch.setattr(lpm, "HEAD_WORKSPACE", ws)
    torch.manual_seed(0)
    model = tiny_llama(vocab_size=64)
    prompts, comps = _batch(seed=3)
    ids, att, comp = join(prompts, comps, 0, None)
    results, grads = [], []
    for _ in range(2):
        model.zero_grad()
        tl = completion_logps(model, ids, att, comp)
        assert ws.held_bytes() == 0  # the kept probabilities hold the buffer until backward
        tl.sums().sum().backward()
        assert ws.held_bytes() == 4 * int(tl.mask.sum()) * 64  # given back, one buffer of N x V
        results.append(tl.logps.detach().clone())
        grads.append([p.grad.clone() for p in model.parameters()])
    ptr = ws._free[0].data_ptr()
    with torch.no_grad():
        monkeypatch.setattr(lpm, "_TILE_ELEMENTS", 64 * 3)  # several no-grad tiles share one buffer
        tiled = completion_logps(model, ids, att, comp)
    assert ws._free[0].data_ptr() == ptr  # reused, not reallocated
    assert torch.equal(results[0], results[1])
    assert torch.allclose(tiled.logps, results[0], atol=1e-6)
    for g0, g1 in zip(*grads, strict=True):
        assert torch.equal(g0, g1)
    # a second backward through the same graph is refused, not computed from a recycled buffer
    tl = completion_logps(model, ids, att, comp)
    loss = tl.sums().sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="retain_graph"):
        loss.backward()
