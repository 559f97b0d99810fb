"""A TRL DPO config (TrlParser names) runs with `alignkit train --config`, or fails naming the field."""

import json

import pytest
import yaml

from alignkit.cli.main import main as cli


@pytest.fixture
def pairs(tmp_path):
    f = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"q{i % 3}:", "chosen": " good", "rejected": " bad"} for i in range(8)]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def _trl_yaml(tmp_path, model_dir, pairs, **extra):
    cfg = {
        "model_name_or_path": str(model_dir),
        "dataset_name": str(pairs),
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 2,
        "learning_rate": "1e-3",  # PyYAML reads 1e-3 as a string; coerced
        "max_steps": 2,
        "output_dir": str(tmp_path / "run"),
        "loss_type": ["sigmoid", "sft"],
        "loss_weights": [1.0, 0.5],
        "beta": 0.2,
        "bf16": False,
        "report_to": "none",
        "use_peft": True,
        "lora_r": 4,
        "lora_alpha": 8,
        "lora_target_modules": "all-linear",
        "logging_steps": 1,
        "push_to_hub": False,
        **extra,
    }
    path = tmp_path / "dpo.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_trl_dpo_yaml_runs_unchanged(model_dir, pairs, tmp_path):
    path = _trl_yaml(tmp_path, model_dir, pairs)
    assert cli(["train", "--config", str(path), "--no-progress"]) == 0
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["batch_size"] == 2 and saved["grad_accum"] == 2 and saved["lora"] is True
    assert saved["hyper_parameters"] == {"beta": 0.2} and saved["report_to"] == ["none"]
    assert not (tmp_path / "run" / "tensorboard").exists()
    hist = [json.loads(x) for x in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert len(hist) == 2 and "loss/dpo" in hist[0] and "loss/sft" in hist[0]


def test_an_unsupported_trl_field_is_named(model_dir, pairs, tmp_path, capsys):
    path = _trl_yaml(tmp_path, model_dir, pairs, report_to=["mlflow"])
    assert cli(["train", "--config", str(path)]) == 2
    assert "report_to ['mlflow'] is not supported" in capsys.readouterr().err
    path = _trl_yaml(tmp_path, model_dir, pairs, dataset_text_field="text", foo=1)
    assert cli(["train", "--config", str(path)]) == 2
    assert "unknown config field 'dataset_text_field'" in capsys.readouterr().err


def test_trl_flag_names_in_both_forms(model_dir, pairs, tmp_path):
    rc = cli([
        "train", "--model_name_or_path", str(model_dir), "--dataset-name", str(pairs), "--per_device_train_batch_size",
        "2", "--max-steps", "1", "--loss_type", "ipo", "--output_dir", str(tmp_path / "r2"), "--no-progress",
    ])  # fmt: skip
    assert rc == 0
    saved = yaml.safe_load((tmp_path / "r2" / "config.yaml").read_text())
    assert saved["objective"] == "ipo" and saved["batch_size"] == 2
