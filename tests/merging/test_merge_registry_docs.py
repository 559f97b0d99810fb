"""Every merge method and online-merging optimizer is registered with its paper, a Formula block and every
hyper-parameter documented (the objectives' documentation rule, applied to these kinds)."""

from __future__ import annotations

import re

import pytest

import alignkit as ak

COMPONENTS = [
    c
    for c in ak.list_components(kind="merge") + ak.list_components(kind="optimizer")
    if c.fn.__module__.startswith("alignkit.merging")
]
EXPECTED = {
    "task_arithmetic",
    "ties",
    "dare",
    "dare_ties",
    "wise_ft",
    "disperse_then_merge",
    "self_positioning",
}


def test_all_registered():
    assert EXPECTED <= {c.name for c in ak.list_components(kind="merge")}
    assert {"ondare", "onties"} <= {c.name for c in ak.list_components(kind="optimizer")}
    assert ak.get("dare_linear") is ak.get("dare")


@pytest.mark.parametrize("c", COMPONENTS, ids=[c.name for c in COMPONENTS])
def test_documentation(c):
    doc = " ".join(c.doc.split())
    assert re.fullmatch(r"\d{4}\.\d{4,5}", c.arxiv)
    assert doc.startswith(c.paper.split(":")[0]) and f"arXiv:{c.arxiv}" in doc
    assert c.formula.strip()
    hp = doc.split("Hyper-parameters:")[1]
    for name in c.defaults:
        assert f"{name}:" in hp, f"hyper-parameter {name} undocumented"
    assert "Source:" in doc
