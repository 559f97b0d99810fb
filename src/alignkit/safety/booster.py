"""Booster: alignment-stage defence that attenuates the harmful-loss reduction of a simulated harmful step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from alignkit.registry import register
from alignkit.safety._common import Pair, Stream, StreamLoss, global_norm, sft_nll, take_grads, trainable
from alignkit.train.hooks import Hook, TrainContext


class BoosterHook(Hook):
    """Booster: Tackling Harmful Fine-tuning for Large Language Models via Attenuating Harmful Perturbation
    (Huang et al., 2024; arXiv:2409.01586).

    Used in the *alignment* stage: the trainer runs the usual objective on alignment (refusal) data, and this
    hook adds the Booster regulariser computed on a second, harmful stream, so that a later harmful fine-tuning
    step reduces the harmful loss less.

    Formula:
        min_w  f(w) + lam * [ h(w) - h(w_tilde) ],   w_tilde = w - alpha * grad h(w) / ||grad h(w)||
        gradient used (first order, the direction treated as a constant, as in the official code):
            g = grad f(w) + lam * grad h(w) - lam * grad h(w_tilde)
        f = the trainer's objective on its data; h = ``loss_fn`` on a batch of the harmful stream
        (default: token-mean SFT NLL of the harmful completions); ||.|| = global L2 norm over trainable
        parameters (+1e-7, as in the code). Three forward/backward passes per step.

    Hyper-parameters:
        harmful: the harmful stream, ``[(prompt_ids, completion_ids), ...]``.
        lam: regulariser strength lambda (default 5, the official alignment script's ``lamb``); 0 gives
            plain alignment training step for step.
        alpha: step size of the simulated harmful perturbation (default 0.1, official ``alpha``).
        batch_size: harmful examples per step (default 10, the official batch size).
        loss_fn: ``loss_fn(ctx, pairs) -> scalar`` harmful loss h (default token-mean SFT NLL).
            Operational (alignkit's interface, not a paper hyper-parameter).
        seed: shuffling seed of the harmful stream.
            Operational (alignkit's interface, not a paper hyper-parameter).

    Implementation: in ``on_after_backward`` the accumulated grad f is set aside, grad h(w) is computed, the
    weights are moved to w_tilde, grad h(w_tilde) is computed, the weights are copied back bit-exactly, and the
    grads become ``grad f + lam * (grad h(w) - grad h(w_tilde))`` before clipping. Logged: ``booster/harmful_loss``
    (h(w)) and ``booster/harmful_loss_perturbed`` (h(w_tilde)); their difference is what Booster shrinks.
    Under DDP the harmful passes run on the unwrapped model and are not all-reduced (each rank uses its own
    harmful batch).

    Source: verified against the official code (git-disl/Booster ``trainer.py``, ``BoosterAlignmentTrainer
    .training_step``: ``param.data -= alpha * stored_grads / grad_norm``; harmful loss recomputed; weights
    restored; ``grad += lamb * stored_grads - lamb * perturb_grads``), read through the code index; defaults
    (lamb=5, alpha=0.1) from the catalog's reading of ``script/alignment/smooth_align.sh`` (not re-read here).
    Unverified: the paper's own equations were not read (only its README and code).
    """

    def __init__(
        self,
        harmful: Sequence[Pair],
        *,
        lam: float = 5.0,
        alpha: float = 0.1,
        batch_size: int = 10,
        loss_fn: StreamLoss | None = None,
        seed: int = 0,
    ) -> None:
        if lam < 0:
            raise ValueError(f"BoosterHook: lam must be >= 0, got {lam}")
        if alpha < 0:
            raise ValueError(f"BoosterHook: alpha must be >= 0, got {alpha}")
        self.stream = Stream(harmful, batch_size, seed, "BoosterHook harmful")
        self.lam = float(lam)
        self.alpha = float(alpha)
        self.loss_fn = loss_fn or sft_nll
        self.last: dict[str, float] = {}

    def on_after_backward(self, ctx: TrainContext) -> None:
        model = ctx.model
        params = trainable(model)
        align_grads = take_grads(model)
        batch = self.stream.next()
        # grad h(w)
        h = self.loss_fn(ctx, batch)
        h.backward()
        g_h = {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)) for n, p in params}
        for _, p in params:
            p.grad = None
        norm = global_norm(list(g_h.values())) + 1e-7
        saved = {n: p.detach().clone() for n, p in params}
        with torch.no_grad():
            for n, p in params:
                p.sub_((self.alpha * g_h[n] / norm).to(p.dtype))
        # grad h(w_tilde)
        h_tilde = self.loss_fn(ctx, batch)
        h_tilde.backward()
        with torch.no_grad():
            for n, p in params:
                p.copy_(saved[n])
                g_t = p.grad if p.grad is not None else torch.zeros_like(p)
                g_f = align_grads[n]
                reg = self.lam * g_h[n] - self.lam * g_t
                p.grad = reg if g_f is None else g_f + reg
        self.last = {
            "booster/harmful_loss": float(h.detach()),
            "booster/harmful_loss_perturbed": float(h_tilde.detach()),
        }

    def on_step_end(self, ctx: TrainContext, record: dict[str, Any]) -> None:
        record.update(self.last)


register(
    name="booster",
    verification="paper-formula",
    kind="defence",
    family="harmful_finetuning",
    paper="Booster: Tackling Harmful Fine-tuning for Large Language Models via Attenuating Harmful Perturbation",
    arxiv="2409.01586",
    tags=("safety", "hook", "alignment-stage"),
    summary="alignment loss + lam * (h(w) - h(w - alpha grad h / ||grad h||)), first order, as a trainer hook",
)(BoosterHook)
