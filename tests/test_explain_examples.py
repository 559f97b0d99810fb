"""`alignkit explain` for every component: the printed Python example runs as printed, the command line parses
(and, for generate/merge, runs on tiny models), the formula is printed once, and no internal notes leak."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex

import pytest

import alignkit as ak
from alignkit.cli._examples import example
from alignkit.cli.catalog import explain_text
from alignkit.cli.main import build_parser, main
from alignkit.registry import list_components

COMPONENTS = list_components()
IDS = [c.name for c in COMPONENTS]


@pytest.mark.parametrize("c", COMPONENTS, ids=IDS)
def test_example_runs_as_printed(c):
    ex = example(c)
    text = explain_text(c)
    assert ex.python.rstrip() in text, "explain must print the example verbatim (no indentation)"
    assert "import" in ex.python.splitlines()[0]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(ex.python, f"<example {c.name}>", "exec"), {})  # noqa: S102 - our own example code
    assert buf.getvalue().strip(), "the example prints its result"


@pytest.mark.parametrize("c", COMPONENTS, ids=IDS)
def test_explain_text_is_for_users(c):
    text = explain_text(c)
    assert f"verification: {c.verification or '-'}" in text
    assert "Hyper-parameters (defaults):" in text
    first = (c.formula or "(see the description)").splitlines()[0].strip()
    assert text.count(first) == 1, "the formula is printed once"
    assert not re.search(r"(?i:catalog)|UNVERIFIED|\(#\d+|entry #\d+", text), re.findall(
        r".{40}(?:(?i:catalog)|UNVERIFIED|#\d+).{20}", text
    )


def _argv(cli: str, folders: dict[str, str]) -> list[str]:
    return [folders.get(a, a) for a in shlex.split(cli)]


def test_every_command_line_parses():
    parser = build_parser()
    lines = [(c.name, example(c).cli) for c in COMPONENTS if example(c).cli]
    assert {n for n, _ in lines} >= {c.name for c in COMPONENTS if c.kind in ("objective", "decoder")}
    for name, cli in lines:
        argv = shlex.split(cli)
        assert argv[0] == "alignkit", cli
        args = parser.parse_args(argv[1:])
        assert args.func is not None, name


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from alignkit.engine.tiny import char_tokenizer, tiny_llama

    root = tmp_path_factory.mktemp("explain-models")
    tok = char_tokenizer()
    folders = {}
    for i, name in enumerate(("MODEL", "SFT", "BASE", "A", "B")):
        d = root / name
        tiny_llama(vocab_size=len(tok), hidden_size=32, seed=i).save_pretrained(d)
        tok.save_pretrained(d)
        folders[name] = str(d)
    folders["merged"] = str(root / "merged")
    rows = [{"prompt": f"q{i}:", "chosen": " yes", "rejected": " no"} for i in range(4)]
    (root / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    folders["DATA.jsonl"] = str(root / "pairs.jsonl")
    folders["runs/dpo"] = str(root / "runs" / "dpo")
    return folders


@pytest.mark.parametrize("name", ["dera", "ties", "dare", "dpo"])
def test_command_lines_run(name, tiny_models, capsys):
    cli = example(ak.get(name)).cli
    argv = _argv(cli, tiny_models)[1:]
    if argv[0] == "generate":
        argv += ["--max-new-tokens", "4"]
    if argv[0] == "train":
        argv += [
            "--max-steps",
            "1",
            "--batch-size",
            "2",
            "--no-progress",
            "--no-tensorboard",
            "--reference",
            "model",
        ]
    assert main(argv) == 0, capsys.readouterr().err
    if argv[0] == "merge":
        from transformers import AutoModelForCausalLM

        AutoModelForCausalLM.from_pretrained(tiny_models["merged"])
