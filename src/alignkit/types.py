"""Typed batches handed from the engine to objectives, and what an objective returns.

Objectives are pure functions of these tensors. The engine (or a user) computes log-probs once and builds a batch;
every objective reads only what it declares. A batch checks its inputs when it is built, so a bad tensor fails
with the name of the field rather than as a NaN loss many steps later.

Shapes: ``B`` examples, ``T`` completion positions. Per-token log-probs are ``log pi(y_t | x, y_<t)`` for the
scored (completion) tokens, with ``mask`` 1 on those tokens and 0 on padding and prompt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

Aggregation = Literal["sum", "mean"]

# Log-probs are <= 0; this much rounding above 0 is tolerated (fp16/bf16 log-softmax can land a hair above).
_POSITIVE_TOL = 1e-4


def _check_finite(name: str, value: Tensor, mask: Tensor | None = None) -> None:
    v = value.detach()
    if mask is not None:
        v = torch.where(mask.bool(), v, torch.zeros((), dtype=v.dtype, device=v.device))
    if not torch.isfinite(v).all():
        bad = (~torch.isfinite(v)).nonzero()[0].tolist()
        raise ValueError(f"{name} holds a non-finite value (NaN or inf) at index {tuple(bad)}")


def _check_logps(name: str, value: Tensor, mask: Tensor | None = None) -> None:
    _check_finite(name, value, mask)
    v = value.detach()
    if mask is not None:
        v = torch.where(mask.bool(), v, torch.zeros((), dtype=v.dtype, device=v.device))
    if (v > _POSITIVE_TOL).any():
        bad = (v > _POSITIVE_TOL).nonzero()[0].tolist()
        raise ValueError(
            f"{name} holds a positive log-probability ({v[tuple(bad)].item():.4g} at index {tuple(bad)}); "
            "log-probs must be <= 0 — were logits or probabilities passed instead of log-probs?"
        )


def _check_mask(name: str, mask: Tensor, like: Tensor, like_name: str) -> None:
    if mask.shape != like.shape:
        raise ValueError(
            f"{name} has shape {tuple(mask.shape)} but {like_name} has shape {tuple(like.shape)}"
        )
    empty = (mask.sum(-1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(
            f"{name} selects no token in row(s) {empty}: every example needs at least one scored token"
        )


def _check_2d(name: str, value: Tensor) -> None:
    if value.dim() != 2:
        raise ValueError(
            f"{name} must be per-token log-probs of shape (B, T); got shape {tuple(value.shape)}"
        )


def _check_1d(name: str, value: Tensor, batch: int) -> None:
    if value.shape != (batch,):
        raise ValueError(f"{name} must have shape ({batch},); got {tuple(value.shape)}")


def masked(values: Tensor, mask: Tensor) -> Tensor:
    """``values`` where ``mask`` is set, 0 elsewhere — a NaN or inf on padding cannot leak into sums or gradients."""
    return torch.where(mask.bool(), values, torch.zeros((), dtype=values.dtype, device=values.device))


def masked_sum(values: Tensor, mask: Tensor) -> Tensor:
    """Sum over the last axis where ``mask`` is non-zero (weighted by it), accumulated in fp64 and cast back."""
    return (masked(values, mask).double() * mask.double()).sum(-1).to(values.dtype)


@dataclass
class _Side:
    """One side (chosen, rejected, or a single completion) at token or sequence level."""

    tokens: Tensor | None  # (B, T) per-token log-probs, or None when only sums are known
    mask: Tensor | None  # (B, T)
    seq: Tensor  # (B,) summed log-probs
    lengths: Tensor  # (B,) number of scored tokens


def _side_from_tokens(name: str, tokens: Tensor, mask: Tensor | None) -> _Side:
    _check_2d(name, tokens)
    if mask is None:
        mask = torch.ones_like(tokens)
    mask_name = name.replace("logps", "mask")
    _check_mask(mask_name, mask, tokens, name)
    mask = mask.to(tokens.dtype)
    _check_logps(name, tokens, mask)
    return _Side(tokens=masked(tokens, mask), mask=mask, seq=masked_sum(tokens, mask), lengths=mask.sum(-1))


def _ref_side(name: str, tokens: Tensor | None, mask: Tensor | None, like: _Side) -> _Side | None:
    """Reference log-probs are constants: detached here, so no gradient can ever reach the reference model."""
    if tokens is None:
        return None
    tokens = tokens.detach()
    if tokens.dim() == 1:  # sequence-level reference sums
        _check_1d(name, tokens, like.seq.shape[0])
        _check_logps(name, tokens)
        return _Side(tokens=None, mask=None, seq=tokens.to(like.seq.dtype), lengths=like.lengths)
    if like.mask is None or tokens.shape != like.mask.shape:
        raise ValueError(
            f"{name} has shape {tuple(tokens.shape)}; expected the policy's shape "
            f"{None if like.mask is None else tuple(like.mask.shape)} (or ({like.seq.shape[0]},) sums)"
        )
    m = like.mask if mask is None else mask.to(tokens.dtype)
    _check_logps(name, tokens, m)
    return _Side(tokens=masked(tokens, m), mask=m, seq=masked_sum(tokens, m), lengths=like.lengths)


def _side_from_seq(name: str, seq: Tensor, lengths: Tensor | None, batch: int | None = None) -> _Side:
    if seq.dim() != 1:
        raise ValueError(f"{name} must be summed log-probs of shape (B,); got shape {tuple(seq.shape)}")
    _check_logps(name, seq)
    if lengths is None:
        lengths = torch.ones_like(seq)
    else:
        lengths = torch.as_tensor(lengths, dtype=seq.dtype, device=seq.device)
        _check_1d(name.replace("logps", "lengths").replace("chosen", "chosen_lengths"), lengths, seq.shape[0])
        if (lengths <= 0).any():
            raise ValueError(f"lengths for {name} must be positive; got {lengths.tolist()}")
    return _Side(tokens=None, mask=None, seq=seq, lengths=lengths)


@dataclass
class PreferenceBatch:
    """Paired preference data: log-probs of a chosen and a rejected completion for each prompt.

    Build it from per-token log-probs (what the engine produces) or, with :meth:`from_sequence_logps`, from
    summed log-probs when only those are known. Reference log-probs are optional; an objective that needs them
    raises a ``ValueError`` naming the missing field.

    Optional extras some objectives read: ``chosen_log_sum_sq_probs`` / ``rejected_log_sum_sq_probs`` — per-token
    ``log sum_v pi(v | ...)^2`` for WPO weighting.
    """

    chosen_logps: Tensor | None = None
    rejected_logps: Tensor | None = None
    chosen_mask: Tensor | None = None
    rejected_mask: Tensor | None = None
    ref_chosen_logps: Tensor | None = None
    ref_rejected_logps: Tensor | None = None
    chosen_log_sum_sq_probs: Tensor | None = None
    rejected_log_sum_sq_probs: Tensor | None = None
    chosen: _Side = field(init=False, repr=False)
    rejected: _Side = field(init=False, repr=False)
    ref_chosen: _Side | None = field(init=False, repr=False)
    ref_rejected: _Side | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if getattr(self, "_from_seq", False):
            return
        for name in ("chosen_logps", "rejected_logps"):
            if getattr(self, name) is None:
                raise ValueError(f"PreferenceBatch needs {name}")
        self.chosen = _side_from_tokens("chosen_logps", self.chosen_logps, self.chosen_mask)
        self.rejected = _side_from_tokens("rejected_logps", self.rejected_logps, self.rejected_mask)
        if self.chosen.seq.shape != self.rejected.seq.shape:
            raise ValueError(
                f"chosen_logps has {self.chosen.seq.shape[0]} rows but rejected_logps has "
                f"{self.rejected.seq.shape[0]}: a pair needs both"
            )
        self.chosen_mask, self.rejected_mask = self.chosen.mask, self.rejected.mask
        self.ref_chosen = _ref_side("ref_chosen_logps", self.ref_chosen_logps, None, self.chosen)
        self.ref_rejected = _ref_side("ref_rejected_logps", self.ref_rejected_logps, None, self.rejected)
        if (self.ref_chosen is None) != (self.ref_rejected is None):
            missing = "ref_chosen_logps" if self.ref_chosen is None else "ref_rejected_logps"
            raise ValueError(f"PreferenceBatch has one side of the reference log-probs but not {missing}")
        for name, side in (
            ("chosen_log_sum_sq_probs", self.chosen),
            ("rejected_log_sum_sq_probs", self.rejected),
        ):
            value = getattr(self, name)
            if value is not None:
                if value.shape != side.mask.shape:
                    raise ValueError(
                        f"{name} has shape {tuple(value.shape)}; expected {tuple(side.mask.shape)}"
                    )
                _check_logps(name, value, side.mask)

    @classmethod
    def from_sequence_logps(
        cls,
        chosen: Tensor,
        rejected: Tensor,
        ref_chosen: Tensor | None = None,
        ref_rejected: Tensor | None = None,
        chosen_lengths: Tensor | None = None,
        rejected_lengths: Tensor | None = None,
    ) -> PreferenceBatch:
        """A batch from summed log-probs ``(B,)``. Lengths (token counts) are needed by length-normalised
        objectives (SimPO, IPO, ...); without them such objectives raise."""
        self = cls.__new__(cls)
        self._from_seq = True
        self._has_lengths = chosen_lengths is not None and rejected_lengths is not None
        self.chosen = _side_from_seq("chosen_logps", chosen, chosen_lengths)
        self.rejected = _side_from_seq("rejected_logps", rejected, rejected_lengths)
        if self.chosen.seq.shape != self.rejected.seq.shape:
            raise ValueError("chosen and rejected must have the same number of rows")
        b = self.chosen.seq.shape[0]
        if (ref_chosen is None) != (ref_rejected is None):
            raise ValueError("pass both ref_chosen and ref_rejected, or neither")
        self.ref_chosen = self.ref_rejected = None
        if ref_chosen is not None:
            _check_1d("ref_chosen_logps", ref_chosen, b)
            _check_1d("ref_rejected_logps", ref_rejected, b)
            self.ref_chosen = _side_from_seq("ref_chosen_logps", ref_chosen.detach(), chosen_lengths)
            self.ref_rejected = _side_from_seq("ref_rejected_logps", ref_rejected.detach(), rejected_lengths)
        self.chosen_logps = self.rejected_logps = self.chosen_mask = self.rejected_mask = None
        self.ref_chosen_logps = self.ref_rejected_logps = None
        self.chosen_log_sum_sq_probs = self.rejected_log_sum_sq_probs = None
        return self

    # --- accessors objectives use -------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return int(self.chosen.seq.shape[0])

    @property
    def token_level(self) -> bool:
        return self.chosen.tokens is not None

    def require_token_level(self, why: str) -> None:
        if not self.token_level:
            raise ValueError(
                f"{why} needs per-token chosen_logps/rejected_logps with chosen_mask/rejected_mask; this batch was "
                "built from sequence sums (PreferenceBatch.from_sequence_logps)"
            )

    def require_reference(self, why: str) -> tuple[_Side, _Side]:
        if self.ref_chosen is None or self.ref_rejected is None:
            raise ValueError(
                f"{why} needs reference log-probs: ref_chosen_logps and ref_rejected_logps are missing from the batch"
            )
        return self.ref_chosen, self.ref_rejected

    def require_lengths(self, why: str) -> None:
        if getattr(self, "_from_seq", False) and not self._has_lengths:
            raise ValueError(
                f"{why} normalises by completion length: pass chosen_lengths and rejected_lengths to "
                "PreferenceBatch.from_sequence_logps"
            )

    def sequence_logps(self, aggregation: Aggregation = "sum") -> tuple[Tensor, Tensor]:
        """Policy (chosen, rejected) log-probs aggregated as the objective declares: ``sum`` or per-token ``mean``."""
        if aggregation == "sum":
            return self.chosen.seq, self.rejected.seq
        self.require_lengths("aggregation='mean'")
        return self.chosen.seq / self.chosen.lengths, self.rejected.seq / self.rejected.lengths


@dataclass
class UnpairedBatch:
    """Unpaired (KTO-style) data: one completion per row with a desirable (True) / undesirable (False) label.

    ``kl_logps`` / ``ref_kl_logps`` are summed log-probs ``(B,)`` of *mismatched* prompt/completion pairs
    (completion i with prompt i+1), which KTO uses to estimate the batch KL term.
    """

    logps: Tensor | None = None
    mask: Tensor | None = None
    labels: Tensor | None = None
    ref_logps: Tensor | None = None
    kl_logps: Tensor | None = None
    ref_kl_logps: Tensor | None = None
    side: _Side = field(init=False, repr=False)
    ref: _Side | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if getattr(self, "_from_seq", False):
            return
        if self.logps is None:
            raise ValueError("UnpairedBatch needs logps")
        if self.labels is None:
            raise ValueError("UnpairedBatch needs labels (True = desirable, False = undesirable)")
        self.side = _side_from_tokens("logps", self.logps, self.mask)
        self.mask = self.side.mask
        self.ref = _ref_side("ref_logps", self.ref_logps, None, self.side)
        self._finish()

    def _finish(self) -> None:
        b = self.side.seq.shape[0]
        labels = torch.as_tensor(self.labels, device=self.side.seq.device)
        _check_1d("labels", labels, b)
        if labels.dtype != torch.bool:
            if not ((labels == 0) | (labels == 1)).all():
                raise ValueError(f"labels must be boolean (or 0/1); got values {labels.unique().tolist()}")
            labels = labels.bool()
        self.labels = labels
        for name in ("kl_logps", "ref_kl_logps"):
            value = getattr(self, name)
            if value is not None:
                value = value.detach()  # the KL reference point carries no gradient (KTO, Eq. 7)
                setattr(self, name, value)
                _check_logps(name, value)
                if value.dim() != 1:
                    raise ValueError(
                        f"{name} must be summed log-probs of shape (N,); got {tuple(value.shape)}"
                    )

    @classmethod
    def from_sequence_logps(
        cls,
        logps: Tensor,
        labels: Tensor,
        ref_logps: Tensor | None = None,
        kl_logps: Tensor | None = None,
        ref_kl_logps: Tensor | None = None,
        lengths: Tensor | None = None,
    ) -> UnpairedBatch:
        self = cls.__new__(cls)
        self._from_seq = True
        self.side = _side_from_seq("logps", logps, lengths)
        self.ref = None
        if ref_logps is not None:
            _check_1d("ref_logps", ref_logps, self.side.seq.shape[0])
            self.ref = _side_from_seq("ref_logps", ref_logps.detach(), lengths)
        self.logps = self.mask = None
        self.ref_logps = ref_logps
        self.labels, self.kl_logps, self.ref_kl_logps = labels, kl_logps, ref_kl_logps
        self._finish()
        return self

    @property
    def batch_size(self) -> int:
        return int(self.side.seq.shape[0])

    def require_reference(self, why: str) -> _Side:
        if self.ref is None:
            raise ValueError(f"{why} needs reference log-probs: ref_logps is missing from the batch")
        return self.ref


@dataclass
class SFTBatch:
    """Supervised data: per-token log-probs of target tokens (``mask`` 1 where the loss applies)."""

    logps: Tensor
    mask: Tensor | None = None
    side: _Side = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.side = _side_from_tokens("logps", self.logps, self.mask)
        self.mask = self.side.mask

    @property
    def batch_size(self) -> int:
        return int(self.side.seq.shape[0])


@dataclass
class RewardBatch:
    """Scalar reward-model scores for chosen and rejected completions, with an optional per-pair margin."""

    chosen_rewards: Tensor
    rejected_rewards: Tensor
    margin: Tensor | None = None

    def __post_init__(self) -> None:
        if self.chosen_rewards.dim() != 1:
            raise ValueError(f"chosen_rewards must have shape (B,); got {tuple(self.chosen_rewards.shape)}")
        b = self.chosen_rewards.shape[0]
        _check_1d("rejected_rewards", self.rejected_rewards, b)
        _check_finite("chosen_rewards", self.chosen_rewards)
        _check_finite("rejected_rewards", self.rejected_rewards)
        if self.margin is not None:
            _check_1d("margin", self.margin, b)
            _check_finite("margin", self.margin)

    @property
    def batch_size(self) -> int:
        return int(self.chosen_rewards.shape[0])


Batch = PreferenceBatch | UnpairedBatch | SFTBatch | RewardBatch


@dataclass
class LossOutput:
    """What every objective returns: the scalar to backpropagate, per-example losses, and logged metrics.

    ``metrics`` use TRL's names (``rewards/chosen``, ``rewards/margins``, ``logps/chosen`` ...) as Python floats.
    ``state``: additive statistics for the objective's running state (its ``StateSpec``), summed by the trainer
    over micro-batches and ranks. ``by_normalisation``: for a mix of per-example and per-token objectives
    (``combine``), the weighted loss of each kind, so the trainer can weight each by its own batch share.
    """

    loss: Tensor
    losses: Tensor
    metrics: dict[str, float] = field(default_factory=dict)
    state: dict[str, float] = field(default_factory=dict)
    by_normalisation: dict[str, Tensor] | None = None
