"""`alignkit list` (compact view, --wide, derived tags, unknown filters, | head), the one help formatter, and
`alignkit cache`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import alignkit as ak
from alignkit.cli.catalog import compact_table
from alignkit.cli.main import HelpFormatter, build_parser, main
from alignkit.registry import list_components

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}


def test_compact_list_never_cuts_a_name_at_80_columns():
    items = list_components()
    text = compact_table(items, width=80)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), max(map(len, lines))
    for c, line in zip(items, lines[1:], strict=False):
        assert line.split()[0] == c.name and line.split()[1] == c.kind
    assert lines[-1] == f"({len(items)} components)"
    # piped (no width): nothing is shortened
    assert "…" not in compact_table(items, width=None)


def test_verification_column_shows_dash_when_unset(capsys):
    assert main(["list", "--kind", "merge"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "kind", "family", "verification"]
    for c in ak.list_components(kind="merge"):
        row = next(line for line in out if line.split()[0] == c.name)
        assert row.split()[-1] == (c.verification or "-")


def test_wide_table_keeps_names_whole(capsys):
    assert main(["list", "--wide", "--kind", "data_rule"]) == 0
    out = capsys.readouterr().out
    assert "fine_grained_alignment_enhancement" in out and "arXiv" in out


def test_tags_are_derived_from_metadata():
    free = {c.name for c in ak.list_objectives(tag="reference-free")}
    assert {"logic_cpo", "logic_simpo", "logic_orpo_odds", "logic_unlikelihood", "simpo"} <= free
    assert free == {o.name for o in ak.list_objectives() if not o.needs_reference}
    ref = {c.name for c in ak.list_objectives(tag="reference")}
    assert {"trra", "lsc_reward", "dpo"} <= ref and not ref & free
    unpaired = {c.name for c in ak.list_objectives(tag="unpaired")}
    assert unpaired == {o.name for o in ak.list_objectives() if o.batch_type is ak.UnpairedBatch}
    assert "paired" not in ak.get("kto").derived_tags and "paired" in ak.get("dpo").derived_tags
    # hand-written tags that the metadata does not decide are kept
    assert "feedback:preference" in ak.get("dpo").derived_tags
    assert "supervised" in ak.get("sft").derived_tags


def test_unknown_tag_or_family_is_an_error_listing_the_known_ones(capsys):
    assert main(["list", "--tag", "refrence-free"]) == 2
    err = capsys.readouterr().err
    assert "no component has tag 'refrence-free'" in err and "did you mean 'reference-free'" in err
    assert "known tags:" in err and "unpaired" in err
    assert main(["list", "--family", "pref"]) == 2
    err = capsys.readouterr().err
    assert "no component has family 'pref'" in err and "preference" in err


def test_list_json_uses_derived_tags(capsys):
    assert main(["list", "--json", "--tag", "reference-free", "--kind", "objective"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert "logic_cpo" in {r["name"] for r in rows}
    assert all("reference-free" in r["tags"] for r in rows)


@pytest.mark.parametrize("flags", [["--markdown"], [], ["--wide"], ["--json"]])
def test_list_into_head_ends_quietly(flags):
    cmd = f"{sys.executable} -m alignkit.cli.main list {' '.join(flags)} | head -n 2"
    proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert len(proc.stdout.splitlines()) == 2


def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_every_subcommand_help_shows_defaults():
    parser = build_parser()
    subs = dict(_subparsers(parser))
    assert {"arena", "eval", "generate", "train", "merge", "safety-bench", "recipe", "list", "cache"} <= set(
        subs
    )
    for name, sub in subs.items():
        assert sub.formatter_class is HelpFormatter, name
        text = sub.format_help()
        assert "%%" not in text and "%(default)" not in text, name
        for action in sub._actions:
            shown = HelpFormatter.default_text(action)
            if shown:
                assert " ".join(shown.split()) in " ".join(text.split()), (name, action.dest)
    arena = " ".join(subs["arena"].format_help().split())
    assert "--learning-rate LEARNING_RATE AdamW learning rate of every run (default: 0.0001)" in arena
    assert "(default: sentiment)" in arena
    gen = " ".join(subs["generate"].format_help().split())
    assert "--max-new-tokens MAX_NEW_TOKENS tokens sampled per completion (default: 64)" in gen
    bench = " ".join(subs["safety-bench"].format_help().split())
    assert "(default: 0.0 0.05 0.1 0.2)" in bench and "(default: safety-bench)" in bench
    assert "95%" in " ".join(subs["eval"].format_help().split())


def test_one_meaning_per_flag_name():
    """A flag name means one thing in every command: --prompts is a file (generate), --eval-prompts a count."""
    parser = build_parser()
    subs = dict(_subparsers(parser))
    kinds: dict[str, set] = {}
    for _, sub in subs.items():
        for action in sub._actions:
            for flag in action.option_strings:
                kinds.setdefault(flag, set()).add(action.type.__name__ if action.type else "str")
    assert kinds["--prompts"] == {"str"}
    assert kinds["--eval-prompts"] == {"int"}
    assert kinds["--seed"] == {"int"} and kinds["--output"] == {"str"}


def test_cache_root_order(monkeypatch, tmp_path):
    from alignkit.cache import cache_root

    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_root() == tmp_path / "a"
    monkeypatch.delenv("ALIGNKIT_CACHE")
    assert cache_root() == tmp_path / "x" / "alignkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "alignkit"
    from alignkit.testbed import cache_root as testbed_root

    assert testbed_root() == cache_root()


def test_cache_command_shows_size_and_clears(monkeypatch, tmp_path, capsys):
    root = tmp_path / "c"
    (root / "testbed").mkdir(parents=True)
    (root / "testbed" / "x.bin").write_bytes(b"0" * 2048)
    monkeypatch.setenv("ALIGNKIT_CACHE", str(root))
    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert str(root) in out and "$ALIGNKIT_CACHE" in out and "2.0 KiB" in out and "testbed/" in out
    assert main(["cache", "clear"]) == 0
    assert "removed" in capsys.readouterr().out and not root.exists()
    assert main(["cache"]) == 0
    assert "not created yet" in capsys.readouterr().out
