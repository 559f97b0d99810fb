from __future__ import annotations

import json

import pytest

from alignkit.cli.main import main


@pytest.fixture(scope="module")
def saved(tmp_path_factory, aligned, ref, tok):
    root = tmp_path_factory.mktemp("models")
    for name, m in (("aligned", aligned), ("ref", ref)):
        m.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    return root


def _rows(capsys):
    return [json.loads(x) for x in capsys.readouterr().out.splitlines()]


def test_plain_and_dera_endpoint(saved, capsys):
    common = ["--prompt", "hi", "--prompt", "ok", "--max-new-tokens", "4", "--temperature", "0"]
    assert main(["generate", "--model", str(saved / "ref"), *common]) == 0
    plain_ref = _rows(capsys)
    assert [r["prompt"] for r in plain_ref] == ["hi", "ok"] and len(plain_ref[0]["completions"]) == 1
    args = ["generate", "--model", str(saved / "aligned"), "--ref-model", str(saved / "ref")]
    assert main([*args, "--decoder", "dera", "--hp", "lam=0", *common]) == 0
    assert _rows(capsys) == plain_ref


def test_errors_name_the_field(saved, capsys):
    m = ["generate", "--model", str(saved / "aligned"), "--prompt", "x"]
    assert main([*m, "--decoder", "dera", "--hp", "beta=1"]) == 2
    assert "no hyper-parameter 'beta'" in capsys.readouterr().err
    assert main([*m, "--decoder", "dera"]) == 2
    assert "ref_model" in capsys.readouterr().err
    assert main([*m, "--decoder", "dpo"]) == 2
    assert "not a decoder" in capsys.readouterr().err
