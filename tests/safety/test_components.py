from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import alignkit as ak
from alignkit.engine.tiny import tiny_llama
from alignkit.safety import (
    AlignGuardHook,
    ALPSHook,
    SuffixArray,
    alignguard_regularizer,
    compliance_gap,
    corpus_spans,
    elasticity_curve,
    finetuning_degradation,
    fisher_diagonal,
    fit_tradeoff,
    gradient_collision_loss,
    harmful_score_by_group,
    head_scores,
    js_distance,
    opinion_similarity,
    perturbation_sensitivity,
    ptst_rows,
    rebound_ratio,
    restore_alignment_weights,
    select_heads,
    steering,
    steering_tradeoff,
    wasserstein_1d,
)
from alignkit.safety.ptst import LLAMA2_SAFETY_PROMPT
from tests.safety._util import TOK, ids, run, same_weights


def small():
    return tiny_llama(vocab_size=len(TOK), hidden_size=16, num_layers=2, num_heads=2)


PROMPTS = [ids("How to harm?"), ids("Make a weapon now")]
BENIGN = [ids("Sum 2 and 3"), ids("Name a colour")]


def test_registered_with_provenance():
    for name in (
        "booster",
        "lisa",
        "alignguard_lora",
        "restore_alignment_weights",
        "ptst",
        "alps",
        "gradient_collision",
        "steering_tradeoff",
        "elasticity",
        "compliance_gap",
        "finetuning_degradation",
        "harmful_score_by_group",
        "opinion_similarity",
    ):
        c = ak.get(name)
        assert f"arXiv:{c.arxiv}" in " ".join(c.doc.split()) and c.formula, name


# --- restore (2504.09757) ----------------------------------------------------------------------------------
def _pair():
    aligned, tuned = small(), small()
    with torch.no_grad():
        for p in tuned.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return aligned, tuned


def test_restore_zero_is_identity_and_full_is_aligned():
    aligned, tuned = _pair()
    before = {k: v.clone() for k, v in tuned.state_dict().items()}
    r = restore_alignment_weights(
        tuned, dict(aligned.named_parameters()), PROMPTS, layer=1, recovery_rate=0.0
    )
    assert r.n_restored == 0 and all(torch.equal(before[k], v) for k, v in tuned.state_dict().items())
    r = restore_alignment_weights(
        tuned,
        dict(aligned.named_parameters()),
        PROMPTS,
        layer=1,
        recovery_rate=1.0,
        steps=1,
        sign_filter=False,
        selectable=lambda n: True,
        budget=lambda n: True,
    )
    assert same_weights(tuned, aligned) and r.n_restored == r.n_params


def test_restore_partial_counts_and_exact_values():
    aligned, tuned = _pair()
    f = {n: p.detach().clone() for n, p in tuned.named_parameters()}
    r = restore_alignment_weights(
        tuned, dict(aligned.named_parameters()), PROMPTS, layer=2, recovery_rate=0.01, steps=3
    )
    a = dict(aligned.named_parameters())
    assert 0 < r.n_restored <= 3 * math.ceil(0.01 * r.n_budget)
    for n, p in tuned.named_parameters():
        m = r.restored.get(n)
        if m is None:
            assert torch.equal(p, f[n])  # not selectable (layer >= 2, norms, embeddings)
        else:
            assert torch.equal(p[m], a[n][m]) and torch.equal(p[~m], f[n][~m])
            assert "norm" not in n


def _official_recover(tuned, aligned, prompts, benign, layer_end, rate, steps, rollback_rate=None, warmup=0):
    """kangyangWHU/LLMAlignment ``sgdg_rollback_final.py`` (``AlignParamRollback``), restated on a tiny model
    (single device, batch size 1, right-padding-free prompts): gradients accumulate in ``.grad`` across steps
    (zeroed only around a rollback pass); select (diff * grad > 0); threshold = the k-th largest |grad| of the
    selected, k = ceil(n_param * rate) with n_param = every ``model.layers.*`` parameter; restore |grad| > thr."""
    import numpy as np

    def layer_ok(name):
        if "layernorm" in name:
            return False
        try:
            return int(name.split(".")[2]) in range(layer_end)
        except (ValueError, IndexError):  # the official code's bare except
            return False

    n_param = sum(
        p.numel() for n, p in tuned.named_parameters() if n.split(".")[2:3] and n.split(".")[2].isdigit()
    )

    def hs(m, x):
        return m(input_ids=torch.tensor([x]), output_hidden_states=True).hidden_states[layer_end][:, -1]

    with torch.no_grad():
        d_h = torch.vstack([hs(aligned, x) for x in prompts]).mean(0)
        d_b = torch.vstack([hs(tuned, x) for x in benign]).mean(0)
    theta_f = {n: p.detach().clone() for n, p in tuned.named_parameters()}
    tgt_a = dict(aligned.named_parameters())

    def reset(model, target, data, direction, step_mask=None, ratio=None):
        for x in data:
            loss = -torch.nn.CosineSimilarity(dim=0)(hs(model, x).mean(0), direction)
            loss.backward()
        se = {}
        for n, p in model.named_parameters():
            if layer_ok(n):
                diff, g = p.data - target[n].data, p.grad.data
                se[n] = ((diff < 0) & (g < 0)) | ((diff > 0) & (g > 0))
                if step_mask:
                    se[n] = se[n] & step_mask[n]
        grads = torch.cat(
            [p.grad.data[se[n]].abs().flatten() for n, p in model.named_parameters() if layer_ok(n)]
        )
        num = int(np.ceil(n_param * rate)) if ratio is None else int(np.ceil(len(grads) * ratio))
        thr = torch.topk(grads, num).values[-1]
        final = {}
        for n, p in model.named_parameters():
            if layer_ok(n):
                m = (p.grad.data.abs() > thr) & se[n]
                p.data[m] = target[n].data[m].clone()
                final[n] = m
        return final

    for _ in range(warmup):
        reset(tuned, tgt_a, prompts, d_h)
    if rollback_rate is not None:
        with torch.no_grad():
            for n, p in tuned.named_parameters():
                p.copy_(theta_f[n])
        tuned.zero_grad(set_to_none=True)
    for _ in range(warmup if rollback_rate is None else 0, steps):
        mask = reset(tuned, tgt_a, prompts, d_h)
        if rollback_rate is not None:
            tuned.zero_grad()
            reset(tuned, theta_f, benign, d_b, step_mask=mask, ratio=rollback_rate)
            tuned.zero_grad()
    return tuned


@pytest.mark.parametrize("with_rollback", [False, True])
def test_restore_equals_the_official_code(with_rollback):
    """Budget over every decoder-layer parameter, gradients accumulated over steps, strict threshold, and the
    rollback's ceil(rate * sign-matched candidates of this step): equal to the restated official code."""
    torch.manual_seed(0)
    aligned, tuned = _pair()
    aligned, tuned = aligned.double(), tuned.double()
    official = _official_recover(
        copy.deepcopy(tuned), aligned, PROMPTS, BENIGN, 2, 0.02, 4, 0.2 if with_rollback else None, warmup=2
    )
    scores = iter([1.0, 0.0])  # eval_fn: the fine-tune metric drops after the warm-up, so rollback runs
    kw = (
        {"eval_fn": lambda m: next(scores), "benign_prompts": BENIGN, "warmup_steps": 2}
        if with_rollback
        else {}
    )
    r = restore_alignment_weights(
        tuned,
        dict(aligned.named_parameters()),
        PROMPTS,
        layer=2,
        recovery_rate=0.02,
        steps=4,
        batch_size=1,
        **kw,
    )
    assert r.rollback is with_rollback and r.n_restored > 0
    assert r.n_budget == sum(p.numel() for n, p in tuned.named_parameters() if ".layers." in n)
    if with_rollback:
        assert all(h["rolled_back"] > 0 for h in r.history)
    for (n, p), (_, q) in zip(tuned.named_parameters(), official.named_parameters(), strict=True):
        assert torch.equal(p, q), n


def test_restore_selects_on_accumulated_gradients():
    """Step 2 ranks by g_1 + g_2: with the same model, a run whose first step restored nothing (rate 0 budget
    skipped) differs from one that accumulated; checked by the per-step counts of the strict threshold (k-1)."""
    aligned, tuned = _pair()
    r = restore_alignment_weights(
        tuned, dict(aligned.named_parameters()), PROMPTS, layer=2, recovery_rate=0.01, steps=2
    )
    k = math.ceil(0.01 * r.n_budget)
    assert r.n_budget > r.n_params  # the budget counts norms and layers >= L too (official get_total_param)
    assert [h["restored"] for h in r.history] == [k - 1, k - 1]  # strictly above the k-th largest


# --- PTST (2402.18540) -------------------------------------------------------------------------------------
def test_ptst_train_never_test_always_has_safety_prompt():
    rows = [
        {"prompt": "Add 2 and 3", "completion": "5"},
        {
            "messages": [
                {"role": "system", "content": LLAMA2_SAFETY_PROMPT},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
            ]
        },
    ]
    train = ptst_rows(rows, stage="train")
    test = ptst_rows(rows, stage="test")
    assert all(m["role"] != "system" for r in train for m in r["messages"])
    assert train[0]["messages"] == [
        {"role": "user", "content": "Add 2 and 3"},
        {"role": "assistant", "content": "5"},
    ]
    assert all(r["messages"][0] == {"role": "system", "content": LLAMA2_SAFETY_PROMPT} for r in test)
    assert all(r["messages"][-1]["role"] == "user" for r in test)
    with pytest.raises(ValueError, match="completion"):
        ptst_rows([{"prompt": "x"}], stage="train")
    text = TOK.apply_chat_template(train[0]["messages"], tokenize=False)
    assert "<|system|>" not in text and "<|user|>Add 2 and 3" in text


# --- ALPS (2505.18799) -------------------------------------------------------------------------------------
def test_wasserstein_hand_values():
    p = torch.tensor([1.0, 0.0, 0.0])
    q = torch.tensor([0.0, 0.0, 1.0])
    assert float(wasserstein_1d(p, q)) == pytest.approx(1.0)  # mass moved from x=0 to x=1
    assert float(
        wasserstein_1d(torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.0, 0.5, 0.5]))
    ) == pytest.approx(0.5)
    assert float(wasserstein_1d(p, p)) == 0.0


def test_alps_scores_pick_the_moved_head_and_frozen_heads_stay_bitwise():
    base = small()
    task = {k: v.clone() for k, v in base.state_dict().items()}
    task["model.layers.1.self_attn.q_proj.weight"][8:16] *= 3  # head 1 of layer 1 (head_dim 8)
    s = head_scores(base.state_dict(), task, num_heads=2)
    assert s.shape == (2, 2) and s[1, 1] > 0 and s[0].abs().sum() == 0 and s[1, 0] == 0
    heads = select_heads(s, 0.25)
    assert heads.tolist() == [[False, False], [False, True]]
    model = small()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    r = ak.train(
        objective="sft",
        model=model,
        tokenizer=TOK,
        data=[{"prompt": "a", "completion": "bc"}] * 4,
        batch_size=2,
        max_steps=2,
        learning_rate=1e-2,
        progress=False,
        hooks=[ALPSHook(heads)],
    )
    p = dict(r.model.named_parameters())
    q = "model.layers.1.self_attn.q_proj.weight"
    assert torch.equal(p[q][:8], before[q][:8]) and not torch.equal(p[q][8:], before[q][8:])
    assert torch.equal(
        p["model.layers.0.self_attn.v_proj.weight"], before["model.layers.0.self_attn.v_proj.weight"]
    )


# --- gradient collision (2308.09971) -----------------------------------------------------------------------
def test_gradient_collision_hand_values():
    w = nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))

    def loss(x):
        return (w * x).sum() ** 2 / 2  # grad = (w.x) x

    same = gradient_collision_loss([w], loss, torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]))
    assert float(same.detach()) == pytest.approx(1.0)
    orth = gradient_collision_loss([w], loss, torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
    assert float(orth.detach()) == pytest.approx(0.0)
    dot = gradient_collision_loss([w], loss, torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0]), kind="dot")
    assert float(dot.detach()) == pytest.approx(3.0)  # g1 = (w.x1) x1 = [3, 3], g2 = [1, 0]
    g = torch.autograd.grad(
        gradient_collision_loss([w], loss, torch.tensor([1.0, 1.0]), torch.tensor([1.0, -0.5])), w
    )[0]
    assert torch.isfinite(g).all() and g.abs().sum() > 0


# --- steering (2401.16332) ---------------------------------------------------------------------------------
def test_steering_zero_scale_identity_hook_removed_and_fit():
    m = small().eval()
    x = torch.tensor([ids("hello there")])
    ref = m(x).logits
    v = torch.randn(16)
    with steering(m, 0, v, 0.0):
        assert torch.equal(m(x).logits, ref)
    with steering(m, 0, v, 2.0):
        assert not torch.allclose(m(x).logits, ref)
    assert torch.equal(m(x).logits, ref)
    n = [0.0, 1.0, 2.0, 3.0]
    fit = fit_tradeoff(n, [0.1 + 0.2 * t for t in n], [0.9 - 0.05 * t * t for t in n])
    assert fit == pytest.approx({"a0": 0.1, "a1": 0.2, "h0": 0.9, "h2": 0.05})
    out = steering_tradeoff(
        m, 1, v, [0.0, 1.0], lambda mm: float(mm(x).logits[0, -1, 5].detach()), lambda mm: 1.0
    )
    assert out["norms"] == pytest.approx([0.0, float(v.norm())]) and out["alignment"][0] == float(
        ref[0, -1, 5]
    )


# --- AlignGuard (2508.02079) -------------------------------------------------------------------------------
def test_alignguard_hand_values_and_limits():
    d = {"w": torch.tensor([1.0, 2.0])}
    f = {"w": torch.tensor([4.0, 0.0])}  # s = [1, 0]: dW_A = [1, 0], dW_T = [0, 2]
    t = alignguard_regularizer(d, f, lam_a=1, lam_t=1, lam_c=1, alpha=0.5)
    assert float(t["fisher"]) == 4.0 and float(t["task"]) == 4.0
    assert float(t["overlap"]) == 0.0 and float(t["separation"]) == 0.0 and float(t["total"]) == 8.0
    f2 = {"w": torch.tensor([2.0, 2.0])}  # s = [1, 1]: everything alignment-critical
    assert float(alignguard_regularizer(d, f2)["task"]) == 0.0
    zero = alignguard_regularizer({"w": torch.zeros(2, requires_grad=True)}, f)
    zero["total"].backward()
    assert float(zero["total"]) == 0.0
    model = small()
    fisher = fisher_diagonal(model, lambda b: model(b, labels=b).loss, [torch.tensor([ids("abc")])])
    plain = run()
    off = run([AlignGuardHook(fisher_like(plain.model), lam_a=0, lam_t=0, lam_c=0)])
    assert same_weights(plain.model, off.model)
    on = run([AlignGuardHook(fisher_like(plain.model))])
    assert all(math.isfinite(h["grad_norm"]) for h in on.history) and on.history[1]["alignguard/task"] > 0
    assert all(torch.isfinite(v).all() and (v >= 0).all() for v in fisher.values())


def fisher_like(model):
    return {n: torch.rand_like(p) for n, p in model.named_parameters()}


# --- measurements ------------------------------------------------------------------------------------------
def test_compliance_gap_hand_example():
    g = compliance_gap([True] * 30 + [False] * 70, [True] * 10 + [False] * 90)
    assert g["gap"] == pytest.approx(0.20)
    se = math.sqrt(0.3 * 0.7 / 100 + 0.1 * 0.9 / 100)
    assert g["ci_high"] - g["gap"] == pytest.approx(1.959964 * se, rel=1e-5)
    assert compliance_gap([True, False], [False, True])["gap"] == 0.0


def test_harmful_score_by_group():
    r = harmful_score_by_group(
        [True, False, True, True],
        [("fr", "local"), ("fr", "global"), ("en", "global"), ("en", "local")],
        reference="en",
    )
    assert r["by_group"] == {"fr": 0.5, "local": 1.0, "global": 0.5, "en": 1.0}
    assert r["max_gap"] == 0.5 and r["overall"] == 0.75 and r["diff_vs_reference"]["fr"] == -0.5


def test_opinion_similarity_hand_values():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    q = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    s = opinion_similarity(p, q)
    assert float(s[0]) == pytest.approx(1 - math.sqrt(math.log(2))) and float(s[1]) == pytest.approx(1.0)
    # scipy.spatial.distance.jensenshannon([0.2, 0.8], [0.6, 0.4]) = 0.2869 (natural log), by hand:
    a, b = torch.tensor([0.2, 0.8]), torch.tensor([0.6, 0.4])
    m = (a + b) / 2
    jsd = 0.5 * (a * (a / m).log()).sum() + 0.5 * (b * (b / m).log()).sum()
    assert float(js_distance(a, b)) == pytest.approx(float(jsd.sqrt()))


def test_finetuning_degradation_and_sensitivity():
    r = finetuning_degradation({1: 0.5, 2: 0.6, 3: 0.7}, {1: 0.45, 2: 0.58, 3: 0.5})
    assert r["best_budget"] == 2 and r["overtrained_budgets"] == [3]
    assert r["degradation"][3] == pytest.approx(0.2)

    class Q(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(3, dtype=torch.float64))

    q = Q()
    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    s = perturbation_sensitivity(q, lambda m: float(0.5 * (a * m.w**2).sum()), sigma=0.1, n_samples=4000)
    assert s == pytest.approx(0.1**2 * a.sum().item() / 2, rel=0.1)  # sigma^2 Tr(A) / 2
    assert perturbation_sensitivity(q, lambda m: float(m.w.sum()), sigma=0.0) == 0.0
    assert torch.equal(q.w, torch.zeros(3, dtype=torch.float64))


def test_elasticity_curve_and_rebound():
    w = nn.Parameter(torch.tensor(1.0))
    m = nn.Module()
    m.w = w

    def step(model, t):
        with torch.no_grad():
            model.w.mul_(0.5)  # geometric decay: fast first, then slow

    c = elasticity_curve(m, step, {"aligned": lambda mm: float(mm.w)}, steps=4)
    assert c["aligned"] == [1.0, 0.5, 0.25, 0.125, 0.0625]
    assert rebound_ratio(c["aligned"], 1) == pytest.approx(0.5 / ((0.5 - 0.0625) / 3))


def test_suffix_array_and_corpus_spans():
    docs = [[1, 2, 3, 4, 5], [9, 2, 3, 4, 7]]
    sa = SuffixArray(docs)
    brute = [i for i in range(len(sa.text) - 2) if sa.text[i : i + 3] == [2, 3, 4]]
    assert sa.find([2, 3, 4]) == brute and sa.count([2, 3, 4]) == 2 and sa.count([8]) == 0
    spans = corpus_spans(sa, [8, 2, 3, 4, 5, 8], [-1.0, -1.0, -2.0, -3.0, -4.0, -1.0], min_len=3)
    assert len(spans) == 1 and (spans[0].start, spans[0].end, spans[0].count) == (1, 5, 1)
    assert spans[0].documents == [0] and spans[0].surprisal == pytest.approx(2.5)


def test_belief_conflict_index_by_hand_limits_gradient_and_coauthor_code():
    """TraceAlign's BCI(s) = -sum log P_train(t). By hand: corpus of 10 tokens, token 1 seen 5 times, token 2
    twice, token 3 once -> P = 0.5, 0.2, 0.1; BCI([1, 2, 3]) = ln 2 + ln 5 + ln 10 = ln 100."""
    from alignkit.safety import belief_conflict_index, trace_shield, unigram_probs

    docs = [[1, 1, 1, 2, 4], [1, 1, 2, 3, 4]]
    p = unigram_probs(docs, vocab_size=6)
    assert p[1].item() == 0.5 and p[2].item() == 0.2 and p[3].item() == 0.1 and p[5].item() == 1e-9
    bci = ak.get("belief_conflict_index")
    assert bci(p[[1, 2, 3]]).item() == pytest.approx(math.log(100.0))
    # limits: a token with P = 1 adds nothing; masked tokens are skipped; rarer tokens score higher; batched
    assert bci(torch.ones(4, dtype=torch.float64)).item() == pytest.approx(0.0, abs=1e-10)
    rows = torch.stack([p[[1, 1, 3]], p[[1, 3, 5]]])
    out = bci(rows, torch.tensor([[1, 1, 0], [1, 1, 0]]))
    assert out[0].item() == pytest.approx(out[1].item() - math.log(10.0) + math.log(2.0))
    assert bci(p[[3]]).item() > bci(p[[2]]).item() > bci(p[[1]]).item()
    with pytest.raises(ValueError, match="log-probabilities"):
        bci(torch.tensor([-0.5]))
    with pytest.raises(ValueError, match=r"documents\[1\]"):
        unigram_probs([[0], [7]], vocab_size=6)
    # gradients: dBCI/dp = -1/(p + eps), finite
    q = torch.tensor([0.5, 0.25], dtype=torch.float64, requires_grad=True)
    belief_conflict_index(q).backward()
    assert torch.allclose(q.grad, torch.tensor([-2.0, -4.0], dtype=torch.float64))
    # the co-author repository's bci.py (github.com/vinija/tracealign), restated: sum over the span of
    # -log(p + 1e-12), unseen tokens -log(default_prob) (ours: -log(default_prob + 1e-12), 1e-3 nats more)
    probs = {1: 0.5, 2: 0.2, 3: 0.1}
    span = [1, 3, 5, 2]
    ref = sum(-math.log(probs[t] + 1e-12) if t in probs else -math.log(1e-9) for t in span)
    assert bci(p[[1, 3, 2]]).item() == pytest.approx(ref + math.log(1e-9), rel=1e-12)
    assert bci(p[span]).item() == pytest.approx(ref - math.log1p(1e-3), rel=1e-12)
    # TraceShield: verbatim windows above tau refuse; a window not in the corpus never does
    sa = SuffixArray(docs)
    hits = trace_shield(sa, [0, 2, 3, 4, 5], p, tau=5.0, window=3)
    assert hits == [(1, pytest.approx(math.log(5.0) + math.log(10.0) - math.log(0.2)))]
    assert trace_shield(sa, [0, 2, 3, 4, 5], p, tau=20.0, window=3) == []
    assert trace_shield(sa, [5, 5, 5], p, tau=0.0, window=3) == []


def test_compression_rate_by_hand_and_limits():
    """gamma = sum -log2 p(x) / (8 bytes): two 4-byte texts, 4 tokens of p = 2^-8 each: 64 code bits over 64
    raw bits = 1.0 (no compression); a perfect model (p = 1) compresses to 0."""
    from alignkit.safety import compression_rate, compression_rate_curve

    lp = torch.full((2, 4), math.log(2**-8), dtype=torch.float64)  # two texts, 4 tokens of 8 bits each
    assert compression_rate(lp, [4, 4]).item() == pytest.approx(1.0)
    assert compression_rate(torch.zeros(3), [1, 2, 3]).item() == 0.0
    with pytest.raises(ValueError, match="raw_bytes"):
        compression_rate(lp, [4, 0])
    with pytest.raises(ValueError, match="log-probabilities"):
        compression_rate(torch.tensor([0.5]), [1])
    rates = compression_rate_curve({"aligned": [math.log(2) * 16, math.log(2) * 8]}, {"aligned": 32.0})
    assert rates == {"aligned": [pytest.approx(0.5), pytest.approx(0.25)]}
    with pytest.raises(ValueError, match="raw_bits"):
        compression_rate_curve({"x": [1.0]}, {})
