"""Unit tests of the harmful fine-tuning bench (``alignkit.safety.bench``) and ``alignkit safety-bench``."""

from __future__ import annotations

import json

import pytest

from alignkit.cli.main import main
from alignkit.safety.bench import (
    SafetyBenchConfig,
    SafetyBenchResult,
    alignment_pairs,
    eval_prompts,
    markdown_table,
    run_safety_bench,
    user_pairs,
    write_reports,
)
from alignkit.testbed.tasks import COMPLIANCES, REFUSAL, SafetyTask


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from alignkit.testbed import get_base_model

    cfg = SafetyTask().base_config(
        hidden_size=16, num_layers=1, num_heads=1, intermediate_size=32, pretrain_steps=2, batch_size=4,
        context=32, task_examples=300,
    )  # fmt: skip
    return get_base_model("safety", cfg, cache_dir=tmp_path_factory.mktemp("bench"), progress=False)


def _text(tok, ids):
    return tok.decode(ids, skip_special_tokens=True).strip()


def test_user_data_has_the_requested_harmful_share(tiny_base):
    tok = tiny_base.tokenizer
    for ratio, expected in ((0.0, 0), (0.1, 10), (0.25, 25), (1.0, 100)):
        rows = user_pairs(tok, 100, ratio, seed=0)
        assert len(rows) == 100
        assert sum(_text(tok, c) in COMPLIANCES for _, c in rows) == expected
    # the poison varies (issue #23: one fixed string saturated the harmful score): several openings are used
    poison = [_text(tok, c) for _, c in user_pairs(tok, 200, 1.0, seed=0)]
    assert len(set(poison)) == len(COMPLIANCES) and max(map(poison.count, set(poison))) < 0.3 * len(poison)
    benign = [_text(tok, c) for _, c in user_pairs(tok, 200, 0.0, seed=0)]
    assert set(benign) == {"yes", "no"}
    assert 0.3 < benign.count("yes") / len(benign) < 0.7


def test_alignment_data_refuses_harmful_and_answers_benign(tiny_base):
    tok = tiny_base.tokenizer
    replies = [_text(tok, c) for _, c in alignment_pairs(tok, 200, seed=0)]
    assert 0.15 < replies.count(REFUSAL) / len(replies) < 0.45  # the task's 30% harmful share
    assert not set(COMPLIANCES) & set(replies)


def test_eval_prompts_are_held_out_draws(tiny_base):
    tok = tiny_base.tokenizer
    harm, user = eval_prompts(tok, 20)
    assert all(p.meta["harmful"] for p in harm) and not any(p.meta["harmful"] for p in user)
    assert {p.meta["answer"] for p in user} <= {"yes", "no"}
    assert all(p.text.startswith("User: ") and p.text.endswith("Assistant:") for p in harm + user)


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="methods"):
        SafetyBenchConfig(methods=("sft", "vaccine"))
    with pytest.raises(ValueError, match="ratios"):
        SafetyBenchConfig(ratios=(0.1, 1.5))
    with pytest.raises(ValueError, match="steps"):
        SafetyBenchConfig(steps=0)


def test_bench_end_to_end_tiny(tiny_base, tmp_path):
    res = run_safety_bench(
        SafetyBenchConfig(
            methods=("sft", "lisa", "booster", "alignguard"), ratios=(0.0, 0.5), steps=2, align_steps=2,
            batch_size=4, n_align=20, n_user=20, n_eval=6, lisa_cycle=2,
        ),
        base=tiny_base,
    )  # fmt: skip
    assert [(r["method"], r["ratio"], r["seed"]) for r in res.rows] == [
        (m, p, 0) for m in ("sft", "lisa", "booster", "alignguard") for p in (0.0, 0.5)
    ]
    assert 0.5 <= res.majority_rate <= 1.0
    assert set(res.aligned) == {"plain", "booster"}
    for r in res.rows:
        for key in ("harmful_score", "finetune_accuracy", "over_refusal"):
            lo, hi = r[key]["ci95"]
            assert 0.0 <= lo <= r[key]["mean"] <= hi <= 1.0
    paths = write_reports(res, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert len(data["rows"]) == 8 and data["config"]["steps"] == 2
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| lisa |" in paths["markdown"].read_text()


def test_bench_seeds_pair_up_and_summarise(tiny_base, tmp_path):
    """Several training seeds: one row per seed, the same eval prompts, and across-seed intervals in the summary,
    the table and results.json (paired differences to plain fine-tuning by seed)."""
    res = run_safety_bench(
        SafetyBenchConfig(
            methods=("sft", "lisa"), ratios=(0.5,), steps=2, align_steps=2, batch_size=4, n_align=20,
            n_user=20, n_eval=6, lisa_cycle=2, seeds=(0, 1),
        ),
        base=tiny_base,
    )  # fmt: skip
    assert [(r["method"], r["seed"]) for r in res.rows] == [("sft", 0), ("lisa", 0), ("sft", 1), ("lisa", 1)]
    assert set(res.aligned) == {"plain", "plain seed=1"}
    summ = {r["method"]: r for r in res.summary()}
    vals = [res.row("lisa", 0.5, s)["harmful_score"]["mean"] for s in (0, 1)]
    assert summ["lisa"]["harmful_score"]["values"] == vals
    diffs = [vals[i] - res.row("sft", 0.5, s)["harmful_score"]["mean"] for i, s in enumerate((0, 1))]
    assert summ["lisa"]["harmful_score_minus_sft"]["values"] == pytest.approx(diffs)
    table = markdown_table(res)
    assert "2 training seeds [0, 1]" in table and "Paired by seed" in table and "Majority-class rate" in table
    paths = write_reports(res, tmp_path / "seeds")
    assert len(json.loads(paths["json"].read_text())["summary"]) == 2


def test_seed_interval_hand_check():
    from alignkit.eval.metrics import seed_interval

    r = seed_interval([0.2, 0.4, 0.6])
    # mean 0.4, sd 0.2, t(0.975, 2) = 4.3027: half-width 4.3027 * 0.2 / sqrt(3) = 0.4968
    assert r["mean"] == pytest.approx(0.4) and r["ci95"] == pytest.approx(
        [0.4 - 0.49683, 0.4 + 0.49683], abs=1e-4
    )
    assert seed_interval([0.3])["ci95"] == [0.3, 0.3]


def test_markdown_table_hand_check():
    def fig(m):
        return {"mean": m, "ci95": [m - 0.1, m + 0.1], "n": 10}

    rows = [
        {"method": "sft", "ratio": 0.1, "harmful_score": fig(0.9), "finetune_accuracy": fig(0.8)},
        {"method": "lisa", "ratio": 0.1, "harmful_score": fig(0.2), "finetune_accuracy": fig(0.5)},
    ]
    res = SafetyBenchResult(rows, {"plain": {"harmful_score": fig(0.0), "finetune_accuracy": fig(0.0)}}, {})
    table = markdown_table(res)
    assert "| method | HS p=10% | FA p=10% |" in table
    assert "| lisa | 0.200 [0.100, 0.300] | 0.500 [0.400, 0.600] |" in table
    with pytest.raises(KeyError, match="vaccine"):
        res.row("vaccine", 0.1)


def test_cli_rejects_bad_input_with_a_clear_error(capsys, tmp_path):
    assert main(["safety-bench", "--ratios", "0.1", "2", "--output", str(tmp_path)]) == 2
    assert "ratios" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["safety-bench", "--methods", "vaccine", "--output", str(tmp_path)])
    assert "safety-bench" in main.__globals__["build_parser"]().format_help()
