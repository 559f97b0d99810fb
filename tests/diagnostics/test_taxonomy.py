"""The unified-view survey's taxonomy (arXiv:2409.02795) as registry tags, and the seed components' docs."""

from __future__ import annotations

import json
import re

import pytest

import alignkit as ak
from alignkit.cli.main import main
from alignkit.diagnostics.taxonomy import AXES, OPTIONAL_AXES, taxonomy_of

SEED_ARXIV = {
    "2311.04072",
    "2502.07154",
    "2411.02083",
    "2406.10209",
    "2405.15230",
    "2410.11817",
    "2302.08242",
    "2402.00742",
    "2312.16682",
    "2502.03512",
    "2402.08265",
    "2505.05465",
    "2412.17696",
    "2410.13828",
    "2409.02795",
}
SEED = [c for c in ak.list_components() if c.arxiv in SEED_ARXIV]


def test_every_seed_paper_is_registered():
    assert {c.arxiv for c in SEED} == SEED_ARXIV


@pytest.mark.parametrize("c", SEED, ids=[c.name for c in SEED])
def test_seed_components_carry_valid_taxonomy_tags(c):
    tax = taxonomy_of(c)  # raises on an unknown axis or value
    if c.name != "unified_view_taxonomy":
        assert "algorithm" in tax and "feedback" in tax, c.tags


@pytest.mark.parametrize("c", [c for c in SEED if c.kind != "objective"], ids=lambda c: c.name)
def test_non_objective_documentation(c):
    doc = " ".join(c.doc.split())
    assert f"arXiv:{c.arxiv}" in doc and c.paper.split(":")[0] in doc
    assert c.formula.strip()
    hp = doc.split("Hyper-parameters:")[1]
    for name in c.defaults:
        assert name in hp, name


def test_every_objective_is_placed_on_every_axis():
    # families that are not preference learning (embeddings, classification, distillation) carry modality: tags
    not_preference = {"representation", "classification", "distillation", "adaptation", "vision"}
    for o in [o for o in ak.list_objectives() if o.family not in not_preference]:
        placed = taxonomy_of(o)
        assert set(AXES) <= set(placed) <= set(AXES) | set(OPTIONAL_AXES), (
            f"{o.name} lacks a taxonomy axis: has {placed}"
        )
    assert taxonomy_of(ak.get("dpo")) == {
        "algorithm": ["pairwise"],
        "feedback": ["preference"],
        "data": ["off-policy"],
    }
    assert taxonomy_of(ak.get("kto"))["feedback"] == ["binary"]


def test_list_filters_by_taxonomy_tag(capsys):
    assert main(["list", "--json", "--tag", "feedback:reward"]) == 0
    names = {e["name"] for e in json.loads(capsys.readouterr().out)}
    assert {"task_reward", "lsc_reward"} <= names and "dpo" not in names
    table = ak.get("unified_view_taxonomy")(kind="objective")
    assert "figa" in table["feedback"]["revision"] and "irepo" in table["feedback"]["soft-preference"]
    assert all(re.fullmatch(r"[a-z_]+", n) for n in table["algorithm"]["pairwise"])
