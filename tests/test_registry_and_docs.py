"""The registry's contract, every objective's documentation, the README catalogue and the list/explain CLI."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys

import pytest

import alignkit as ak
from alignkit.cli.catalog import snippet
from alignkit.cli.main import main

ROOT = pathlib.Path(__file__).resolve().parents[1]
OBJECTIVES = ak.list_objectives()


def test_public_contract():
    obj = ak.get("dpo")
    assert ak.get("sigmoid") is obj and ak.get("cdpo") is obj
    for attr in (
        "name",
        "aliases",
        "family",
        "paper",
        "arxiv",
        "formula",
        "defaults",
        "needs_reference",
        "aggregation",
    ):
        assert hasattr(obj, attr), attr
    assert obj.defaults["beta"] == 0.1 and obj.needs_reference and obj.aggregation == "sum"
    prefs = ak.list_objectives(family="preference")
    assert obj in prefs and all(o.family == "preference" for o in prefs)
    assert ak.get("simpo").needs_reference is False and ak.get("simpo").aggregation == "mean"


def test_every_trl_loss_type_is_an_alias():
    trl_types = [
        "sigmoid",
        "hinge",
        "ipo",
        "exo_pair",
        "nca_pair",
        "robust",
        "bco_pair",
        "sppo_hard",
        "aot",
        "aot_unpaired",
        "apo_zero",
        "apo_down",
        "discopop",
        "sft",
        "sigmoid_norm",
    ]
    for t in trl_types + ["kto", "apo_zero_unpaired", "bco", "cpo", "simpo", "alphapo", "orpo"]:
        assert isinstance(ak.get(t), ak.Objective), t


@pytest.mark.parametrize("obj", OBJECTIVES, ids=[o.name for o in OBJECTIVES])
def test_objective_documentation(obj):
    doc = " ".join(obj.doc.split())
    assert obj.arxiv and re.fullmatch(r"\d{4}\.\d{4,5}", obj.arxiv), obj.arxiv
    assert f"arXiv:{obj.arxiv}" in doc, "docstring must cite the arXiv id"
    assert obj.paper.split(":")[0] in doc, "docstring must name the paper"
    assert obj.formula.strip(), "docstring needs a Formula: block"
    hp_block = doc.split("Hyper-parameters:")[1] if "Hyper-parameters:" in doc else ""
    for name in obj.defaults:
        assert name in hp_block or name in doc.split("Shared modifiers")[-1], (
            f"hyper-parameter {name} undocumented"
        )


@pytest.mark.parametrize("obj", OBJECTIVES, ids=[o.name for o in OBJECTIVES])
def test_explain_snippet_runs(obj):
    """The runnable example `alignkit explain` prints really runs."""
    scope: dict = {}
    exec(snippet(obj).replace("print(", "_ = ("), scope)  # noqa: S102 - our own generated code
    assert scope["out"].loss.requires_grad is False or scope["out"].loss.grad_fn is not None


def test_readme_catalogue_matches_registry():
    from tools.update_readme import render

    readme = (ROOT / "README.md").read_text()
    assert render(readme) == readme, "README catalogue is stale: run `python tools/update_readme.py`"
    for o in OBJECTIVES:
        assert f"| `{o.name}` |" in readme


def test_cli_list_json(capsys):
    assert main(["list", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    names = {e["name"] for e in entries}
    assert {o.name for o in OBJECTIVES} <= names
    for e in entries:
        assert {
            "name",
            "aliases",
            "kind",
            "family",
            "paper",
            "arxiv",
            "defaults",
            "needs_reference",
            "aggregation",
        } <= set(e)
    assert main(["list", "--json", "--kind", "objective", "--family", "reward"]) == 0
    only = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in only] == ["bradley_terry"]


def test_cli_list_table_and_explain(capsys):
    assert main(["list", "--tag", "reference-free"]) == 0
    out = capsys.readouterr().out
    assert "simpo" in out and "dpo " not in out
    assert main(["explain", "sigmoid"]) == 0
    out = capsys.readouterr().out
    assert "2305.18290" in out and "log sigma(beta * u)" in out and "beta = 0.1" in out
    assert "import torch, alignkit as ak" in out


def test_cli_unknown_name_is_one_clear_line():
    proc = subprocess.run(
        [sys.executable, "-m", "alignkit.cli.main", "explain", "dpoo"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "no component named 'dpoo'" in proc.stderr and "did you mean 'dpo'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_duplicate_registration_is_refused():
    from alignkit.registry import register_objective

    with pytest.raises(ValueError, match="already registered"):

        @register_objective(name="my_loss", aliases=("sigmoid",), paper="x", arxiv="0000.00000")
        def my_loss(batch, *, beta: float = 0.1):  # pragma: no cover - never called
            return batch
