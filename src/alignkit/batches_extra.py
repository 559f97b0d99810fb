"""Batches for objectives that read more than log-probs: token edit masks, numeric-token logits, soft preference
labels, per-sample rewards, sampled contrast tokens, objective ids.

Each is a subclass of the standard batch in :mod:`alignkit.types`, so every objective that takes the base batch
takes these too, and an objective written for an extra field still runs on the base batch (it then uses the
limiting case its docstring names, e.g. "no numeric tokens" for the Number Token Loss). Extra fields are checked
when the batch is built and a bad one raises a ``ValueError`` naming it. Objectives read extras with
:func:`extra`, which also accepts a base batch (returning ``None``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from alignkit.types import PreferenceBatch, SFTBatch, UnpairedBatch, _check_finite, _check_logps


def extra(batch: Any, name: str) -> Tensor | None:
    """The extra field ``name`` of ``batch``, or ``None`` when the batch (a base batch) has no such field."""
    return getattr(batch, name, None)


def _check_like(name: str, value: Tensor, shape: tuple[int, ...]) -> None:
    if tuple(value.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(value.shape)}; expected {shape}")


def _check_binary(name: str, value: Tensor) -> Tensor:
    if value.dtype != torch.bool:
        if not ((value == 0) | (value == 1)).all():
            raise ValueError(f"{name} must be boolean (or 0/1); got values {value.unique().tolist()[:5]}")
        value = value.bool()
    return value


@dataclass
class EditedPreferenceBatch(PreferenceBatch):
    """FIGA (arXiv:2311.04072): chosen = the revised response, rejected = the initial one, with per-token masks
    of the tokens the revision touched (``chosen_edit_mask``: inserted/substituted tokens of the revision, plus
    its EOS; ``rejected_edit_mask``: deleted/substituted tokens of the initial response). Build the masks from
    token ids with :func:`alignkit.objectives.preference.figa.edit_masks`."""

    chosen_edit_mask: Tensor | None = None
    rejected_edit_mask: Tensor | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name, side in (("chosen_edit_mask", self.chosen), ("rejected_edit_mask", self.rejected)):
            value = getattr(self, name)
            if value is None:
                raise ValueError(f"EditedPreferenceBatch needs {name}")
            _check_like(name, value, tuple(side.mask.shape))
            setattr(self, name, _check_binary(name, value))


@dataclass
class NumberTokenBatch(SFTBatch):
    """Number Token Loss (arXiv:2411.02083): besides the target log-probs, the model's logits restricted to the
    K number tokens at every position, ``number_logits`` (B, T, K); the numeric value of each of those tokens,
    ``number_values`` (K,); and the numeric value of the target token, ``target_values`` (B, T), NaN where the
    target is not a number token."""

    number_logits: Tensor | None = None
    number_values: Tensor | None = None
    target_values: Tensor | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("number_logits", "number_values", "target_values"):
            if getattr(self, name) is None:
                raise ValueError(f"NumberTokenBatch needs {name}")
        b, t = self.side.mask.shape
        if self.number_logits.dim() != 3 or tuple(self.number_logits.shape[:2]) != (b, t):
            raise ValueError(
                f"number_logits must have shape ({b}, {t}, K); got {tuple(self.number_logits.shape)}"
            )
        k = self.number_logits.shape[-1]
        _check_like("number_values", self.number_values, (k,))
        _check_like("target_values", self.target_values, (b, t))
        _check_finite("number_logits", self.number_logits)
        _check_finite("number_values", self.number_values)
        known = ~torch.isnan(self.target_values) & self.side.mask.bool()
        on_grid = (self.target_values.unsqueeze(-1) == self.number_values).any(-1)
        if (known & ~on_grid).any():
            bad = (known & ~on_grid).nonzero()[0].tolist()
            raise ValueError(
                f"target_values at {tuple(bad)} is {self.target_values[tuple(bad)].item()}, not one of number_values"
            )


@dataclass
class SoftPreferenceBatch(PreferenceBatch):
    """iREPO (arXiv:2405.15230): ``preference_probs`` (B,), the empirical probability that the first ("chosen")
    response is preferred — a fraction of annotators, or an AI annotator's probability."""

    preference_probs: Tensor | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.preference_probs is None:
            raise ValueError("SoftPreferenceBatch needs preference_probs")
        _check_like("preference_probs", self.preference_probs, (self.batch_size,))
        _check_finite("preference_probs", self.preference_probs)
        if ((self.preference_probs < 0) | (self.preference_probs > 1)).any():
            raise ValueError("preference_probs must lie in [0, 1]")


@dataclass
class CringePreferenceBatch(PreferenceBatch):
    """Pairwise Cringe (arXiv:2312.16682): ``rejected_positive_logps`` (B, T) — at every rejected position, the
    log-prob of the contrast ("positive") token sampled from the model's top-k predictions other than the
    rejected token (:func:`alignkit.objectives.preference.pairwise_cringe.sample_positive_tokens`)."""

    rejected_positive_logps: Tensor | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rejected_positive_logps is None:
            raise ValueError("CringePreferenceBatch needs rejected_positive_logps")
        _check_like("rejected_positive_logps", self.rejected_positive_logps, tuple(self.rejected.mask.shape))
        _check_logps("rejected_positive_logps", self.rejected_positive_logps, self.rejected.mask)


@dataclass
class MultiObjectivePreferenceBatch(PreferenceBatch):
    """CAO (arXiv:2502.03512): each pair belongs to one of K objectives (axioms); ``objective_ids`` (B,) holds
    its index in 0..K-1."""

    objective_ids: Tensor | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.objective_ids is None:
            raise ValueError("MultiObjectivePreferenceBatch needs objective_ids")
        _check_like("objective_ids", self.objective_ids, (self.batch_size,))
        if self.objective_ids.is_floating_point() or (self.objective_ids < 0).any():
            raise ValueError("objective_ids must be non-negative integers")


@dataclass
class RewardedBatch(UnpairedBatch):
    """Sampled completions with scalar rewards, for policy-gradient objectives (task-reward REINFORCE,
    arXiv:2302.08242; transformed rewards, arXiv:2402.00742).

    ``rewards``: (B,) or (B, P) for P reward properties. ``ref_rewards``: reference rewards r_ref(x), same shape
    (or (P,)), used by the reward transformation. ``group_ids``: (B,) integer prompt id — samples of the same
    prompt share a baseline. ``baselines``: (B,) an explicit baseline b(x) that overrides the computed one.
    ``labels`` are optional here; when absent they are set to "reward above the batch mean".
    """

    rewards: Tensor | None = None
    ref_rewards: Tensor | None = None
    group_ids: Tensor | None = None
    baselines: Tensor | None = None

    def __post_init__(self) -> None:
        if self.rewards is None:
            raise ValueError("RewardedBatch needs rewards")
        if self.logps is None:
            raise ValueError("RewardedBatch needs logps")
        b = self.logps.shape[0]
        if self.rewards.dim() not in (1, 2) or self.rewards.shape[0] != b:
            raise ValueError(f"rewards must have shape ({b},) or ({b}, P); got {tuple(self.rewards.shape)}")
        _check_finite("rewards", self.rewards)
        total = self.rewards if self.rewards.dim() == 1 else self.rewards.sum(-1)
        if self.labels is None:
            self.labels = total > total.mean()
        super().__post_init__()
        if self.ref_rewards is not None:
            if self.ref_rewards.shape not in (self.rewards.shape, self.rewards.shape[1:]):
                raise ValueError(
                    f"ref_rewards has shape {tuple(self.ref_rewards.shape)}; expected {tuple(self.rewards.shape)}"
                    + (f" or {tuple(self.rewards.shape[1:])}" if self.rewards.dim() == 2 else "")
                )
            _check_finite("ref_rewards", self.ref_rewards)
        if self.group_ids is not None:
            _check_like("group_ids", self.group_ids, (b,))
            if self.group_ids.is_floating_point():
                raise ValueError("group_ids must be integers")
        if self.baselines is not None:
            _check_like("baselines", self.baselines, (b,))
            _check_finite("baselines", self.baselines)
