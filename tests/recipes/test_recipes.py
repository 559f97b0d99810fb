"""The shipped recipes: each loads and validates, exports configs `alignkit train --config` reads, and runs its
stages end to end on a tiny local model for 2 steps each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from alignkit import recipes
from alignkit.cli.main import main as cli
from alignkit.engine.tiny import char_tokenizer

EXPECTED = {
    "lion": ["sft", "dpo", "online_dpo"],
    "baichuan": ["sft", "dpo", "merge"],
    "guardrail_ipo": ["sft", "ipo"],
    "guardrail_kto": ["sft", "kto"],
}


def target_reward(prompt_ids, completion_ids):
    """Online judge of the tests: the share of the letter 'a' in each completion."""
    tok = char_tokenizer()
    a = tok("a", add_special_tokens=False)["input_ids"][0]
    return [sum(t == a for t in c) / max(len(c), 1) for c in completion_ids]


def _data(tmp: Path) -> dict[str, Path]:
    words = ["good", "fine", "bad", "meh", "yes", "no"]
    rows = {
        "sft": [{"prompt": f"q{i}:", "completion": words[i % 6] + " x"} for i in range(8)],
        "paired": [
            {"prompt": f"q{i}:", "chosen": words[i % 6] + " a", "rejected": words[(i + 1) % 6] + " z"}
            for i in range(8)
        ],
        "unpaired": [{"prompt": f"q{i}:", "completion": words[i % 6], "label": i % 2 == 0} for i in range(8)],
        "online": [{"prompt": f"q{i}:"} for i in range(8)],
    }
    out = {}
    for k, rs in rows.items():
        f = tmp / f"{k}.jsonl"
        f.write_text("".join(json.dumps(r) + "\n" for r in rs))
        out[k] = f
    return out


def test_names_and_validation():
    assert recipes.names() == sorted(EXPECTED)
    for name, stages in EXPECTED.items():
        r = recipes.load(name)
        assert [s.name for s in r.stages] == stages
        assert r.arxiv and r.paper
    assert recipes.load("lion").stage("dpo").config["hyper_parameters"] == {
        "beta": 0.05
    }  # LION's released beta
    with pytest.raises(KeyError, match="unknown recipe"):
        recipes.load("nope")


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"stages": [{"name": "a", "config": {"objective": "dpo", "bogus": 1}}]}, "unknown config field"),
        (
            {"stages": [{"name": "a", "config": {"objective": "dpo", "model": "@b"}}]},
            "names no earlier stage",
        ),
        ({"stages": [{"name": "a", "config": {"objective": "dpo", "hyper_parameters": {"tau": 1}}}]}, "tau"),
        ({"stages": [{"name": "a", "merge": {"method": "ties"}}]}, "merge.method"),
    ],
)
def test_bad_recipe_files_name_the_field(tmp_path, bad, match):
    f = tmp_path / "r.yaml"
    f.write_text(yaml.safe_dump({"name": "r", "paper": "p", "arxiv": "1", "description": "d", **bad}))
    with pytest.raises(ValueError, match=match) as e:
        recipes.load(f)
    assert "r.yaml" in str(e.value)


def test_exported_stage_configs_run_through_the_cli(model_dir, tmp_path, capsys):
    """`alignkit recipe export` writes configs that `alignkit train --config` runs (lion's sft and dpo, 2 steps)."""
    data = _data(tmp_path)
    assert cli(["recipe", "export", "lion", str(tmp_path / "cfg")]) == 0
    assert cli(["recipe", "list"]) == 0 and "lion" in capsys.readouterr().out
    assert cli(["recipe", "show", "lion", "--stage", "dpo"]) == 0
    shown = capsys.readouterr().out
    assert "pass --model" in shown and yaml.safe_load(shown)["hyper_parameters"] == {"beta": 0.05}
    model = str(model_dir)
    for stage, d in (("sft", "sft"), ("dpo", "paired")):
        out = tmp_path / stage
        rc = cli(
            ["train", "--config", str(tmp_path / "cfg" / f"{stage}.yaml"), "--model", model, "--data",
             str(data[d]), "--output", str(out), "--max-steps", "2", "--batch-size", "4", "--no-progress",
             "--no-tensorboard", "--cache-dir", str(tmp_path / "cache")]
        )  # fmt: skip
        assert rc == 0
        resolved = yaml.safe_load((out / "config.yaml").read_text())
        assert resolved["objective"] == stage and resolved["max_steps"] == 2
        assert len((out / "history.jsonl").read_text().splitlines()) == 2
        model = str(out)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_recipe_runs_end_to_end(name, model_dir, tmp_path):
    data = _data(tmp_path)
    r = recipes.load(name)
    by_mode = {"sft": "sft", "paired": "paired", "unpaired": "unpaired", "online": "online"}
    stage_data = {s.name: data[by_mode[s.config["mode"]]] for s in r.stages if s.config is not None}
    outs = recipes.run(
        r,
        model=str(model_dir),
        data=stage_data,
        output_dir=tmp_path / "out",
        reward_fn="tests.recipes.test_recipes:target_reward",
        overrides={
            "max_steps": 2,
            "batch_size": 4,
            "learning_rate": 1e-3,
            "progress": False,
            "tensorboard": False,
            "online_max_new_tokens": 4,
            "cache_dir": str(tmp_path / "cache"),
        },
    )
    assert list(outs) == EXPECTED[name]
    for s in r.stages:
        assert (outs[s.name] / "model.safetensors").is_file()
        if s.config is not None:
            hist = [json.loads(x) for x in (outs[s.name] / "history.jsonl").read_text().splitlines()]
            assert len(hist) == 2 and all(abs(h["loss"]) < 1e6 for h in hist)
    if name == "baichuan":  # the merge is the average of the SFT and DPO weights
        sft, dpo, merged = (load_file(str(outs[k] / "model.safetensors")) for k in ("sft", "dpo", "merge"))
        for k in merged:
            assert (merged[k].float() - (sft[k].float() + dpo[k].float()) / 2).abs().max() < 1e-3
        assert any((sft[k] != dpo[k]).any() for k in sft)  # the DPO stage did move the weights


def test_run_needs_each_stage_data(model_dir, tmp_path):
    with pytest.raises(ValueError, match="no data for stage 'ipo'"):
        recipes.run("guardrail_ipo", model=str(model_dir), data={"sft": _data(tmp_path)["sft"]},
                    output_dir=tmp_path / "o", overrides={"max_steps": 1, "progress": False, "tensorboard": False})  # fmt: skip


def test_recipe_run_cli_names_stages_and_skips(model_dir, tmp_path, capsys):
    """`alignkit recipe run`: every stage in order with its name in a heading; --skip starts the next stage from the
    skipped stage's input model; --set overrides TrainConfig fields (all stages, or STAGE.KEY for one)."""
    data = _data(tmp_path)
    common = ["--model", str(model_dir), "--set", "max_steps=2", "--set", "batch_size=4", "--set",
              "tensorboard=false", "--set", f"cache_dir={tmp_path / 'cache'}", "--no-progress"]  # fmt: skip
    rc = cli(["recipe", "run", "guardrail_ipo", "--data", f"sft={data['sft']}", "--data", f"ipo={data['paired']}",
              "--output", str(tmp_path / "full"), "--set", "ipo.learning_rate=0.001", *common])  # fmt: skip
    assert rc == 0
    captured = capsys.readouterr()
    assert "stage 1/2 sft" in " ".join(captured.err.split()) and "stage 2/2 ipo" in " ".join(
        captured.err.split()
    )
    ipo = yaml.safe_load((tmp_path / "full" / "ipo" / "config.yaml").read_text())
    assert ipo["model"] == str(tmp_path / "full" / "sft") and ipo["learning_rate"] == 0.001
    assert yaml.safe_load((tmp_path / "full" / "sft" / "config.yaml").read_text())["learning_rate"] == 2e-5
    rc = cli(["recipe", "run", "guardrail_ipo", "--skip", "sft", "--data", f"ipo={data['paired']}",
              "--output", str(tmp_path / "skip"), *common])  # fmt: skip
    assert rc == 0
    assert not (tmp_path / "skip" / "sft").exists()
    assert yaml.safe_load((tmp_path / "skip" / "ipo" / "config.yaml").read_text())["model"] == str(model_dir)
    assert cli(["recipe", "run", "guardrail_ipo", "--skip", "dpo", "--output", "x", "--model", "m"]) == 2
    assert "no stage(s) dpo to skip" in capsys.readouterr().err
    assert (
        cli(["recipe", "run", "guardrail_ipo", "--set", "max_step=2", "--output", "x", "--model", "m"]) == 2
    )
    assert "'max_step' is not a TrainConfig field" in capsys.readouterr().err
