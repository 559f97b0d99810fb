"""The logic of direct preference alignment: a boolean formula over preference propositions compiles to its
semantic loss, and known losses (DPO, CPO, SimPO, ORPO's odds-ratio term, NLL + unlikelihood) are such formulas.

    from alignkit.objectives.preference.logic import W, L, compile_loss
    my_loss = compile_loss(W & ~L, condition=W ^ L, semantics="reference")   # == DPO
    out = my_loss(batch, beta=0.1)

Atoms: ``W`` = "the chosen response y_w is acceptable", ``L`` = "the rejected response y_l is acceptable"; each
is true with a probability sigma(logit) that the model defines (see ``SEMANTICS``). The semantic loss of a
formula P under a conditioning constraint C is -log(WMC(P and C) / WMC(C)), with WMC the weighted model count
(the probability that P holds when atoms are independent), computed exactly by enumerating the 2^n worlds.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives._math import clamp_logp, log1mexp, log_odds
from alignkit.objectives.preference._pairwise import pair_terms, preference_metrics
from alignkit.registry import Objective, add
from alignkit.types import LossOutput, PreferenceBatch

PAPER = "Understanding the Logic of Direct Preference Alignment through Logic"
ARXIV = "2412.17696"


# --- formulas ----------------------------------------------------------------------------------------------------
class Formula:
    """A propositional formula. Build with atoms and ``&`` (and), ``|`` (or), ``~`` (not), ``^`` (xor),
    ``>>`` (implies)."""

    def __and__(self, other: Formula) -> Formula:
        return And(self, other)

    def __or__(self, other: Formula) -> Formula:
        return Or(self, other)

    def __invert__(self) -> Formula:
        return Not(self)

    def __xor__(self, other: Formula) -> Formula:
        return Xor(self, other)

    def __rshift__(self, other: Formula) -> Formula:
        return Implies(self, other)

    def atoms(self) -> frozenset[str]:
        raise NotImplementedError

    def holds(self, world: dict[str, bool]) -> bool:
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class Atom(Formula):
    name: str

    def atoms(self) -> frozenset[str]:
        return frozenset({self.name})

    def holds(self, world: dict[str, bool]) -> bool:
        return world[self.name]

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, eq=False)
class Const(Formula):
    value: bool

    def atoms(self) -> frozenset[str]:
        return frozenset()

    def holds(self, world: dict[str, bool]) -> bool:
        return self.value

    def __str__(self) -> str:
        return "true" if self.value else "false"


@dataclass(frozen=True, eq=False)
class Not(Formula):
    arg: Formula

    def atoms(self) -> frozenset[str]:
        return self.arg.atoms()

    def holds(self, world: dict[str, bool]) -> bool:
        return not self.arg.holds(world)

    def __str__(self) -> str:
        return f"~{_wrap(self.arg)}"


@dataclass(frozen=True, eq=False)
class _Binary(Formula):
    left: Formula
    right: Formula
    symbol = "?"

    def atoms(self) -> frozenset[str]:
        return self.left.atoms() | self.right.atoms()

    def __str__(self) -> str:
        return f"{_wrap(self.left)} {self.symbol} {_wrap(self.right)}"


class And(_Binary):
    symbol = "&"

    def holds(self, world: dict[str, bool]) -> bool:
        return self.left.holds(world) and self.right.holds(world)


class Or(_Binary):
    symbol = "|"

    def holds(self, world: dict[str, bool]) -> bool:
        return self.left.holds(world) or self.right.holds(world)


class Xor(_Binary):
    symbol = "^"

    def holds(self, world: dict[str, bool]) -> bool:
        return self.left.holds(world) != self.right.holds(world)


class Implies(_Binary):
    symbol = "->"

    def holds(self, world: dict[str, bool]) -> bool:
        return (not self.left.holds(world)) or self.right.holds(world)


def _wrap(f: Formula) -> str:
    return f"({f})" if isinstance(f, _Binary) else str(f)


W, L = Atom("W"), Atom("L")
TRUE = Const(True)


def worlds(names: list[str]) -> list[dict[str, bool]]:
    return [
        dict(zip(names, bits, strict=True)) for bits in itertools.product((False, True), repeat=len(names))
    ]


def entails(p: Formula, q: Formula) -> bool:
    """P |= Q: every world satisfying P satisfies Q."""
    names = sorted(p.atoms() | q.atoms())
    return all(q.holds(w) for w in worlds(names) if p.holds(w))


def semantic_loss(
    formula: Formula, atom_logits: dict[str, Tensor], condition: Formula | None = None
) -> Tensor:
    """-log(WMC(P and C) / WMC(C)) with independent atoms, P(a) = sigma(atom_logits[a]); elementwise over the
    batch. Exact enumeration of the 2^n worlds in log space."""
    cond = condition if condition is not None else TRUE
    names = sorted(formula.atoms() | cond.atoms())
    missing = [n for n in names if n not in atom_logits]
    if missing:
        raise ValueError(f"atom_logits lacks a logit for atom(s) {missing}")
    if not names:
        raise ValueError("the formula has no atoms")
    log_true = {n: F.logsigmoid(atom_logits[n]) for n in names}
    log_false = {n: F.logsigmoid(-atom_logits[n]) for n in names}
    num, den = [], []
    for w in worlds(names):
        if not cond.holds(w):
            continue
        lw = sum(log_true[n] if w[n] else log_false[n] for n in names)
        den.append(lw)
        if formula.holds(w):
            num.append(lw)
    if not den:
        raise ValueError(f"the condition {cond} is unsatisfiable")
    if not num:
        raise ValueError(f"the formula {formula} is unsatisfiable under the condition {cond}")
    log_num = torch.logsumexp(torch.stack(num), 0)
    if condition is None:  # WMC(true) = 1 exactly
        return -log_num
    return -(log_num - torch.logsumexp(torch.stack(den), 0))


# --- how a batch defines the atoms' probabilities --------------------------------------------------------------------
SEMANTICS: dict[str, tuple[str, bool, str, dict[str, float]]] = {
    # name: (logit of atom for response y, needs reference, aggregation, hyper-parameter defaults)
    "reference": ("logit(y) = beta * (log pi(y|x) - log ref(y|x))", True, "sum", {"beta": 0.1}),
    "sequence": ("logit(y) = beta * log pi(y|x)", False, "sum", {"beta": 0.1}),
    "length_normalized": (
        "logit(y_w) = beta * log pi(y_w|x) / |y_w| - gamma,  logit(y_l) = beta * log pi(y_l|x) / |y_l|",
        False,
        "mean",
        {"beta": 2.0, "gamma": 1.0},
    ),
    "odds": (
        "P(y) = exp(log pi(y|x) / |y|), i.e. logit(y) = log odds of the mean-token probability",
        False,
        "mean",
        {},
    ),
    "probability": ("P(y) = pi(y|x), i.e. logit(y) = log(pi / (1 - pi))", False, "sum", {}),
}


def atom_logits(batch: PreferenceBatch, semantics: str, **hp: float) -> tuple[dict[str, Tensor], Any]:
    """The atom logits {"W": ..., "L": ...} a batch defines under ``semantics``, and the pair terms."""
    if semantics not in SEMANTICS:
        raise ValueError(f"semantics must be one of {sorted(SEMANTICS)}; got {semantics!r}")
    needs_ref = SEMANTICS[semantics][1]
    t = pair_terms(batch, needs_reference=needs_ref, why=f"logic loss ({semantics} semantics)")
    if semantics == "reference":
        lw, ll = hp["beta"] * t.chosen_logratios, hp["beta"] * t.rejected_logratios
    elif semantics == "sequence":
        lw, ll = hp["beta"] * t.chosen_logps, hp["beta"] * t.rejected_logps
    elif semantics == "length_normalized":
        batch.require_lengths("length_normalized semantics")
        lw = hp["beta"] * t.chosen_logps / t.chosen_lengths - hp["gamma"]
        ll = hp["beta"] * t.rejected_logps / t.rejected_lengths
    elif semantics == "odds":
        batch.require_lengths("odds semantics")
        lw = log_odds(clamp_logp(t.chosen_logps / t.chosen_lengths))
        ll = log_odds(clamp_logp(t.rejected_logps / t.rejected_lengths))
    else:  # probability
        lw = clamp_logp(t.chosen_logps) - log1mexp(clamp_logp(t.chosen_logps))
        ll = clamp_logp(t.rejected_logps) - log1mexp(clamp_logp(t.rejected_logps))
    return {"W": lw, "L": ll}, t


def _doc(
    name: str, formula: Formula, condition: Formula | None, semantics: str, closed_form: str, note: str
) -> str:
    hp = SEMANTICS[semantics][3]
    src = _HP_SOURCE[semantics]
    hp_lines = "\n".join(f"    {k}: {v!r} — {_HP_DOC[k]} {src}" for k, v in hp.items()) or "    (none)"
    return (
        f"{PAPER} (arXiv:{ARXIV}): the semantic loss of a boolean formula over the preference propositions\n"
        'W = "y_w is acceptable" and L = "y_l is acceptable".'
        + (f" Compiled as {name!r}." if name else "")
        + f"\n\nFormula:\n    P = {formula}\n    C = {condition if condition is not None else 'true'}\n"
        f"    atoms: {SEMANTICS[semantics][0]}\n"
        "    L = -log( WMC(P & C) / WMC(C) ),  WMC(F) = sum_{worlds |= F} prod_a P(a)^[a] (1 - P(a))^[~a]\n"
        + (f"      = {closed_form}\n" if closed_form else "")
        + f"\nHyper-parameters:\n{hp_lines}\n"
        + (f"\n{note}\n" if note else "")
    )


_HP_DOC = {
    "beta": "scale of the atom logits",
    "gamma": "target margin subtracted from the chosen atom's logit",
}
#: where each semantics' defaults come from: the loss it compiles to (ours: the logic paper fixes none)
_HP_SOURCE = {
    "reference": "(ours: DPO's 0.1, the DPO paper's and TRL ``DPOConfig``'s default).",
    "sequence": "(ours: CPO's 0.1, TRL ``CPOConfig``'s default).",
    "length_normalized": "(ours: SimPO's defaults, as ``simpo``).",
    "odds": "",
    "probability": "",
}


def compile_loss(
    formula: Formula,
    condition: Formula | None = None,
    *,
    semantics: str = "reference",
    name: str = "",
    closed_form: str = "",
    note: str = "",
    register: bool = False,
    tags: tuple[str, ...] = (),
) -> Objective:
    """An objective computing the semantic loss of ``formula`` under ``condition`` with atoms defined by
    ``semantics`` (one of ``SEMANTICS``). ``register=True`` adds it to the registry under ``name`` so that
    ``alignkit explain NAME`` shows its formula."""
    if semantics not in SEMANTICS:
        raise ValueError(f"semantics must be one of {sorted(SEMANTICS)}; got {semantics!r}")
    if not formula.atoms() <= {"W", "L"} or (condition is not None and not condition.atoms() <= {"W", "L"}):
        raise ValueError("formulas are over the atoms W and L")
    desc, needs_ref, aggregation, defaults = SEMANTICS[semantics]

    def run(batch: PreferenceBatch, **hp: float) -> LossOutput:
        logits, t = atom_logits(batch, semantics, **hp)
        losses = semantic_loss(formula, logits, condition)
        metrics = preference_metrics(logits["W"], logits["L"], t)
        return LossOutput(loss=losses.mean(), losses=losses, metrics=metrics)

    run.__doc__ = _doc(name, formula, condition, semantics, closed_form, note)
    run.__name__ = run.__qualname__ = name or "compiled_logic_loss"
    run.__module__ = __name__
    label = name or f"logic[{formula} | {condition}]"
    obj = Objective(
        name=label,
        kind="objective",
        fn=run,
        paper=PAPER,
        arxiv=ARXIV,
        family="preference",
        tags=("paired", "logic", "algorithm:pairwise", "feedback:preference", "data:off-policy", *tags),
        summary=f"semantic loss of {formula} given {condition if condition is not None else 'true'}",
        defaults=dict(defaults),
        needs_reference=needs_ref,
        aggregation=aggregation,
        batch_type=PreferenceBatch,
        verification="reconstruction",  # the paper's per-loss formula table was not read (see NOTE)
    )
    obj.formula_p, obj.formula_c, obj.semantics = formula, condition, semantics  # type: ignore[attr-defined]
    if register:
        if not name:
            raise ValueError("a registered compiled loss needs a name")
        add(obj)
    return obj


# --- known losses as formulas ---------------------------------------------------------------------------------------
# name: (P, C, semantics, closed form, which registered objective it reproduces and how)
KNOWN: dict[str, tuple[Formula, Formula | None, str, str, str]] = {
    "logic_dpo": (
        W & ~L,
        W ^ L,
        "reference",
        "-log sigma(logit(y_w) - logit(y_l)) = DPO",
        "Reproduces `dpo` exactly (any beta).",
    ),
    "logic_cpo": (
        W & ~L,
        W ^ L,
        "sequence",
        "-log sigma(beta (log pi(y_w) - log pi(y_l)))",
        "Reproduces the preference term of `cpo` (cpo_alpha = 0) exactly.",
    ),
    "logic_simpo": (
        W & ~L,
        W ^ L,
        "length_normalized",
        "-log sigma(beta (log pi(y_w)/|y_w| - log pi(y_l)/|y_l|) - gamma) = SimPO",
        "Reproduces `simpo` exactly (any beta, gamma).",
    ),
    "logic_orpo_odds": (
        W & ~L,
        W ^ L,
        "odds",
        "-log sigma(log odds(y_w) - log odds(y_l)), ORPO's odds-ratio term",
        "`orpo` = NLL_token_mean(y_w) + lambda * this loss, exactly.",
    ),
    "logic_unlikelihood": (
        W & ~L,
        None,
        "probability",
        "-log pi(y_w|x) - log(1 - pi(y_l|x)): NLL on y_w plus unlikelihood on y_l",
        "Without the conditioning constraint, W & ~L is sequence-level NLL plus unlikelihood.",
    ),
}

NOTE = (
    "The identities above are exact algebra (WMC of W & ~L over the worlds where W ^ L is "
    "sigma(l_w)(1-sigma(l_l)) / [sigma(l_w)(1-sigma(l_l)) + (1-sigma(l_w))sigma(l_l)] = sigma(l_w - l_l)), checked\n"
    "numerically in the tests. Source: the paper's abstract and summaries (arXiv 2412.17696 v1/v2, preference\n"
    "structures (P, P_C, P_A)); its own table of formulas per loss and how it forms atom probabilities for\n"
    "reference models were not readable here, so the 'semantics' choices are this library's derivation."
)

for _name, (_p, _c, _sem, _closed, _what) in KNOWN.items():
    compile_loss(
        _p, _c, semantics=_sem, name=_name, closed_form=_closed, note=f"{_what}\n\n{NOTE}", register=True
    )


def formula_of(name: str) -> str:
    """The boolean form of a known loss (a ``logic_*`` objective or the objective it reproduces)."""
    aliases = {"dpo": "logic_dpo", "sigmoid": "logic_dpo", "simpo": "logic_simpo", "cpo": "logic_cpo"}
    key = aliases.get(name, name)
    if key not in KNOWN:
        raise KeyError(f"no known boolean form for {name!r}; known: {sorted(KNOWN)} and {sorted(aliases)}")
    p, c, sem, _, _ = KNOWN[key]
    return f"P = {p};  C = {c if c is not None else 'true'};  atoms: {SEMANTICS[sem][0]}"


__all__: list[str] = [
    "And",
    "Atom",
    "Const",
    "Formula",
    "Implies",
    "KNOWN",
    "L",
    "Not",
    "Or",
    "SEMANTICS",
    "TRUE",
    "W",
    "Xor",
    "atom_logits",
    "compile_loss",
    "entails",
    "formula_of",
    "semantic_loss",
    "worlds",
]
