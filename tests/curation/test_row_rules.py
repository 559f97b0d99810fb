"""Unit tests of the row-level curation rules (catalog 16, 48, 51, 63, 73, 76, 83, 100)."""

import math
import random

import numpy as np
import pytest

from alignkit.curation import (
    filter_long_output,
    filter_refusals,
    fit_exp_plateau,
    isa_entropy_change,
    isa_select,
    judge_pairs,
    mistake_analysis_rows,
    output_length,
    required_length,
    retrieve_neighbours,
    self_align_round,
    statement_align_pairs,
    translation_sft_rows,
)
from alignkit.registry import get

# --- 76: The Poison of Alignment -------------------------------------------------------------------------------


def test_refusal_filter_hand_list_and_idempotent():
    rows = [
        {"prompt": "2+2?", "response": "4"},
        {"prompt": "joke", "response": "As an AI language model, I cannot tell jokes."},
        {"prompt": "code", "response": "def f(): return 1"},
        {"prompt": "x", "response": "I'm sorry, but I can't help with that."},
        {"prompt": "y", "response": "Paris is the capital of France."},
    ]
    kept, removed = filter_refusals(rows)
    assert [r["prompt"] for r in kept] == ["2+2?", "code", "y"]
    assert [r["prompt"] for r in removed] == ["joke", "x"]
    kept2, removed2 = filter_refusals(kept)
    assert kept2 == kept and removed2 == []  # idempotent
    k3, r3 = filter_refusals(
        [{"completion": "As an AI, no."}], field="completion", patterns=[r"\bas an ai\b"]
    )
    assert (len(k3), len(r3)) == (0, 1)


def test_refusal_filter_errors():
    with pytest.raises(ValueError, match="row 1: missing field 'response'"):
        filter_refusals([{"response": "ok"}, {"prompt": "x"}])
    with pytest.raises(ValueError, match="not a valid regex"):
        filter_refusals([{"response": "ok"}], patterns=["("])


# --- 63: judge-built preference pairs --------------------------------------------------------------------------


def test_judge_pairs_best_vs_worst_and_ties():
    def scorer(row, resp):  # factuality: fraction of reference words present
        ref = set(row["reference"].split())
        return len(ref & set(resp.split())) / len(ref)

    rows = [
        {
            "prompt": "img1",
            "reference": "no effusion no pneumothorax",
            "responses": ["effusion", "no effusion no pneumothorax", "no"],
        },
        {"prompt": "img2", "reference": "normal heart", "responses": ["abc", "xyz"]},  # tie at 0: dropped
    ]
    pairs = judge_pairs(rows, scorer)
    assert len(pairs) == 1
    p = pairs[0]
    assert p["chosen"] == "no effusion no pneumothorax" and p["chosen_score"] == pytest.approx(1.0)
    assert p["rejected"] == "effusion" and p["rejected_score"] == pytest.approx(
        1 / 3
    )  # earliest of the 1/3 tie
    assert p["reference"] == rows[0]["reference"] and "responses" not in p
    assert judge_pairs(rows, scorer, min_gap=0.7) == []  # gap 2/3 <= 0.7


def test_judge_pairs_errors():
    with pytest.raises(ValueError, match="row 0: field 'responses'"):
        judge_pairs([{"prompt": "a", "responses": ["only one"]}], lambda r, y: 0.0)
    with pytest.raises(ValueError, match="row 0: scorer returned non-finite"):
        judge_pairs([{"prompt": "a", "responses": ["x", "y"]}], lambda r, y: float("nan"))
    with pytest.raises(ValueError, match="row 0: missing field 'prompt'"):
        judge_pairs([{"responses": ["x", "y"]}], lambda r, y: 0.0)


# --- 73: mistake analysis --------------------------------------------------------------------------------------


def test_mistake_analysis_generate_then_train():
    rows = [{"prompt": "How to pick a lock?", "response": "Use a tension wrench ..."}]
    gen = mistake_analysis_rows(rows, stage="generate", template="Q: {prompt} A: {response} Why harmful?")
    assert gen[0]["prompt"].startswith("The following response is harmful. ")  # guided generation
    assert "How to pick a lock?" in gen[0]["prompt"] and "tension wrench" in gen[0]["prompt"]
    train = mistake_analysis_rows(
        [{**rows[0], "analysis": "It helps break into homes."}],
        template="Q: {prompt} A: {response} Why harmful?",
        helpful_rows=[{"prompt": "hi", "completion": "hello"}],
    )
    assert train[0] == {
        "prompt": "Q: How to pick a lock? A: Use a tension wrench ... Why harmful?",  # hint removed
        "completion": "It helps break into homes.",
        "source": "mistake_analysis",
    }
    assert train[1] == {"prompt": "hi", "completion": "hello", "source": "helpful"}


def test_mistake_analysis_errors():
    with pytest.raises(ValueError, match="row 0: missing field 'analysis'"):
        mistake_analysis_rows([{"prompt": "a", "response": "b"}])
    with pytest.raises(ValueError, match="template"):
        mistake_analysis_rows([], template="no fields")


# --- 48: data sampling (ISA) -----------------------------------------------------------------------------------


def test_isa_entropy_change_formula_and_selection():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (40, 2)), rng.normal(8, 1, (40, 2)), [[4.0, 30.0]]])
    dh = isa_entropy_change(x)
    # dH_i = (-log p_i - H) / (N - 1): it sums to zero and ranks rows by surprisal; the outlier is most informative
    assert abs(dh.sum()) < 1e-9
    assert int(np.argmax(dh)) == 80
    rows = [{"prompt": str(i), "response": "r"} for i in range(81)]
    kept = isa_select(rows, x, frac=0.05)
    assert len(kept) == math.ceil(0.05 * 81)
    assert "80" in [r["prompt"] for r in kept]
    assert [int(r["prompt"]) for r in kept] == sorted(int(r["prompt"]) for r in kept)  # input order kept


def test_exp_plateau_fit_recovers_noiseless_curve():
    n = np.array([0, 500, 1000, 2000, 4000, 8000, 16000], dtype=float)
    perf = 0.7 - (0.7 - 0.2) * np.exp(-n / 1500)
    fit = fit_exp_plateau(n, perf)
    assert fit["p_inf"] == pytest.approx(0.7, abs=2e-3)
    assert fit["p0"] == pytest.approx(0.2, abs=2e-3)
    assert fit["tau"] == pytest.approx(1500, rel=0.02)


def test_isa_errors():
    with pytest.raises(ValueError, match="features"):
        isa_select([{"a": 1}] * 3, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="row 1 is not finite"):
        isa_entropy_change(np.array([[0.0, 1.0], [np.nan, 0.0], [1.0, 1.0]]))
    with pytest.raises(ValueError, match="frac"):
        isa_select([{"a": 1}] * 3, np.zeros((3, 2)), frac=2.0)


# --- 16: long-output data --------------------------------------------------------------------------------------


def test_long_output_length_adherence():
    assert required_length("Write a 2,000-word story about the sea.") == 2000
    assert required_length("写一篇5000字的文章") == 5000
    assert required_length("Write a story.") is None
    assert output_length("a b c") == 3 and output_length("你好 world") == 3
    w = "word "
    rows = [
        {"prompt": "Write 3000 words on X", "response": w * 2900},  # ratio 0.97: kept
        {"prompt": "Write 3000 words on Y", "response": w * 1000},  # ratio 0.33: too short
        {"prompt": "Write about Z", "response": w * 3000},  # no requested length: dropped
        {"prompt": "Essay", "response": w * 2500, "required_length": 2400},  # field wins: kept
        {"prompt": "Write 1000 words", "response": w * 1000},  # adheres but shorter than min_length
    ]
    kept = filter_long_output(rows)
    assert [r["prompt"] for r in kept] == ["Write 3000 words on X", "Essay"]
    assert kept[0]["length_ratio"] == pytest.approx(2900 / 3000)
    scored = [{**rows[0], "quality": 7}, {**rows[3], "quality": 9}]
    assert [r["prompt"] for r in filter_long_output(scored, min_quality=8)] == ["Essay"]
    assert len(filter_long_output(rows, min_length=0)) == 3


def test_long_output_errors():
    with pytest.raises(ValueError, match="row 0: field 'required_length'"):
        filter_long_output([{"prompt": "a", "response": "b", "required_length": -1}])
    with pytest.raises(ValueError, match="row 0: field 'quality'"):
        filter_long_output([{"prompt": "Write 1 word", "response": "hi"}], min_length=0, min_quality=1)


# --- 51: translation SFT data ----------------------------------------------------------------------------------


def test_translation_sets_have_requested_counts_and_noise_side():
    par = [{"en": f"hello {i}", "de": f"hallo {i}"} for i in range(50)]

    def upper(s, rng):
        return s.upper()

    out = translation_sft_rows(
        par, {("de", "en"): 20, ("en", "de"): 12}, n=32, noise_fn=upper, noise_rate=1.0
    )
    assert len(out) == 32
    assert sum(r["src_lang"] == "de" for r in out) == 20
    for r in out:
        assert r["noised"] and r["completion"].isupper()  # target noised
        assert "HELLO" not in r["prompt"] and "HALLO" not in r["prompt"]  # source untouched
    src_noised = translation_sft_rows(
        par, {("en", "de"): 4}, n=4, noise_fn=upper, noise_rate=1.0, noise_side="source"
    )
    assert all(r["completion"].islower() and "HELLO" in r["prompt"] for r in src_noised)
    clean = translation_sft_rows(par, {("en", "de"): 32})
    assert not any(r["noised"] for r in clean)
    assert translation_sft_rows(par, {("en", "de"): 32}, seed=1) != clean  # seeded draw


def test_translation_errors():
    par = [{"en": "a", "de": "b"}]
    with pytest.raises(ValueError, match="sum to 2"):
        translation_sft_rows(par, {("en", "de"): 2})
    with pytest.raises(ValueError, match="found 1"):
        translation_sft_rows(par, {("en", "de"): 2}, n=2)
    with pytest.raises(ValueError, match="noise_fn"):
        translation_sft_rows(par, {("en", "de"): 1}, n=1, noise_rate=0.5)


# --- 100: ISARA self-alignment data ----------------------------------------------------------------------------


def _bag(texts):
    vocab = ["math", "add", "cook", "pasta", "sum", "bake"]
    return np.array([[t.count(w) for w in vocab] for t in texts], dtype=float) + 1e-3


def test_isara_retrieval_and_dedupe():
    seeds = [{"prompt": "add math", "response": "4"}]
    pool = [
        {"prompt": "cook pasta", "response": "boil"},
        {"prompt": "sum math add", "response": "6"},
        {"prompt": "bake", "response": "oven"},
    ]
    assert retrieve_neighbours(_bag(["add math"]), _bag([p["prompt"] for p in pool]), k=1) == [[1]]
    seen_examples = []

    def copier(examples):  # a stub LLM that copies its in-context examples: everything is a duplicate
        seen_examples.append([e["prompt"] for e in examples])
        return [dict(e) for e in examples]

    assert self_align_round(seeds, pool, _bag, copier, k_icl=2) == []
    assert len(seen_examples) == 1 and seen_examples[0][:2] == ["add math", "sum math add"]  # seed + nearest
    assert len(seen_examples[0]) == 3

    def writer(examples):
        return [{"prompt": "MATH add  sum", "response": "x"}, {"prompt": "math add sum", "response": "y"}]

    new = self_align_round(seeds, pool, _bag, writer, k_icl=1)
    assert [r["response"] for r in new] == ["x"]  # normalised duplicate dropped
    assert new[0]["source"] == "self_align"
    # a filtered-out row does not block a later one with the same prompt
    kept = self_align_round(seeds, pool, _bag, writer, filter_fn=lambda g: g["response"] != "x")
    assert [r["response"] for r in kept] == ["y"]


def test_isara_errors():
    with pytest.raises(ValueError, match="row 0: missing field 'response'"):
        self_align_round([{"prompt": "a"}], [], _bag, lambda e: [])
    with pytest.raises(ValueError, match="generated for seed 0: row 0: missing field 'prompt'"):
        self_align_round([{"prompt": "a", "response": "b"}], [], _bag, lambda e: [{"response": "x"}])


# --- 83: fine-grained alignment enhancement --------------------------------------------------------------------


def test_statement_pairs_from_line_table():
    src = ["int f(int a) {", "  int b = a + 1;", "  return b * 2;", "}"]
    table = [(0x10, 1), (0x14, 2), (0x1C, 3), (0x24, 4)]
    asm = [
        (0x14, "add edi, 1"),
        (0x10, "push rbp"),
        (0x18, "mov eax, edi"),
        (0x1C, "shl eax, 1"),
        (0x24, "pop rbp"),
        (0x28, "ret"),
    ]
    rows = statement_align_pairs(table, asm, src)
    stmt = [r for r in rows if r["granularity"] == "statement"]
    assert [(r["line"], r["prompt"], r["completion"]) for r in stmt] == [
        (1, "push rbp", "int f(int a) {"),
        (2, "add edi, 1\nmov eax, edi", "  int b = a + 1;"),
        (3, "shl eax, 1", "  return b * 2;"),
        (4, "pop rbp\nret", "}"),
    ]
    func = rows[-1]
    assert (
        func["granularity"] == "function"
        and func["prompt"].startswith("push rbp")
        and func["completion"] == "\n".join(src)
    )
    assert len(statement_align_pairs(table, asm, src, function_pair=False)) == 4


def test_statement_pairs_interleaved_lines():
    src = ["a", "b"]
    table = [(0, 1), (4, 2), (8, 1)]
    asm = [(0, "i0"), (4, "i1"), (8, "i2")]
    merged = statement_align_pairs(table, asm, src, function_pair=False)
    assert [r["prompt"] for r in merged] == ["i0", "i1", "i2"]
    joined = statement_align_pairs(table, asm, src, function_pair=False, merge_consecutive=False)
    assert [r["prompt"] for r in joined] == ["i0\ni2", "i1"]
    with pytest.raises(ValueError, match="line_table row 0: line 5"):
        statement_align_pairs([(0, 5)], asm, src)


# --- registry --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,arxiv",
    [
        ("poison_of_alignment", "2308.13449"),
        ("judge_pairs", "2410.07025"),
        ("mistake_analysis", "2310.10477"),
        ("isa", "2411.10545"),
        ("long_output_filter", "2410.10210"),
        ("translation_sft", "2404.14122"),
        ("isara", "2401.06785"),
        ("fine_grained_alignment_enhancement", "2406.17233"),
    ],
)
def test_registered(name, arxiv):
    c = get(name)
    assert c.kind == "data_rule" and c.family == "curation" and c.arxiv == arxiv
    assert c.formula  # a Formula: block in the docstring
    random.seed(0)
