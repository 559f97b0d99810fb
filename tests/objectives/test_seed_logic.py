"""The logic compiler (arXiv:2412.17696): compiled formulas reproduce DPO, CPO, SimPO and ORPO's odds-ratio
term exactly; entailment orders the losses; `alignkit explain` shows the formula."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from helpers import preference_batch, token_inputs

import alignkit as ak
from alignkit.cli.main import main
from alignkit.objectives.preference.logic import (
    TRUE,
    L,
    W,
    compile_loss,
    entails,
    formula_of,
    semantic_loss,
    worlds,
)

D = torch.float64


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reproduces_known_losses_exactly(seed):
    b = preference_batch(token_inputs(b=5, t=7, seed=seed))
    for beta in (0.1, 1.3):
        assert torch.allclose(
            ak.get("logic_dpo")(b, beta=beta).losses, ak.get("dpo")(b, beta=beta).losses, atol=1e-12
        )
        assert torch.allclose(
            ak.get("logic_cpo")(b, beta=beta).losses,
            ak.get("cpo")(b, beta=beta, cpo_alpha=0.0).losses,
            atol=1e-12,
        )
        for gamma in (0.0, 0.8):
            assert torch.allclose(
                ak.get("logic_simpo")(b, beta=beta, gamma=gamma).losses,
                ak.get("simpo")(b, beta=beta, gamma=gamma).losses,
                atol=1e-12,
            )
    orpo = ak.get("orpo")(b, beta=0.25).loss
    nll = ak.get("sft")(b).loss
    assert orpo.item() == pytest.approx(
        nll.item() + 0.25 * ak.get("logic_orpo_odds")(b).loss.item(), abs=1e-12
    )


def test_unlikelihood_by_hand():
    b = ak.PreferenceBatch.from_sequence_logps(
        torch.tensor([math.log(0.5)], dtype=D), torch.tensor([math.log(0.25)], dtype=D)
    )
    assert ak.get("logic_unlikelihood")(b).loss.item() == pytest.approx(
        -math.log(0.5) - math.log(0.75), abs=1e-12
    )


def _all_formulas():
    """Every boolean function of (W, L) as a DNF formula, with its truth table."""
    ws = worlds(["L", "W"])
    out = []
    for table in itertools.product([False, True], repeat=4):
        terms = [
            (W if w["W"] else ~W) & (L if w["L"] else ~L) for w, keep in zip(ws, table, strict=True) if keep
        ]
        if not terms:
            continue
        f = terms[0]
        for t in terms[1:]:
            f = f | t
        out.append(f)
    return out


def test_entailment_orders_semantic_losses():
    g = torch.Generator().manual_seed(0)
    logits = {"W": torch.randn(6, generator=g, dtype=D) * 2, "L": torch.randn(6, generator=g, dtype=D) * 2}
    fs = _all_formulas()
    assert len(fs) == 15
    checked = 0
    for p, q in itertools.product(fs, fs):
        if entails(p, q):
            assert (semantic_loss(p, logits) >= semantic_loss(q, logits) - 1e-12).all()
            checked += 1
    assert checked > 15
    assert semantic_loss(W | ~W, logits).abs().max() < 1e-12  # a tautology costs nothing


def test_conditioning_by_hand_and_errors():
    lw, ll = torch.tensor([0.3], dtype=D), torch.tensor([-1.1], dtype=D)
    # P = W & ~L given W ^ L is sigma(lw - ll)
    sl = semantic_loss(W & ~L, {"W": lw, "L": ll}, W ^ L)
    assert sl.item() == pytest.approx(-math.log(1 / (1 + math.exp(-(0.3 + 1.1)))), abs=1e-12)
    # implication: P(W -> L) = 1 - P(W)(1 - P(L))
    pw, pl = 1 / (1 + math.exp(-0.3)), 1 / (1 + math.exp(1.1))
    assert semantic_loss(W >> L, {"W": lw, "L": ll}).item() == pytest.approx(
        -math.log(1 - pw * (1 - pl)), abs=1e-12
    )
    with pytest.raises(ValueError, match="unsatisfiable"):
        semantic_loss(W & ~W, {"W": lw})
    with pytest.raises(ValueError, match="atom"):
        semantic_loss(W & L, {"W": lw})
    with pytest.raises(ValueError, match="semantics"):
        compile_loss(W, semantics="magic")
    assert entails(W & ~L, W ^ L) and not entails(W, W & L) and entails(W, TRUE)


def test_a_new_compiled_loss_trains_and_explain_shows_formulas(capsys):
    mine = compile_loss(W | ~L, W ^ L, semantics="reference", name="")
    b = preference_batch(token_inputs(b=3, t=4, seed=9))
    out = mine(b, beta=0.5)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert "P = W | ~L" in mine.formula and "C = W ^ L" in mine.formula
    assert main(["explain", "logic_dpo"]) == 0
    text = capsys.readouterr().out
    assert "P = W & ~L" in text and "C = W ^ L" in text and "2412.17696" in text
    assert "W & ~L" in formula_of("dpo") and "W ^ L" in formula_of("simpo")
    with pytest.raises(KeyError):
        formula_of("kto")
