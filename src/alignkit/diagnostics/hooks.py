"""The training diagnostics as trainer hooks: each logs its numbers into the step record (history.jsonl and
TensorBoard) every ``every`` steps, measured on a fixed probe batch so values are comparable across steps.

    from alignkit.diagnostics.hooks import CurvatureHook, causal_lm_probe
    probe = causal_lm_probe(input_ids)                  # (B, T) token ids of a held-out batch
    ak.train(..., hooks=[CurvatureHook(probe, every=10)])

This module imports the trainer's Hook API; the diagnostics themselves (``alignkit.diagnostics.hessian`` ...)
do not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.diagnostics._curvature import LossFn, trainable
from alignkit.diagnostics.class_imbalance import loss_by_frequency
from alignkit.diagnostics.flatness import hessian_trace
from alignkit.diagnostics.hessian import adam_preconditioner, hessian_top_eigenvalue
from alignkit.diagnostics.loss_dynamics import zero_sum_ratio
from alignkit.train.hooks import Hook, TrainContext

Probe = Callable[[nn.Module], LossFn]


def causal_lm_probe(input_ids: Tensor, attention_mask: Tensor | None = None) -> Probe:
    """``probe(model)`` -> a deterministic next-token loss of ``model`` on this fixed batch."""

    def probe(model: nn.Module) -> LossFn:
        ids = input_ids.to(next(model.parameters()).device)
        labels = ids if attention_mask is None else ids.masked_fill(attention_mask.to(ids.device) == 0, -100)

        def loss_fn() -> Tensor:
            return model(input_ids=ids, attention_mask=attention_mask, labels=labels).loss

        return loss_fn

    return probe


class _EveryHook(Hook):
    def __init__(self, every: int) -> None:
        if every < 1:
            raise ValueError("every must be >= 1")
        self.every = every

    def due(self, ctx: TrainContext) -> bool:
        return ctx.step % self.every == 0 or ctx.step == ctx.total_steps

    def on_step_end(self, ctx: TrainContext, record: dict[str, Any]) -> None:
        if not self.due(ctx):
            return
        was = ctx.model.training
        ctx.model.eval()  # deterministic probe (no dropout)
        try:
            record.update(self.measure(ctx, record))
        finally:
            ctx.model.train(was)
            ctx.model.zero_grad(set_to_none=True)

    def measure(self, ctx: TrainContext, record: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


class CurvatureHook(_EveryHook):
    """``curvature/lambda_max``, ``curvature/eta_lambda`` (instability when > 2) and, under Adam,
    ``curvature/pre_lambda_max`` of the preconditioned Hessian (arXiv:2110.04369)."""

    def __init__(self, probe: Probe, every: int = 10, iters: int = 20, preconditioned: bool = True) -> None:
        super().__init__(every)
        self.probe, self.iters, self.preconditioned = probe, iters, preconditioned

    def measure(self, ctx: TrainContext, record: dict[str, Any]) -> dict[str, Any]:
        params = trainable(ctx.model)
        r = hessian_top_eigenvalue(
            self.probe(ctx.model), params, iters=self.iters, learning_rate=record.get("learning_rate")
        )
        out = {"curvature/lambda_max": r["lambda_max"]}
        if "eta_lambda" in r:
            out["curvature/eta_lambda"] = r["eta_lambda"]
        pre = adam_preconditioner(ctx.optimizer, params) if self.preconditioned else None
        if pre is not None:
            rp = hessian_top_eigenvalue(self.probe(ctx.model), params, iters=self.iters, preconditioner=pre)
            out["curvature/pre_lambda_max"] = rp["lambda_max"]
        return out


class FlatnessHook(_EveryHook):
    """``flatness/hessian_trace`` (Hutchinson) and its standard error (arXiv:2210.14199)."""

    def __init__(self, probe: Probe, every: int = 10, n_samples: int = 8) -> None:
        super().__init__(every)
        self.probe, self.n_samples = probe, n_samples

    def measure(self, ctx: TrainContext, record: dict[str, Any]) -> dict[str, Any]:
        r = hessian_trace(self.probe(ctx.model), trainable(ctx.model), n_samples=self.n_samples)
        return {"flatness/hessian_trace": r["trace"], "flatness/trace_stderr": r["trace_stderr"]}


def causal_lm_logits(input_ids: Tensor) -> Callable[[nn.Module], tuple[Tensor, Tensor, Tensor]]:
    """``fn(model)`` -> (next-token logits, targets, last hidden states) on a fixed batch (for ImbalanceHook)."""

    def fn(model: nn.Module) -> tuple[Tensor, Tensor, Tensor]:
        ids = input_ids.to(next(model.parameters()).device)
        with torch.no_grad():
            out = model(input_ids=ids, output_hidden_states=True)
        return out.logits[:, :-1], ids[:, 1:], out.hidden_states[-1][:, :-1]

    return fn


class ImbalanceHook(_EveryHook):
    """``imbalance/loss_g{k}`` and ``imbalance/grad_share_g{k}`` per token-frequency group (arXiv:2402.19449);
    ``counts``: token frequencies in the training data (vocabulary-sized)."""

    def __init__(
        self,
        logits_fn: Callable[[nn.Module], tuple[Tensor, Tensor, Tensor]],
        counts: Tensor,
        every: int = 10,
        n_groups: int = 4,
    ) -> None:
        super().__init__(every)
        self.logits_fn, self.counts, self.n_groups = logits_fn, counts, n_groups

    def measure(self, ctx: TrainContext, record: dict[str, Any]) -> dict[str, Any]:
        logits, targets, hidden = self.logits_fn(ctx.model)
        r = loss_by_frequency(logits, targets, self.counts, n_groups=self.n_groups, features=hidden)
        out = {}
        for k in range(self.n_groups):
            out[f"imbalance/loss_g{k}"] = float(r["loss_per_group"][k])
            out[f"imbalance/grad_share_g{k}"] = float(r["grad_share_per_group"][k])
        return out


class ZeroSumHook(_EveryHook):
    """``zsl/zero_sum_ratio`` of per-example loss changes between measurements, and ``zsl/improved_fraction``
    (arXiv:2506.05447); ``per_example_loss(model) -> (n,)`` losses on a fixed probe set."""

    def __init__(self, per_example_loss: Callable[[nn.Module], Tensor], every: int = 10) -> None:
        super().__init__(every)
        self.per_example_loss = per_example_loss
        self.previous: Tensor | None = None

    def on_train_begin(self, ctx: TrainContext) -> None:
        with torch.no_grad():
            self.previous = self.per_example_loss(ctx.model).detach().double().cpu()

    def measure(self, ctx: TrainContext, record: dict[str, Any]) -> dict[str, Any]:
        with torch.no_grad():
            now = self.per_example_loss(ctx.model).detach().double().cpu()
        out: dict[str, Any] = {}
        if self.previous is not None:
            r = zero_sum_ratio(self.previous, now)
            out = {"zsl/zero_sum_ratio": r["zero_sum_ratio"], "zsl/improved_fraction": r["improved_fraction"]}
        self.previous = now
        return out


def per_token_lm_loss(input_ids: Tensor) -> Callable[[nn.Module], Tensor]:
    """``fn(model)`` -> per-token next-token losses (flattened) on a fixed batch (for ZeroSumHook)."""

    def fn(model: nn.Module) -> Tensor:
        ids = input_ids.to(next(model.parameters()).device)
        logits = model(input_ids=ids).logits[:, :-1]
        return torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1), reduction="none"
        )

    return fn


class SignalPropagationHook(_EveryHook):
    """``signal/{layer}`` = tangent-kernel / label alignment of each layer (arXiv:2110.11749) on a probe batch
    ``(x, y)``; ``forward(model, x) -> (n, k)`` outputs (e.g. last-position logits of an LM), ``groups`` limits
    the layers measured (a Jacobian per layer: keep the probe batch and the groups small)."""

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        every: int = 50,
        forward: Callable[[nn.Module, Tensor], Tensor] | None = None,
        groups: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(every)
        self.x, self.y, self.forward, self.groups = x, y, forward, groups

    def measure(self, ctx: TrainContext, record: dict[str, Any]) -> dict[str, Any]:
        from alignkit.diagnostics.signal_propagation import layer_alignment

        r = layer_alignment(ctx.model, self.x, self.y, groups=self.groups, forward=self.forward)
        return {f"signal/{k}": v for k, v in r.items()}
