"""What an objective consumes, declared once at registration: the objective spec.

An objective is a pure function of a batch. Its :class:`ObjectiveSpec` says which batch class it takes, which
batch *fields* it must have (``requires``), which it can do without and what it then computes instead
(``optional``: the limiting case, reported at the start of a run, never silently), which fields a
hyper-parameter switches on (``requires_when``), how its loss is normalised over a batch (per ``example`` or per
``token`` — the trainer weights micro-batches by this under gradient accumulation and DDP), whether it reads
reference log-probs, and any running state it carries between steps (:class:`StateSpec`).

Fields are named in one table, :data:`FIELDS`, with the data column that supplies each one (when a column can)
or the engine computation that does. The table is open: a new family registers its own fields with
:func:`register_field` (embeddings, teacher logits, class targets ...). Nothing here imports torch or any other
part of alignkit: the registry and every layer above it read this module, it reads none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

NORMALISATIONS = ("example", "token")

# How a registered component was checked (README catalogue, `alignkit list`, `alignkit explain`).
VERIFICATION_LEVELS = {
    "trl-parity": "equal to trl==1.16.0's own code on the same tensors (tested in-process)",
    "library-parity": "equal to a well-kept library's implementation (PEFT, mergekit, pytorch-metric-learning ...)",
    "official-code-parity": "equal to the authors' released code (restated in the test) on the same tensors",
    "paper-formula": "checked by hand against the paper's equations (hand-computed values, limiting cases)",
    "reconstruction": "rebuilt from the abstract or secondary sources; the docstring says what is guessed",
}


@dataclass(frozen=True)
class FieldSpec:
    """A batch field an objective can consume.

    ``column``: the data column (per row) that supplies it, if any. ``computed``: how the engine computes it
    (``None`` when only data or the caller can supply it). ``doc``: what it holds, for errors and docs.
    """

    name: str
    doc: str
    column: str | None = None
    computed: str | None = None


FIELDS: dict[str, FieldSpec] = {}


def register_field(
    name: str, doc: str, *, column: str | None = None, computed: str | None = None
) -> FieldSpec:
    """Add a field to :data:`FIELDS` (idempotent for an identical declaration; a conflicting one raises)."""
    spec = FieldSpec(name=name, doc=doc, column=column, computed=computed)
    old = FIELDS.get(name)
    if old is not None and old != spec:
        raise ValueError(f"field {name!r} is already declared differently: {old}")
    FIELDS[name] = spec
    return spec


# The fields of the LM batches (alignkit.types, alignkit.batches_extra). Log-probs and masks are always built by
# the engine and are not listed: a spec names only what goes beyond them.
register_field(
    "ref_logps",
    "reference-model log-probs of the scored tokens (ref_chosen_logps / ref_rejected_logps / ref_logps)",
    computed="reference model, LoRA-disabled policy or the on-disk reference cache",
)
register_field(
    "log_sum_sq_probs",
    "per-token log sum_v pi(v|...)^2 of the policy (chosen_log_sum_sq_probs / rejected_log_sum_sq_probs)",
    computed="the LM head, from the same logits as the log-probs",
)
register_field(
    "kl_logps",
    "summed log-probs of mismatched prompt/completion pairs (kl_logps, ref_kl_logps), KTO's KL estimate",
    computed="the policy and reference on completion i-1 given prompt i, rotated within each chunk of "
    "batch_size rows in data order (TRL's KTOTrainer)",
)
register_field(
    "edit_masks",
    "per-token masks of the tokens a revision edited (chosen_edit_mask / rejected_edit_mask)",
    column="chosen_edit_mask, rejected_edit_mask (lists of 0/1 per completion token)",
    computed="a Levenshtein alignment of the rejected (initial) and chosen (revised) token ids",
)
register_field(
    "preference_probs",
    "the empirical probability that chosen is preferred to rejected (fraction of annotators)",
    column="preference_prob (a number in [0, 1])",
)
register_field(
    "objective_ids",
    "which of K objectives (axioms) each pair belongs to",
    column="objective (an int in 0..K-1 or a name; names are numbered in sorted order)",
)
register_field(
    "rewards",
    "a scalar reward per completion (or P rewards per completion)",
    column="reward (a number, or a list of P numbers)",
    computed="online: reward_fn(prompt_ids, completion_ids) on samples from the policy",
)
register_field(
    "ref_rewards",
    "the reward of a reference completion of the same prompt, r_ref(x)",
    column="ref_reward (a number, or a list of P numbers)",
)
register_field(
    "group_ids",
    "which samples share a prompt (and so a baseline)",
    computed="rows with identical prompt token ids share a group; online samples of one prompt share one",
)
register_field(
    "rejected_positive_logps",
    "log-probs of a contrast token sampled from the model's top-k at every rejected position (Cringe)",
)
register_field(
    "number_logits",
    "logits restricted to the number tokens at every position, their values, and the targets' values (NTL)",
)
register_field(
    "class_logits",
    "a classifier's logits, (B, C) (ClassificationBatch.logits; CAFA's FeatureAlignmentBatch)",
    computed="the model's classification head",
)
register_field(
    "teacher_logits",
    "full-vocabulary logits of teacher model(s) at the student's positions",
)


@dataclass(frozen=True)
class StateSpec:
    """Running state an objective carries between optimiser steps (BCO's reward mean, ...).

    ``init``: state names (passed to the objective as keyword arguments) and their initial values. Each call
    returns additive statistics in ``LossOutput.state``; the trainer sums them over the micro-batches of a step
    and over DDP ranks (all-reduce), then sets ``state = update(state, stats)``. State is saved in checkpoints
    and restored on resume. All micro-batches of a step see the state as it was at the start of the step, so
    gradient accumulation and DDP give the same run as one large batch.
    """

    init: Mapping[str, float]
    update: Callable[[dict[str, float], dict[str, float]], dict[str, float]]


@dataclass(frozen=True)
class ObjectiveSpec:
    """What an objective consumes. See the module docstring."""

    batch: type | None = None
    requires: tuple[str, ...] = ()
    optional: Mapping[str, str] = field(default_factory=dict)
    requires_when: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    normalisation: str = "example"
    needs_reference: bool = True
    aggregation: str = "sum"
    state: StateSpec | None = None

    def __post_init__(self) -> None:
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}; got {self.normalisation!r}")
        if self.aggregation not in ("sum", "mean"):
            raise ValueError(f"aggregation must be 'sum' or 'mean', got {self.aggregation!r}")
        for name in (*self.requires, *self.optional, *(f for fs in self.requires_when.values() for f in fs)):
            if name not in FIELDS:
                raise ValueError(
                    f"unknown batch field {name!r}; declare it with alignkit.spec.register_field "
                    f"(known: {', '.join(sorted(FIELDS))})"
                )

    def required(self, hyper_parameters: Mapping[str, Any] | None = None) -> tuple[str, ...]:
        """Required fields for these hyper-parameters (``ref_logps`` when the objective reads a reference)."""
        hp = hyper_parameters or {}
        out = list(self.requires)
        if self.needs_reference and "ref_logps" not in out:
            out.insert(0, "ref_logps")
        for switch, fields in self.requires_when.items():
            if hp.get(switch):
                out += [f for f in fields if f not in out]
        return tuple(out)


def merge_specs(specs: Iterable[ObjectiveSpec]) -> ObjectiveSpec:
    """The spec of a weighted mix: the union of what its parts consume. Independent of the parts' order
    (fields are sorted; a field one part requires is required). ``normalisation`` of the mix is that of its parts
    when they agree; a mix of both is weighted part by part (``LossOutput.by_normalisation``), and its own
    ``normalisation`` is reported as ``"example"``. State and batch class are not merged here (combine handles
    them)."""
    specs = list(specs)
    if not specs:
        raise ValueError("merge_specs needs at least one spec")
    requires = sorted({f for s in specs for f in s.requires})
    optional: dict[str, str] = {}
    for s in sorted(specs, key=lambda s: sorted(s.optional.items())):
        for k, v in sorted(s.optional.items()):
            if k not in requires:
                optional[k] = f"{optional[k]}; {v}" if k in optional and v not in optional[k] else v
    when: dict[str, list[str]] = {}
    for s in specs:
        for k, fs in s.requires_when.items():
            when.setdefault(k, [])
            when[k] += [f for f in fs if f not in when[k]]
    norms = {s.normalisation for s in specs}
    aggs = sorted({s.aggregation for s in specs})
    return replace(
        specs[0],
        batch=None,
        requires=tuple(requires),
        optional=dict(sorted(optional.items())),
        requires_when={k: tuple(sorted(v)) for k, v in sorted(when.items())},
        normalisation=norms.pop() if len(norms) == 1 else "example",
        needs_reference=any(s.needs_reference for s in specs),
        aggregation=aggs[0] if len(aggs) == 1 else "sum",
        state=None,
    )
