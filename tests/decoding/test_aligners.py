from __future__ import annotations

import math

import pytest
import torch

import alignkit as ak
from alignkit.decoding import (
    DecodeContext,
    aligner_loss,
    aligners,
    build_aligner_examples,
    sample_text,
    tokenize_aligner_examples,
)
from alignkit.decoding.aligners import aligner_input

PROMPTS = ["hi", "say no"]


def test_examples_and_tokenization(tok):
    rows = [{"query": "q1", "misaligned": "bad", "aligned": "good"}]
    ex = build_aligner_examples(rows, identity_copies=True)
    assert ex == [
        {"prompt": "Question: q1\nAnswer: bad\nAligned answer:", "completion": " good"},
        {"prompt": "Question: q1\nAnswer: good\nAligned answer:", "completion": " good"},
    ]
    with pytest.raises(ValueError, match=r"data.jsonl row 1: field 'aligned'"):
        build_aligner_examples([rows[0], {"query": "q", "misaligned": "x"}], source="data.jsonl")
    b = tokenize_aligner_examples(
        tok, [{"prompt": "ab", "completion": "cd"}, {"prompt": "a", "completion": "c"}]
    )
    # row 0: <s> a b | c d </s>;  row 1: <s> a | c </s> + one pad
    assert b["completion_mask"].tolist() == [[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 0, 0]]
    assert b["attention_mask"].tolist() == [[1] * 6, [1, 1, 1, 1, 0, 0]]
    assert b["input_ids"][0, -1].item() == tok.eos_token_id == b["input_ids"][1, 3].item()


def test_loss_hand_value_and_gradient_flow():
    ids = torch.tensor([[1, 2, 3, 0], [1, 3, 2, 2]])
    mask = torch.tensor([[0, 0, 1, 0], [0, 1, 1, 1]])
    logits = torch.zeros(2, 4, 4, requires_grad=True)
    out = aligner_loss(logits, ids, mask)
    assert out.loss.item() == pytest.approx(math.log(4))  # uniform logits: every target costs log V
    assert out.losses.tolist() == pytest.approx([math.log(4)] * 2)
    z = torch.zeros(1, 3, 2)
    z[0, 0] = torch.tensor([math.log(3.0), 0.0])  # p(token 0) = 3/4 at position 0
    got = aligner_loss(z, torch.tensor([[1, 0, 1]]), torch.tensor([[0, 1, 0]])).loss.item()
    assert got == pytest.approx(-math.log(0.75))
    out.loss.backward()
    g = logits.grad.abs().sum(-1)
    # position t predicts token t + 1: gradient exactly where mask[t + 1] = 1
    assert torch.isfinite(logits.grad).all()
    assert (g > 0).tolist() == [[False, True, False, False], [True, True, True, False]]
    with pytest.raises(ValueError, match="no target"):
        aligner_loss(logits, ids, torch.zeros_like(mask))


def test_decoder_rewrites_and_inspector_gates(aligned, ref, tok, sampling):
    base = sample_text(aligned, tok, PROMPTS, **sampling)
    ctx = DecodeContext(aligner_model=ref, sampling=sampling)
    got = aligners(aligned, tok, PROMPTS, ctx)
    greedy = {**sampling, "num_samples": 1, "temperature": 0.0}
    for i, p in enumerate(PROMPTS):
        for j, y in enumerate(base[i]):
            want = sample_text(ref, tok, [aligner_input(p, y)], **greedy)[0][0].strip()
            assert got[i][j] == want
    # inspector below tau everywhere: the base answers come back unchanged
    never = DecodeContext(aligner_model=ref, sampling=sampling, extra={"inspector": lambda q, y: 0.0})
    assert aligners(aligned, tok, PROMPTS, never) == base
    # inspector flags only the first prompt
    some = DecodeContext(
        aligner_model=ref, sampling=sampling, extra={"inspector": lambda q, y: float(q == "hi")}
    )
    mixed = aligners(aligned, tok, PROMPTS, some, tau=0.5)
    assert mixed[0] == got[0] and mixed[1] == base[1]
    with pytest.raises(ValueError, match="aligner_model"):
        aligners(aligned, tok, PROMPTS, DecodeContext(sampling=sampling))
    assert ak.get("aligners").defaults == {
        "tau": 0.5,
        "aligner_temperature": 0.0,
        "aligner_max_new_tokens": 0,
        "squad_order": "inspector",
    }
    short = aligners(aligned, tok, PROMPTS, ctx, aligner_max_new_tokens=2)
    assert all(len(tok(y, add_special_tokens=False)["input_ids"]) <= 2 for per in short for y in per)


def test_a_few_steps_teach_the_aligner_the_correction(ref, tok):
    # the objective is learnable: 60 Adam steps on one triple make the greedy rewrite the corrected answer
    import copy

    model = copy.deepcopy(ref).train()
    ex = build_aligner_examples([{"query": "q", "misaligned": "bad", "aligned": "good"}])
    b = tokenize_aligner_examples(tok, ex)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    first = None
    for _ in range(60):
        out = aligner_loss(model(input_ids=b["input_ids"]).logits, b["input_ids"], b["completion_mask"])
        first = first if first is not None else out.loss.item()
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert out.loss.item() < 0.1 * first
    rewrite = sample_text(model.eval(), tok, [aligner_input("q", "bad")], max_new_tokens=6, temperature=0.0)
    assert rewrite[0][0].strip() == "good"


def test_squad_is_reordered_by_ascending_mean_inspector_score(aligned, ref, tok, sampling):
    """Official squad: per batch, the least-flagged criterion's aligner runs first."""
    from alignkit.decoding.aligners import order_squad

    a, b, c = object(), object(), object()
    squad = [(a, lambda q, y: 0.9), (b, lambda q, y: 0.1), (c, None)]
    got = order_squad(squad, ["x", "y"], [["1"], ["2"]])
    assert [m for m, _ in got] == [c, b, a]
    # end to end: two always-flagging members whose rewrites differ; the order decides the output
    greedy = {**sampling, "num_samples": 1, "temperature": 0.0}
    hi, lo = (lambda q, y: 0.9), (lambda q, y: 0.6)
    ctx = DecodeContext(
        aligner_model=aligned, sampling=greedy, extra={"inspector": hi, "aligner_squad": [(ref, lo)]}
    )
    ordered = aligners(aligned, tok, PROMPTS, ctx)  # ref's member (0.6) first, then aligned's (0.9)
    fixed = aligners(aligned, tok, PROMPTS, ctx, squad_order="fixed")  # aligned first, then ref
    base = sample_text(aligned, tok, PROMPTS, **greedy)
    first = [
        sample_text(ref, tok, [aligner_input(p, y[0])], **greedy)[0][0].strip()
        for p, y in zip(PROMPTS, base, strict=True)
    ]
    want = [
        [sample_text(aligned, tok, [aligner_input(p, f)], **greedy)[0][0].strip()]
        for p, f in zip(PROMPTS, first, strict=True)
    ]
    assert ordered == want and fixed != ordered
    with pytest.raises(ValueError, match="squad_order"):
        aligners(aligned, tok, PROMPTS, ctx, squad_order="random")
