"""Lisa: lazy safety alignment — alternate alignment-data and user-data states with a proximal term."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from alignkit.registry import register
from alignkit.safety._common import Pair, Stream, StreamLoss, sft_nll, snapshot, take_grads, trainable
from alignkit.train.hooks import Hook, MicroBatch, TrainContext
from alignkit.types import LossOutput

ALIGNMENT, FINETUNE = "alignment", "finetune"


class LisaHook(Hook):
    """Lazy Safety Alignment for Large Language Models against Harmful Fine-tuning (Huang et al., 2024;
    arXiv:2405.18641) — Lisa, Bi-State Optimisation with a proximal term.

    Used in the *user fine-tuning* stage: the trainer trains on the user's data; this hook switches every
    ``alignment_steps`` / ``finetune_steps`` optimizer steps between an alignment state (the step's gradient is
    that of the alignment stream, the user batch is discarded as in the official code) and a fine-tuning state
    (the trainer's own loss). Each state is pulled towards the last iterate of the other state.

    Formula:
        alignment state:   L = f_align(w) + rho/2 * ||w - w_ft||^2
        fine-tuning state: L = f_user(w)  + rho/2 * ||w - w_align||^2
        w_ft / w_align = the weights when the fine-tuning / alignment state was last left (both = the initial
        weights at the start); the proximal term is active only after ``proximal_start * total_steps`` steps.
        State schedule (official ``check_mode``): start in alignment (if alignment_steps > 0), switch to
        fine-tuning after alignment_steps steps, back after finetune_steps steps, and so on.

    Hyper-parameters:
        alignment: the alignment stream ``[(prompt_ids, completion_ids), ...]`` (e.g. refusals of harmful
            prompts); may be empty only when ``alignment_steps=0``.
        rho: proximal strength (default 1, official ``lisa_poison_ratio.sh``).
        alignment_steps: steps per alignment state (default 100, official ``alignment_step``).
        finetune_steps: steps per fine-tuning state (default 900, official ``finetune_step``).
        proximal_start: fraction of the run before the proximal term switches on (default 0.1, hard-coded
            ``0.1 * len(train_dataloader) * epochs`` in the official trainer).
        batch_size: alignment examples per alignment step (default 5, the official batch size).
        loss_fn: ``loss_fn(ctx, pairs) -> scalar`` alignment loss f_align (default token-mean SFT NLL).
            Operational (alignkit's interface, not a paper hyper-parameter).
        seed: shuffling seed of the alignment stream.
            Operational (alignkit's interface, not a paper hyper-parameter).

    ``rho=0`` and ``alignment_steps=0`` give plain fine-tuning step for step. Logged per step: ``lisa/state``
    (1 = alignment, 0 = fine-tuning), ``lisa/alignment_loss`` on alignment steps, ``hook/LisaHook`` (the
    proximal term in fine-tuning steps) and ``lisa/proximal`` (in alignment steps). The logged ``loss`` of an
    alignment step is the discarded user loss. Under DDP the alignment passes are not all-reduced.

    Source: verified against the official code as indexed (git-disl/Booster ``trainer.py`` ``ADMMTrainer``:
    ``init``, ``switch_model``, ``check_mode``, ``training_step`` with
    ``loss += rho/2 * ||param - finetune_weights||^2`` / ``... - alignment_weights`` after 10% of the steps).
    Defaults from the catalog's reading of git-disl/Lisa ``script/finetune/lisa_poison_ratio.sh`` (not
    re-read). Unverified: the paper's text itself.
    """

    def __init__(
        self,
        alignment: Sequence[Pair],
        *,
        rho: float = 1.0,
        alignment_steps: int = 100,
        finetune_steps: int = 900,
        proximal_start: float = 0.1,
        batch_size: int = 5,
        loss_fn: StreamLoss | None = None,
        seed: int = 0,
    ) -> None:
        if rho < 0:
            raise ValueError(f"LisaHook: rho must be >= 0, got {rho}")
        for name, v in (("alignment_steps", alignment_steps), ("finetune_steps", finetune_steps)):
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"LisaHook: {name} must be a non-negative integer, got {v!r}")
        if alignment_steps == 0 and finetune_steps == 0:
            raise ValueError("LisaHook: alignment_steps and finetune_steps cannot both be 0")
        self.stream = Stream(alignment, batch_size, seed, "LisaHook alignment") if alignment_steps else None
        self.rho = float(rho)
        self.alignment_steps = alignment_steps
        self.finetune_steps = finetune_steps
        self.proximal_start = float(proximal_start)
        self.loss_fn = loss_fn or sft_nll
        self.states: list[str] = []
        self._last: dict[str, float] = {}

    # --- state machine (official check_mode / switch_model) -------------------------------------------------
    def on_train_begin(self, ctx: TrainContext) -> None:
        self.status = ALIGNMENT if self.alignment_steps else FINETUNE
        self.w_align = snapshot(ctx.model)
        self.w_ft = snapshot(ctx.model)
        self.clock = 0
        self.steps = 0

    def on_step_begin(self, ctx: TrainContext) -> None:
        if self.status == ALIGNMENT:
            if self.clock % self.alignment_steps == 0 and self.steps and self.finetune_steps:
                self.status = FINETUNE
                self.w_align = snapshot(ctx.model)
                self.clock = 0
        elif self.clock % self.finetune_steps == 0 and self.steps and self.alignment_steps:
            self.status = ALIGNMENT
            self.w_ft = snapshot(ctx.model)
            self.clock = 0
        self.states.append(self.status)
        self._last = {"lisa/state": 1.0 if self.status == ALIGNMENT else 0.0}

    def _proximal_on(self, ctx: TrainContext) -> bool:
        return self.rho > 0 and self.steps > self.proximal_start * ctx.total_steps

    def _proximal(self, ctx: TrainContext, anchor: dict[str, Tensor]) -> Tensor:
        terms = [((p - anchor[n]) ** 2).sum() for n, p in trainable(ctx.model)]
        return self.rho / 2 * torch.stack(terms).sum()

    def extra_loss(self, ctx: TrainContext, micro: MicroBatch, out: LossOutput) -> Tensor | None:
        if self.status == FINETUNE and self._proximal_on(ctx):
            return self._proximal(ctx, self.w_align)
        return None

    def on_after_backward(self, ctx: TrainContext) -> None:
        if self.status == ALIGNMENT:
            assert self.stream is not None
            take_grads(ctx.model)  # the user batch's gradient is discarded in the alignment state
            loss = self.loss_fn(ctx, self.stream.next())
            self._last["lisa/alignment_loss"] = float(loss.detach())
            if self._proximal_on(ctx):
                prox = self._proximal(ctx, self.w_ft)
                self._last["lisa/proximal"] = float(prox.detach())
                loss = loss + prox
            loss.backward()
        self.steps += 1
        self.clock += 1

    def on_step_end(self, ctx: TrainContext, record: dict[str, Any]) -> None:
        record.update(self._last)


register(
    name="lisa",
    verification="paper-formula",
    kind="defence",
    family="harmful_finetuning",
    paper="Lazy Safety Alignment for Large Language Models against Harmful Fine-tuning",
    arxiv="2405.18641",
    tags=("safety", "hook", "finetuning-stage"),
    summary="alternate alignment/user-data states, each with rho/2 ||w - w_other_state||^2, as a trainer hook",
)(LisaHook)
