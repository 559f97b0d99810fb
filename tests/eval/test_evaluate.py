"""``evaluate_policy`` and ``alignkit eval`` on a tiny model built in a few seconds."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from alignkit.testbed import get_base_model, get_task

    cfg = get_task("sentiment").base_config(
        pretrain_steps=10,
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        intermediate_size=64,
        batch_size=8,
        context=64,
        vocab_size=512,
        corpus_chars=200_000,
    )
    return get_base_model("sentiment", cfg, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


def test_evaluate_policy_against_itself(tiny):
    from alignkit.eval import evaluate_policy, pair_logps
    from alignkit.testbed import build_pairs, get_task

    task = get_task("sentiment")
    prompts = task.prompts(tiny.tokenizer, "eval", 12)
    res = evaluate_policy(
        tiny.model, tiny.tokenizer, task, prompts, ref_model=tiny.model, num_samples=3, progress=False
    )
    s = res.samples
    assert len(s.ids) == 12 and all(len(per) == 3 for per in s.ids)
    assert all(1 <= len(c) <= task.max_new_tokens for per in s.ids for c in per)
    assert res.gold_reward["mean"] == pytest.approx(np.mean([np.mean(r) for r in s.rewards]))
    assert res.kl["mean"] == 0.0
    # a different policy object with the same weights: KL estimated from log-probs is ~0, and win rate vs its
    # own samples is exactly 1/2
    import copy

    twin = copy.deepcopy(tiny.model)
    pairs = build_pairs(prompts, s.ids, s.rewards, tiny.tokenizer, temperature=0.1)
    res2 = evaluate_policy(
        twin,
        tiny.tokenizer,
        task,
        prompts,
        ref_model=tiny.model,
        samples=s,
        baseline_rewards=s.rewards,
        pairs=pairs or None,
        beta=0.1,
        train_pairs=pairs or None,
        progress=False,
    )
    assert abs(res2.kl["mean"]) < 1e-6
    assert res2.win_rate["mean"] == pytest.approx(0.5)
    if pairs:
        c, r = pair_logps(tiny.model, pairs, tiny.tokenizer.eos_token_id)
        assert res2.ranking_accuracy["mean"] == pytest.approx(float(np.mean(c > r)))
        assert abs(res2.displacement["chosen"]["mean"]) < 1e-6
    with pytest.raises(ValueError, match="samples cover 12 prompts but 3"):
        evaluate_policy(tiny.model, tiny.tokenizer, task, prompts[:3], samples=s, progress=False)


def test_cli_eval_json(tiny, tmp_path, capsys):
    from alignkit.cli.main import main

    model_dir = tmp_path / "model"
    tiny.model.save_pretrained(model_dir)
    tiny.tokenizer.save_pretrained(model_dir)
    out_file = tmp_path / "eval.json"
    rc = main(
        [
            "eval",
            "--model",
            str(model_dir),
            "--ref",
            str(model_dir),
            "--eval-prompts",
            "8",
            "--samples",
            "2",
            "--json",
            "--no-progress",
            "--output",
            str(out_file),
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out == json.loads(out_file.read_text())
    assert out["task"] == "sentiment"
    lo, hi = out["gold_reward"]["ci95"]
    assert lo <= out["gold_reward"]["mean"] <= hi
    # model == ref weights: zero up to float rounding (the policy side comes from the KV-cached sampling pass)
    assert abs(out["kl"]["mean"]) < 1e-4
    # the reference's own samples (same weights, same seed) are the policy's: equal gold reward, never null
    assert out["reference_gold_reward"]["mean"] == pytest.approx(out["gold_reward"]["mean"])
    assert 0 <= out["win_rate"]["mean"] <= 1
    assert main(["eval", "--model", str(tmp_path / "missing"), "--ref", str(model_dir)]) == 2
    assert "not a folder" in capsys.readouterr().err
