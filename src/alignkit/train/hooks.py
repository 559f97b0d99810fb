"""Hook points in the training step, for methods that are not a loss alone.

A hook subclasses :class:`Hook` and overrides any of the methods; the trainer calls them in this order for
every optimizer step::

    on_step_begin(ctx)                    # before the micro-batches: perturb weights (Vaccine/Booster),
                                          # fetch a second data stream, switch layers on/off (Lisa)
    for each micro-batch:
        out = objective(batch)            # the registered objective; the engine builds the batch
        extra = extra_loss(ctx, micro, out)   # added to the loss before backward: proximal term to an
                                          # anchor, a loss on a second stream (use ctx.score(...))
        backward((out.loss + extras) * micro weight)
    on_after_backward(ctx)                # gradients accumulated, before clipping: extra forward/backward
                                          # passes, gradient surgery, restoring perturbed weights
    clip, optimizer.step(), scheduler.step()
    on_step_end(ctx, record)              # after the update: projections, weight edits; add to the record
                                          # that is logged (record is the history dict of the step)

``on_train_begin(ctx)`` / ``on_train_end(ctx)`` bracket the run. ``ctx`` is a :class:`TrainContext`: the
policy (``ctx.model``, unwrapped; ``ctx.ddp_model`` for forwards that must sync under DDP), the optimizer and
scheduler, the step number, the config, the objective and its resolved hyper-parameters, and helpers:
``ctx.score(prompt_ids, completion_ids)`` returns per-token log-probs of the policy with gradients
(:class:`alignkit.engine.TokenLogps`), ``ctx.reference`` the reference handler, and ``ctx.state`` a dict a
hook may keep things in. Extra losses are logged as ``hook/<ClassName>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.engine.logprobs import TokenLogps, completion_logps, join
from alignkit.types import LossOutput


@dataclass
class MicroBatch:
    """What one micro-batch held: the examples, the built objective batch, and its loss weight in the step."""

    examples: list[Any]
    batch: Any
    weight: float


@dataclass
class TrainContext:
    config: Any
    model: nn.Module
    ddp_model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    objective: Any
    hyper_parameters: dict[str, Any]
    reference: Any
    tokenizer: Any
    device: torch.device
    pad_token_id: int
    rank: int = 0
    world_size: int = 1
    step: int = 0
    total_steps: int = 0
    state: dict[str, Any] = field(default_factory=dict)

    def score(self, prompt_ids: list[list[int]], completion_ids: list[list[int]]) -> TokenLogps:
        """Per-token log-probs of ``completion | prompt`` under the policy (with gradients when enabled)."""
        ids, att, comp = join(prompt_ids, completion_ids, self.pad_token_id, self.device)
        return completion_logps(self.model, ids, att, comp)


class Hook:
    """Override any of these; the defaults do nothing."""

    def on_train_begin(self, ctx: TrainContext) -> None:
        return None

    def on_step_begin(self, ctx: TrainContext) -> None:
        return None

    def extra_loss(self, ctx: TrainContext, micro: MicroBatch, out: LossOutput) -> Tensor | None:
        return None

    def on_after_backward(self, ctx: TrainContext) -> None:
        return None

    def on_step_end(self, ctx: TrainContext, record: dict[str, Any]) -> None:
        return None

    def on_train_end(self, ctx: TrainContext) -> None:
        return None


class ProximalHook(Hook):
    """Example hook: ``coef * ||theta - theta_anchor||^2`` towards the weights at the start of training."""

    def __init__(self, coef: float = 1e-3) -> None:
        self.coef = coef
        self.anchor: dict[str, Tensor] = {}

    def on_train_begin(self, ctx: TrainContext) -> None:
        self.anchor = {n: p.detach().clone() for n, p in ctx.model.named_parameters() if p.requires_grad}

    def extra_loss(self, ctx: TrainContext, micro: MicroBatch, out: LossOutput) -> Tensor | None:
        terms = [
            ((p - self.anchor[n]) ** 2).sum() for n, p in ctx.model.named_parameters() if n in self.anchor
        ]
        return self.coef * torch.stack(terms).sum()
