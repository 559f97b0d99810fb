"""The data path for an objective's declared fields: decide at start, supply every step, or refuse.

:func:`plan_fields` reads the objective's :class:`~alignkit.spec.ObjectiveSpec` and what the run can offer (the
mode, the data's columns, a ``reward_fn``, a reference) and returns a :class:`FieldPlan`, or raises naming the
objective, the field and the column to add. Optional fields the run cannot supply are listed in
``FieldPlan.notes`` (the trainer prints them once at start: "figa: no edit masks; ..."). Each step,
:meth:`FieldPlan.extend` turns the base batch the engine built into the batch class that carries the fields.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any

import torch
from torch import Tensor

from alignkit.batches_extra import (
    EditedPreferenceBatch,
    MultiObjectivePreferenceBatch,
    RewardedBatch,
    SoftPreferenceBatch,
)
from alignkit.errors import UserError
from alignkit.registry import Objective
from alignkit.spec import FIELDS
from alignkit.types import PreferenceBatch, UnpairedBatch

# Data columns per field; the value is how a row's entry is read.
COLUMNS = {
    "preference_probs": "preference_prob",
    "objective_ids": "objective",
    "rewards": "reward",
    "ref_rewards": "ref_reward",
}
# Which batch class carries which fields (per base batch).
_CARRIER = {
    (PreferenceBatch, "edit_masks"): EditedPreferenceBatch,
    (PreferenceBatch, "preference_probs"): SoftPreferenceBatch,
    (PreferenceBatch, "objective_ids"): MultiObjectivePreferenceBatch,
    (UnpairedBatch, "rewards"): RewardedBatch,
    (UnpairedBatch, "ref_rewards"): RewardedBatch,
    (UnpairedBatch, "group_ids"): RewardedBatch,
}


@dataclass
class FieldPlan:
    """What a run supplies beyond log-probs: ``fields`` (engine-computed or read from ``columns``), the
    ``notes`` on optional fields it cannot supply, and the id numbering of named objectives (CAO)."""

    objective: str
    fields: tuple[str, ...] = ()
    columns: dict[str, str] = field(default_factory=dict)  # field -> data column read per row
    notes: list[str] = field(default_factory=list)
    objective_names: list[str] = field(default_factory=list)

    def wants(self, name: str) -> bool:
        return name in self.fields

    def extend(self, batch: Any, examples: Sequence[Any], *, group_ids: Sequence[int] | None = None) -> Any:
        """``batch`` (a base batch built by the engine) with this plan's fields, as the batch class carrying
        them. ``examples`` are the micro-batch's rows (with ``extras`` read from the data columns)."""
        if isinstance(batch, PreferenceBatch):
            base = PreferenceBatch
        elif isinstance(batch, UnpairedBatch):
            base = UnpairedBatch
        else:
            return batch
        carriers = list(dict.fromkeys(_CARRIER[(base, f)] for f in self.fields if (base, f) in _CARRIER))
        if not carriers:
            return batch
        dev = batch.side.seq.device if base is UnpairedBatch else batch.chosen.seq.device
        kw = _base_kwargs(batch)
        if "edit_masks" in self.fields:
            kw.update(_edit_masks(examples, batch))
        if "preference_probs" in self.fields:
            kw["preference_probs"] = torch.tensor(
                [e.extras["preference_prob"] for e in examples], dtype=torch.float32, device=dev
            )
        if "objective_ids" in self.fields:
            kw["objective_ids"] = torch.tensor(
                [self._objective_id(e.extras["objective"]) for e in examples], dtype=torch.long, device=dev
            )
        if "rewards" in self.fields:
            if any(getattr(e, "label", None) is None for e in examples):
                kw["labels"] = (
                    None  # scored rows carry no label: the rewarded batch derives one from the reward
                )
            kw["rewards"] = torch.tensor(
                [e.extras["reward"] for e in examples], dtype=torch.float32, device=dev
            )
        if "ref_rewards" in self.fields:
            kw["ref_rewards"] = torch.tensor(
                [e.extras["ref_reward"] for e in examples], dtype=torch.float32, device=dev
            )
        if "group_ids" in self.fields:
            if group_ids is None:
                group_ids = _groups_by_prompt(examples)
            kw["group_ids"] = torch.tensor(list(group_ids), dtype=torch.long, device=dev)
        cls = carriers[0] if len(carriers) == 1 else _combined(tuple(carriers))
        return cls(**kw)

    def _objective_id(self, value: Any) -> int:
        if isinstance(value, int):
            return value
        return self.objective_names.index(value)


def _base_kwargs(batch: Any) -> dict[str, Any]:
    names = [f.name for f in fields(type(batch)) if f.init]
    return {n: getattr(batch, n) for n in names}


_COMBINED: dict[tuple[type, ...], type] = {}


def _combined(carriers: tuple[type, ...]) -> type:
    """One batch class carrying several groups of fields (their checks all run, each in its own __post_init__)."""
    if carriers not in _COMBINED:
        name = "".join(c.__name__.replace("PreferenceBatch", "") for c in carriers) + "PreferenceBatch"
        _COMBINED[carriers] = make_dataclass(name, [], bases=carriers)
    return _COMBINED[carriers]


def _edit_masks(examples: Sequence[Any], batch: PreferenceBatch) -> dict[str, Tensor]:
    """FIGA's masks from a Levenshtein alignment of rejected (initial) -> chosen (revised) token ids, or from the
    rows' ``chosen_edit_mask`` / ``rejected_edit_mask`` columns when the data gives them."""
    from alignkit.objectives.preference.figa import edit_masks

    shape_c, shape_r = tuple(batch.chosen.mask.shape), tuple(batch.rejected.mask.shape)
    cm = torch.zeros(shape_c, dtype=torch.bool, device=batch.chosen.mask.device)
    rm = torch.zeros(shape_r, dtype=torch.bool, device=batch.rejected.mask.device)
    for i, e in enumerate(examples):
        given = e.extras.get("chosen_edit_mask"), e.extras.get("rejected_edit_mask")
        if given[0] is not None and given[1] is not None:
            rev, ini = given
        else:
            ini, rev = edit_masks(e.rejected_ids, e.chosen_ids)
        c_pos = batch.chosen.mask[i].nonzero().flatten()
        r_pos = batch.rejected.mask[i].nonzero().flatten()
        cm[i, c_pos[: len(rev)]] = torch.tensor(rev[: len(c_pos)], dtype=torch.bool, device=cm.device)
        rm[i, r_pos[: len(ini)]] = torch.tensor(ini[: len(r_pos)], dtype=torch.bool, device=rm.device)
    return {"chosen_edit_mask": cm, "rejected_edit_mask": rm}


def _groups_by_prompt(examples: Sequence[Any]) -> list[int]:
    ids: dict[tuple[int, ...], int] = {}
    return [ids.setdefault(tuple(e.prompt_ids), len(ids)) for e in examples]


def plan_fields(
    obj: Objective,
    hyper_parameters: Mapping[str, Any],
    *,
    mode: str,
    columns: set[str],
    online: bool,
    computed: frozenset[str] = frozenset(),
) -> FieldPlan:
    """Decide, before step 1, how each field ``obj`` declares is supplied; refuse what cannot be.

    ``columns``: the data columns present in every row (``set()`` when unknown). ``online``: completions are
    sampled and scored by ``reward_fn`` each step (rewards and prompt groups come from there). ``computed``: the
    fields this run's engine computes besides the above (the distillation path's teacher and student outputs,
    :mod:`alignkit.train.teacher`)."""
    spec = obj.spec
    required = [f for f in spec.required(hyper_parameters) if f != "ref_logps"]
    required.sort(key=lambda f: not f.startswith("teacher_"))  # a missing teacher: the refusal named first
    plan = FieldPlan(objective=obj.name)
    supplied: list[str] = []

    def available(name: str) -> tuple[bool, str | None]:
        if name in computed:
            return True, None
        if name == "kl_logps":
            return mode == "unpaired", None
        if name in ("log_sum_sq_probs", "edit_masks"):
            if name == "edit_masks" and mode not in ("paired", "online"):
                return False, None
            return True, None
        if name == "group_ids":
            return mode in ("unpaired", "online"), None
        if name == "rewards" and online:
            return True, None
        col = COLUMNS.get(name)
        if col is not None and col in columns:
            return True, col
        return False, col

    for name in required:
        ok, col = available(name)
        if not ok:
            raise UserError(_refusal(obj.name, name, col, online))
        supplied.append(name)
        if col is not None:
            plan.columns[name] = col
    for name, note in spec.optional.items():
        ok, col = available(name)
        if ok:
            supplied.append(name)
            if col is not None:
                plan.columns[name] = col
        else:
            plan.notes.append(f"{obj.name}: {note}")
    plan.fields = tuple(dict.fromkeys(supplied))
    return plan


def _refusal(objective: str, name: str, column: str | None, online: bool) -> str:
    f = FIELDS[name]
    how = []
    if column is not None:
        how.append(f"add the column '{column}' to every row ({f.column})")
    if name == "rewards" and not online:
        how.append("or train online with a reward function (--reward / reward_fn)")
    if name.startswith(("teacher_", "student_")) or name == "mlm_labels":
        how.append(
            "pass --teacher PATH_OR_HUB_ID (TrainConfig.teacher): the trainer computes it once per micro-batch"
        )
    if not how:
        how.append(
            "the trainer cannot compute it; build the batch yourself and call the objective through the Python "
            "API (alignkit.get(...)(batch))"
        )
    return f"objective {objective!r} needs {name} ({f.doc}): " + " ".join(how)


def read_columns(rec_fields: Mapping[str, Any], plan: FieldPlan) -> dict[str, Any]:
    """A row's values for the plan's data columns, checked (raises ``ValueError('field ...: ...')`` on a bad one)."""
    out: dict[str, Any] = {}
    for name, col in plan.columns.items():
        if col not in rec_fields or rec_fields[col] is None:
            raise ValueError(f"field {col!r}: is missing ({FIELDS[name].doc})")
        v = rec_fields[col]
        if name == "preference_probs":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 <= float(v) <= 1.0):
                raise ValueError(f"field {col!r}: must be a number in [0, 1]; got {v!r}")
            v = float(v)
        elif name == "objective_ids":
            if isinstance(v, bool) or not isinstance(v, (int, str)) or (isinstance(v, int) and v < 0):
                raise ValueError(f"field {col!r}: must be a non-negative int or a name; got {v!r}")
        elif name in ("rewards", "ref_rewards"):
            vals = v if isinstance(v, list) else [v]
            if not vals or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in vals
            ):
                raise ValueError(f"field {col!r}: must be a finite number or a list of them; got {v!r}")
            v = float(v) if not isinstance(v, list) else [float(x) for x in v]
        out[col] = v
    for col in ("chosen_edit_mask", "rejected_edit_mask"):
        if col in rec_fields and "edit_masks" in plan.fields:
            v = rec_fields[col]
            if not isinstance(v, list) or not all(x in (0, 1, True, False) for x in v):
                raise ValueError(f"field {col!r}: must be a list of 0/1 per completion token; got {v!r}")
            out[col] = [bool(x) for x in v]
    return out


def number_objectives(plan: FieldPlan, values: Sequence[Any]) -> None:
    """Named objectives (CAO's ``objective`` column as strings) get ids in sorted order; ints stay as given."""
    if "objective_ids" not in plan.columns:
        return
    names = sorted({v for v in values if isinstance(v, str)})
    if names and any(isinstance(v, int) for v in values):
        raise UserError("column 'objective' mixes names and integer ids; use one or the other")
    plan.objective_names = names
