"""Every registered component says how it was verified, honestly; no docstring calls itself a placeholder; every
hyper-parameter default is documented; titles and kinds as the issue (#14) asks."""

from __future__ import annotations

import json
import pathlib
import re

import pytest

import alignkit as ak
from alignkit.cli.main import main
from alignkit.registry import _docstring_section
from alignkit.spec import VERIFICATION_LEVELS

ROOT = pathlib.Path(__file__).resolve().parents[1]
COMPONENTS = ak.list_components()


@pytest.mark.parametrize("c", COMPONENTS, ids=[c.name for c in COMPONENTS])
def test_every_component_has_a_verification_level_and_documented_defaults(c):
    assert c.verification in VERIFICATION_LEVELS, f"{c.name}: verification={c.verification!r}"
    doc = c.doc
    assert "placeholder" not in doc.lower(), f"{c.name}: the docstring calls something a placeholder"
    assert c.formula.strip(), f"{c.name}: no Formula: block"
    if c.arxiv:
        assert f"arXiv:{c.arxiv}" in " ".join(doc.split()), (
            f"{c.name}: the docstring must cite arXiv:{c.arxiv}"
        )
    else:  # a paper without an arXiv id says so
        assert "no arXiv id" in doc, f"{c.name}: no arXiv id and the docstring does not say so"
    hp = _docstring_section(doc, "Hyper-parameters")
    for name in c.defaults:
        assert name in hp or name in doc.split("Shared modifiers")[-1], f"{c.name}: {name} undocumented"
    if c.verification == "reconstruction":  # a reconstruction says what is guessed or where it came from
        assert re.search(
            r"UNVERIFIED|[Uu]nverified|not verified|guess|[Rr]econstruct|abstract|not re-read|ours|"
            r"not (?:found|read|available|checked)|stand-in|catalog|summar|this library's",
            doc,
        ), c.name


def test_levels_match_the_tests_that_back_them():
    """trl-parity only where tests/objectives/test_trl_parity.py calls TRL on it; library-parity only where a test
    that names the component runs a well-kept library's code on it; official-code-parity only where a test that
    names it restates the authors' code."""
    tests = {p: p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("test_*.py")}
    trl_tests = [t for t in tests.values() if re.search(r"\btrl|TRL", t)]
    for c in COMPONENTS:
        names = [c.name, *c.aliases]
        if c.verification == "trl-parity":  # a test that calls TRL names it
            assert any(re.search(rf'"{re.escape(n)}"', t) for t in trl_tests for n in names), c.name
    libraries = re.compile(
        r"\b(peft|mergekit|pytorch_metric_learning|open_clip|timm|JsdCrossEntropy|ctc_loss|SigLipLoss|ClipLoss)\b"
    )
    for c in COMPONENTS:
        if c.verification not in ("library-parity", "official-code-parity"):
            continue
        names = [c.name, *c.aliases]
        backing = [t for t in tests.values() if any(re.search(rf"\b{re.escape(n)}\b", t) for n in names)]
        assert backing, f"{c.name}: {c.verification} but no test names it"
        if c.verification == "library-parity":  # a test that names it also runs the library's code
            assert any(libraries.search(t) for t in backing), f"{c.name}: no test runs a library on it"
        else:  # a test that names it restates the authors' code
            assert any(re.search(r"[Oo]fficial|authors'", t) for t in backing), (
                f"{c.name}: no test restates official code"
            )


def test_cli_list_json_carries_verification_for_every_entry(capsys):
    assert main(["list", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert len(entries) == len(COMPONENTS)
    assert all(e["verification"] in VERIFICATION_LEVELS for e in entries)


def test_titles_alias_titles_kinds_recipes_and_metric():
    # the title the paper carries now; the other title finds it too
    assert ak.get("lexical_shortlist").paper.startswith(
        "The Highs and Lows of Simple Lexical Domain Adaptation"
    )
    assert [c.name for c in ak.list_components(paper="decoding time lexical domain")] == ["lexical_shortlist"]
    assert [c.name for c in ak.list_components(paper="with Representation Engineering")] == [
        "steering_tradeoff"
    ]
    assert [c.name for c in ak.list_components(paper="2401.16332")] == ["steering_tradeoff"]
    # safety defences are kind "defence"; the recipes and the idealized ranking accuracy are registered
    assert {c.name for c in ak.list_components(kind="defence")} == {
        "alignguard_lora",
        "alps",
        "booster",
        "gradient_collision",
        "lisa",
    }
    recipes = {c.name: c for c in ak.list_components(kind="recipe")}
    assert set(recipes) == {"lion", "baichuan", "guardrail_ipo", "guardrail_kto"}
    assert recipes["lion"].arxiv == "2407.06542" and "dpo" in recipes["lion"].formula
    m = ak.get("idealized_ranking_accuracy")
    assert m.kind == "metric" and m.arxiv == "2405.19534"
    assert m([-1.0], [-2.0], [0.5], 0.1).tolist() == [1.0]  # ref prefers y_w, alpha = 1/2: idealized keeps it
    # TraceAlign's BCI is registered as a reconstruction (the paper's text was not read; see its docstring)
    bci = ak.get("belief_conflict_index")
    assert bci.verification == "reconstruction" and bci.arxiv == "2508.02063"
