"""KV caches of the second models that decoders run (issue #21): the cached path gives the uncached path's
tokens (greedy and seeded sampling) and per-step log-probs (to 1e-5), while running one new token per row and
step instead of the whole prefix."""

from __future__ import annotations

import pytest
import torch

from alignkit.decoding import (
    CachedNextTokenLogits,
    DecodeContext,
    aligners,
    clm,
    dera,
    inra,
    next_token_logits,
)
from alignkit.decoding._common import encode, left_padded_rows
from alignkit.decoding.aed import SAFETY_PROMPT, AEDProcessor
from alignkit.decoding.clm import ControlProcessor, add_identity_layer
from alignkit.decoding.dera import DeRaProcessor
from alignkit.engine.generation import sample
from alignkit.engine.tiny import tiny_llama

PROMPTS = ["hi", "a longer prompt", "xyz"]
TOL = 1e-5


@pytest.fixture(scope="module")
def pair(model_dir):
    """Two 2-layer tiny Llamas over the character tokenizer's vocabulary (so decoded text round-trips)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    aligned = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ref = tiny_llama(vocab_size=len(tok), hidden_size=32, num_layers=2, seed=7).eval()
    return aligned, ref, tok


class Recorder:
    """Wraps a logits processor and keeps what it returned at every step (float32 copies)."""

    def __init__(self, proc) -> None:
        self.proc, self.out = proc, []

    def __call__(self, input_ids, scores):
        res = self.proc(input_ids, scores)
        self.out.append(res.detach().float().clone())
        return res


class CountInputs:
    """Forward pre-hook: the query length of every forward call of a model."""

    def __init__(self, model) -> None:
        self.lengths: list[int] = []
        self.handle = model.register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.lengths.append(int(ids.shape[1]))

    def remove(self) -> None:
        self.handle.remove()


def _run_both(model, tok, make_proc, sampling):
    """Sample with the processor built cached and uncached; return (tokens, per-step outputs) of each."""
    runs = []
    for use_cache in (True, False):
        rec = Recorder(make_proc(use_cache))
        toks = sample(model, encode(tok, PROMPTS), logits_processor=rec, progress=False, **sampling)
        runs.append((toks, rec.out, rec.proc))
    return runs


def _assert_same(runs):
    (tc, oc, _), (tu, ou, _) = runs
    assert tc == tu
    assert len(oc) == len(ou) > 1
    for a, b in zip(oc, ou, strict=True):
        finite = torch.isfinite(b)
        assert torch.equal(finite, torch.isfinite(a))
        assert (a[finite] - b[finite]).abs().max().item() < TOL


# ----------------------------------------------------------------------------------------------- the cache
def test_growing_rows_match_the_uncached_forward_and_run_one_token_per_row(pair):
    _, ref, _ = pair
    g = torch.Generator().manual_seed(0)
    rows = [torch.randint(3, 90, (n,), generator=g).tolist() for n in (2, 7, 4)]
    lm = CachedNextTokenLogits(ref, pad_token_id=0)
    for step in range(6):
        width = max(map(len, rows))
        ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
        want = next_token_logits(ref, ids, 0)
        fed = lm.fed_tokens
        got = lm(rows)
        assert (got - want).abs().max().item() < TOL
        if step > 0:
            assert lm.fed_tokens - fed == len(rows)  # one new token per row, not the prefix
        rows = [r + [int(got[i].argmax())] for i, r in enumerate(rows)]
    assert lm.num_slots == 7 + 5  # the longest first row + one slot per later step


def test_rewritten_tails_and_new_batches_still_match(pair):
    _, ref, _ = pair
    lm = CachedNextTokenLogits(ref, pad_token_id=0)
    a, b = [5, 6, 7, 8, 9], [10, 11, 12]
    lm([a, b])
    # row 0 re-encoded from its 3rd token on (2 tokens replaced, 1 added), row 1 unchanged (re-runs its last)
    cases = [[[5, 6, 40, 41, 42], b], [[5, 6, 40, 41, 42, 43], [10, 11, 12, 13]], [[60, 61], [62]]]
    for rows in cases:
        width = max(map(len, rows))
        want = next_token_logits(ref, torch.tensor([[0] * (width - len(r)) + r for r in rows]), 0)
        assert (lm(rows) - want).abs().max().item() < TOL
    assert lm.num_slots == 2  # the last case shares no prefix: a fresh cache
    with pytest.raises(ValueError, match="empty"):
        lm([[1], []])
    with pytest.raises(ValueError, match="only pad"):
        left_padded_rows(torch.tensor([[0, 0], [0, 4]]), 0)


# ------------------------------------------------------------------------------------------------ decoders
@pytest.mark.parametrize(
    "sampling",
    [
        dict(max_new_tokens=12, temperature=0.0),
        dict(max_new_tokens=12, temperature=1.0, top_k=20, seed=5, num_samples=2),
    ],
    ids=["greedy", "seeded"],
)
def test_dera_cached_equals_uncached(pair, sampling):
    aligned, ref, tok = pair
    runs = _run_both(aligned, tok, lambda c: DeRaProcessor(ref, 0.4, 0, use_cache=c), sampling)
    _assert_same(runs)
    # the registered decoder (cached by default) gives the same text as the uncached processor
    want = [[tok.decode(c, skip_special_tokens=True) for c in per] for per in runs[1][0]]  # as sample_text
    assert dera(aligned, tok, PROMPTS, DecodeContext(ref_model=ref, sampling=sampling), lam=0.4) == want


def test_dera_reference_runs_one_token_per_step_with_the_cache(pair):
    aligned, ref, tok = pair
    counts = CountInputs(ref)
    try:
        greedy = dict(max_new_tokens=10, temperature=0.0)
        dera(aligned, tok, PROMPTS, DecodeContext(ref_model=ref, sampling=greedy), lam=0.5)
        cached = list(counts.lengths)
        counts.lengths.clear()
        uncached_proc = DeRaProcessor(ref, 0.5, 0, use_cache=False)
        sample(aligned, encode(tok, PROMPTS), logits_processor=uncached_proc, progress=False, **greedy)
        uncached = list(counts.lengths)
    finally:
        counts.remove()
    longest = max(len(p) for p in encode(tok, PROMPTS))
    assert cached == [longest] + [1] * 9
    assert uncached == list(range(longest, longest + 10))


@pytest.mark.parametrize("decoder,make", [(clm, "lam"), (inra, "control")])
def test_clm_and_inra_cached_equal_uncached(pair, decoder, make):
    _, ref, tok = pair
    with_layer = add_identity_layer(ref)
    with torch.no_grad():
        with_layer.model.layers[0].self_attn.o_proj.weight.normal_(
            0, 0.5, generator=torch.Generator().manual_seed(0)
        )
    with_layer.eval()
    for sampling in (
        dict(max_new_tokens=10, temperature=0.0),
        dict(max_new_tokens=10, temperature=1.0, seed=2, num_samples=2),
    ):
        # both decoders sample the original model and run the model with the layer as the second model
        runs = _run_both(ref, tok, lambda c: ControlProcessor(with_layer, 1.5, 0, use_cache=c), sampling)
        _assert_same(runs)
        want = [[tok.decode(c, skip_special_tokens=True) for c in per] for per in runs[1][0]]
        ctx = DecodeContext(ref_model=ref, sampling=sampling)
        assert decoder(with_layer, tok, PROMPTS, ctx, **{make: 1.5}) == want


@pytest.mark.parametrize("strategy", ["interrupt", "sigmoid"])
def test_aed_post_pass_cached_equals_uncached(pair, strategy):
    model, _, tok = pair

    def make(use_cache):
        p = AEDProcessor(
            model,
            tok,
            max_weight=0.7,
            threshold=3.0,
            top_p=0.9,
            decay=0.8,
            position=10**9,
            truncate=4,
            strategy=strategy,
            safety_prompt=SAFETY_PROMPT,
            pad_token_id=0,
        )
        p.use_cache = use_cache
        return p

    for sampling in (
        dict(max_new_tokens=12, temperature=0.0),
        dict(max_new_tokens=12, temperature=1.0, seed=9, num_samples=2),
    ):
        runs = _run_both(model, tok, make, sampling)
        _assert_same(runs)
        weights_c, weights_u = runs[0][2].history, runs[1][2].history
        assert len(weights_c) == len(weights_u) and all(
            torch.allclose(a, b) for a, b in zip(weights_c, weights_u, strict=True)
        )
        post = runs[0][2]._post
        rows = len(PROMPTS) * sampling.get("num_samples", 1)
        first = post.num_slots - (len(weights_c) - 1)  # the first (full) block, then one slot per step
        assert post.fed_tokens == rows * first + rows * (len(weights_c) - 1)


def test_aligners_run_both_models_through_generates_kv_cache(pair):
    # Aligners has no logits processor: the base model and the aligner each sample through `generate`, which
    # keeps its own KV cache, so after each prefill every forward is one token per row.
    base, aligner, tok = pair
    counts = {m: CountInputs(m) for m in (base, aligner)}
    try:
        out = aligners(
            base,
            tok,
            PROMPTS,
            DecodeContext(aligner_model=aligner, sampling=dict(max_new_tokens=6, temperature=0.0)),
        )
    finally:
        for c in counts.values():
            c.remove()
    assert len(out) == len(PROMPTS)
    for c in counts.values():
        assert c.lengths[0] > 1 and c.lengths[1:] == [1] * (len(c.lengths) - 1)
        assert len(c.lengths) > 1
