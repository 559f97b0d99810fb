"""Every `alignkit ...` command line in the ```bash blocks of README.md and docs/*.md runs as written.

Placeholders (PATH, BASE, SFT, A, B, ...) become a tiny testbed model; the files a line names (pairs.jsonl,
prompts.txt, lex.tsv, run.yaml, ...) are written first; commands that would run for minutes get the tiny-setting
flags of :data:`TINY` appended (later flags win, so the documented flags are all still parsed and used). A line
that cannot run as a standalone command is listed in :data:`NOT_RUN` with the reason. The fast test checks that
every documented line is run or listed; the slow one runs them all.
"""

from __future__ import annotations

import json
import pathlib
import re
import shlex
import shutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: flags appended to documented commands that would otherwise run for minutes: (command words) -> (flags, reason)
TINY: dict[tuple[str, ...], tuple[list[str], str]] = {
    ("arena",): (["--objectives", "sft,dpo", "--sweep-betas", "", "--steps", "2", "--batch-size", "4",
                  "--train-prompts", "16", "--eval-prompts", "4", "--samples", "2", "--pretrain-steps", "5",
                  "--cache-dir", "{cache}", "--no-progress"],
                 "the default arena trains 9 runs of 100 steps on a base model pretrained for ~100 s"),
    ("eval",): (["--pretrain-steps", "5", "--cache-dir", "{cache}", "--eval-prompts", "4", "--samples", "1",
                 "--no-progress"], "300 prompts x 4 samples against the ~100 s default base model"),
    ("safety-bench",): (["--methods", "sft", "--ratios", "0", "--steps", "2", "--align-steps", "2", "--n-eval", "4",
                         "--pretrain-steps", "5", "--cache-dir", "{cache}"],
                        "3 methods x 4 ratios x 80 steps after a 200-step base model"),
    ("train",): (["--max-steps", "2", "--batch-size", "2", "--no-progress", "--no-tensorboard",
                  "--cache-dir", "{cache}"], "documented runs train for hundreds of steps"),
    ("recipe", "run"): (["--set", "max_steps=2", "--set", "batch_size=2", "--set", "tensorboard=false",
                         "--set", "cache_dir={cache}", "--no-progress"], "every stage trains for epochs"),
    ("generate",): (["--max-new-tokens", "6"], "64 new tokens per sample (darwin: per state and mutant)"),
}  # fmt: skip

#: documented lines that are not standalone commands
NOT_RUN: dict[str, str] = {
    "alignkit train ... --resume": "'...' stands for the flags of the run being resumed; resuming is tested in "
    "tests/train/test_train.py",
    "alignkit train ... --overwrite": "'...' stands for a run's flags; the output-folder rules are tested in "
    "tests/train/test_output_safety.py",
    "alignkit embed-train --objective clip --model ENCODER --data pairs.jsonl --output runs/emb": "needs an encoder "
    "folder and anchor/positive rows; the CLI is run end to end in tests/embedding/test_embed_train.py",
    "alignkit train --help": "prints the help and exits; every flag's help is checked in tests/train/test_config_cli.py",
}

#: placeholders of the docs, all replaced by one tiny testbed model folder
MODEL_PLACEHOLDERS = {"PATH", "DPO", "SFT", "BASE", "M", "A", "B", "ZERO_SHOT", "FINETUNED", "SUB1", "SUB2",
                      "SUB3", "./my-model", "STUDENT", "TEACHER"}  # fmt: skip


def documented_commands() -> list[tuple[str, str]]:
    """``(file, command)`` for every ``alignkit`` command in a ```bash / ```sh block (continuations joined,
    ``&&`` chains split, comments kept out), in document order."""
    out = []
    for doc in DOCS:
        for block in re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", doc.read_text(), re.S):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                for part in line.split("&&"):
                    words = shlex.split(part, comments=True)
                    if "|" in words:  # `alignkit list --json | python ...`: the alignkit part is what we run
                        words = words[: words.index("|")]
                    if words and words[0] == "alignkit":
                        out.append((doc.name, " ".join(shlex.quote(w) for w in words)))
    return out


def tiny_flags(words: list[str]) -> tuple[list[str], str] | None:
    for key, value in TINY.items():
        if tuple(words[1 : 1 + len(key)]) == key:
            return value
    return None


def test_every_documented_command_is_run_or_listed():
    cmds = documented_commands()
    assert len(cmds) >= 30, "the docs' command lines were not found"
    lines = {c for _, c in cmds}
    assert set(NOT_RUN) <= lines, f"stale NOT_RUN entries: {set(NOT_RUN) - lines}"
    from alignkit.cli.main import build_parser

    parser = build_parser()
    used = set()
    for _, cmd in cmds:
        if cmd in NOT_RUN:
            continue
        words = shlex.split(cmd)
        tiny = tiny_flags(words)
        if tiny is not None:
            used.add(tuple(words[1 : 1 + len(next(k for k in TINY if TINY[k] is tiny))]))
        args = parser.parse_args(words[1:] + (tiny[0] if tiny else []))  # every line parses as written
        assert args.func is not None, cmd
    assert used == set(TINY), f"TINY entries no documented command uses: {set(TINY) - used}"


def _write_inputs(cwd: pathlib.Path, model: pathlib.Path) -> None:
    pairs = [{"prompt": f"Q{i}: how was the play?", "chosen": " A lovely, happy play.", "rejected": " Awful."}
             for i in range(8)]  # fmt: skip
    (cwd / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in pairs))
    sft = [{"prompt": f"Q{i}: how was the play?", "completion": " A lovely play."} for i in range(8)]
    (cwd / "sft.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sft))
    (cwd / "p.txt").write_text("O, my lord,\nGood morrow\n")
    (cwd / "prompts.txt").write_text("O, my lord,\n")
    (cwd / "lex.tsv").write_text("source\ttarget\tprob\n5\t6\t0.5\n5\t7\t0.5\n")
    (cwd / "run.yaml").write_text(
        f"objective: dpo\nmodel: {model}\ndata: pairs.jsonl\noutput_dir: runs/from_yaml\n"
        "hyper_parameters: {beta: 0.1}\n"
    )


@pytest.mark.slow
def test_documented_commands_run(tmp_path, monkeypatch, capsys):
    from alignkit.cli.main import main
    from alignkit.testbed import get_base_model, get_task

    cache = tmp_path / "cache"
    monkeypatch.setenv("ALIGNKIT_CACHE", str(cache))
    base = get_base_model("sentiment", get_task("sentiment").base_config(pretrain_steps=5), cache_dir=cache,
                          progress=False)  # fmt: skip
    cwd = tmp_path / "work"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    _write_inputs(cwd, base.path)
    ran, listed, seen = 0, 0, set()
    cmds = documented_commands()
    for doc, cmd in cmds:
        if cmd in NOT_RUN:
            listed += 1
            continue
        if cmd in seen:  # the same line in two files runs once
            ran += 1
            continue
        seen.add(cmd)
        words = [str(base.path) if w in MODEL_PLACEHOLDERS else w for w in shlex.split(cmd)]
        repo = ("src/", "shared/")  # docs run from the repo root
        words = [str(ROOT / w) if w.startswith(repo) else w for w in words]
        external = [w for w in words if w.startswith(str(ROOT / "shared")) and not pathlib.Path(w).exists()]
        if external:  # authors' data are not redistributed (docs/scaling.md); run where a checkout has them
            listed += 1
            continue
        tiny = tiny_flags(words)
        argv = words[1:] + [f.format(cache=cache) for f in (tiny[0] if tiny else [])]
        if (
            words[1] == "train" and "--output" in words
        ):  # two docs show runs into the same folder: each is its own
            shutil.rmtree(cwd / words[words.index("--output") + 1], ignore_errors=True)  # run (never mixed)
        rc = main(argv)
        captured = capsys.readouterr()
        assert rc == 0, f"{doc}: `{cmd}` failed:\n{captured.err[-2000:]}"
        ran += 1
    assert ran + listed == len(cmds)
    assert (cwd / "OUT" / "merge.json").is_file() and (cwd / "runs" / "dpo" / "config.yaml").is_file()
    assert json.loads((cwd / "arena" / "results.json").read_text())["complete"] is True
    assert (cwd / "safety-bench" / "results.json").is_file()
