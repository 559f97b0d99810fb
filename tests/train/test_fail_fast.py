"""Fail fast with one line: model paths and hub ids (no network), generate's prompt files, merge's outputs."""

import argparse
import shutil
import time

import pytest

from alignkit.cli.main import main
from alignkit.errors import InputFileError, InputPathError, NoNetworkError, OutputDirError
from alignkit.sources import check_model_source


def test_model_source_checks(model_dir, tmp_path, monkeypatch):
    assert check_model_source(model_dir) == "local"
    assert check_model_source(object()) == "object"
    with pytest.raises(InputPathError, match="--model /nonexistent/model is not a folder \\(no such path\\)"):
        check_model_source("/nonexistent/model")
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(InputPathError, match="a file, not a model folder"):
        check_model_source(tmp_path / "w.txt")
    with pytest.raises(InputPathError, match="holds no saved model"):
        check_model_source(tmp_path, "--ref")
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\xff" * 8 + b"{")
    with pytest.raises(InputFileError, match="broken/model.safetensors is not a readable safetensors file"):
        check_model_source(broken)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NoNetworkError, match="org/some-model: not a local folder.*pass a local folder"):
        check_model_source("org/some-model")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    import alignkit.sources as sources

    monkeypatch.setattr(sources, "hub_reachable", lambda *a, **k: False)
    t = time.time()
    with pytest.raises(NoNetworkError, match="no network: pass a local folder"):
        check_model_source("org/some-model")
    assert time.time() - t < 1


def test_eval_checks_the_model_path_before_building_the_testbed(tmp_path, monkeypatch, capsys):
    import alignkit.testbed.model as tm

    def never(*a, **k):
        raise AssertionError("the testbed was built before the path check")

    monkeypatch.setattr(tm, "get_base_model", never)
    assert main(["eval", "--model", str(tmp_path / "nonexistent"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--model" in err and "nonexistent is not a folder (no such path)" in err and err.count("\n") == 1


def _prompts_args(path):
    return argparse.Namespace(prompt=[], prompts=str(path))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"prompt": 3}\n', r"line 1: field 'prompt' must be a non-empty string; got 3"),
        (b'ok\n{"prompt": null}\n', r"line 2: field 'prompt' must be a non-empty string; got None"),
        (b'{"prompt": ["a"]}\n', r"got \['a'\]"),
        (b'{"prompt": "x\n', r"line 1: not valid JSON \(Unterminated string starting at column 12\)"),
        (b"fine\ncaf\xff\n", r"line 2: not UTF-8 text \(byte 0xff at column 4\)"),
    ],
)
def test_generate_prompt_file_errors_name_file_and_line(tmp_path, body, message):
    from alignkit.cli.generate import read_prompts

    f = tmp_path / "p.txt"
    f.write_bytes(body)
    with pytest.raises(InputFileError, match=message):
        read_prompts(_prompts_args(f))


def test_generate_reads_good_prompt_files(tmp_path):
    from alignkit.cli.generate import read_prompts

    f = tmp_path / "p.txt"
    f.write_text('plain line\n\n{"prompt": "json row"}\n')
    assert read_prompts(_prompts_args(f)) == ["plain line", "json row"]
    f.write_text("\n\n")
    with pytest.raises(ValueError, match="holds no prompts"):
        read_prompts(_prompts_args(f))


def test_merge_does_not_copy_the_run_files_and_refuses_its_input_as_output(model_dir, tmp_path):
    import shutil

    from alignkit.merging.checkpoint import load, save

    run = tmp_path / "run"
    shutil.copytree(model_dir, run)
    for name in ("history.jsonl", "config.yaml", "data_report.json", "alignkit_run.json"):
        (run / name).write_text("{}")
    out = save(dict(load(run)), tmp_path / "merged", like=run)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names
    assert not names & {"history.jsonl", "config.yaml", "data_report.json", "alignkit_run.json"}
    with pytest.raises(OutputDirError, match="is the input model folder"):
        save(dict(load(run)), run, like=run)


def test_merge_cli_refuses_an_input_as_output(model_dir, capsys):
    rc = main(
        [
            "merge",
            "--method",
            "average",
            "--models",
            str(model_dir),
            str(model_dir),
            "--output",
            str(model_dir),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and "is an input" in err and err.count("\n") == 1
