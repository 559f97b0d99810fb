"""Aligning latent spaces with flow priors: a frozen flow-matching velocity field as a regulariser of latents."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from alignkit.objectives.representation._batches import check_float, example
from alignkit.registry import register_objective
from alignkit.spec import register_field
from alignkit.types import LossOutput

register_field(
    "latents_and_prior",
    "learnable latents (B, D) and a frozen velocity field v(x, t) pretrained by flow matching (FlowPriorBatch)",
)


@dataclass
class FlowPriorBatch:
    """``latents`` (B, D): the encoder's latents to align; ``velocity``: the frozen flow-matching velocity
    field, ``velocity(x (N, D), t (N,)) -> (N, D)``, pretrained on target features with x_t = (1-t) eps + t y;
    ``noise`` (K, B, D) and ``times`` (K, B): optional fixed draws of eps ~ N(0, I) and t ~ U(0, 1) (K draws
    per latent)."""

    latents: Tensor
    velocity: Callable[[Tensor, Tensor], Tensor]
    noise: Tensor | None = None
    times: Tensor | None = None

    def __post_init__(self) -> None:
        self.latents = check_float("FlowPriorBatch", "latents", self.latents, dims=2)
        if not callable(self.velocity):
            raise ValueError("FlowPriorBatch.velocity must be a callable velocity(x, t)")
        if (self.noise is None) != (self.times is None):
            raise ValueError("FlowPriorBatch.noise and FlowPriorBatch.times must be given together")
        if self.noise is not None:
            self.noise = check_float("FlowPriorBatch", "noise", self.noise, dims=3)
            if tuple(self.noise.shape[1:]) != tuple(self.latents.shape):
                raise ValueError(
                    f"FlowPriorBatch.noise must have shape (K, {', '.join(map(str, self.latents.shape))})"
                )
            self.times = check_float("FlowPriorBatch", "times", self.times, dims=2)
            if tuple(self.times.shape) != tuple(self.noise.shape[:2]):
                raise ValueError(f"FlowPriorBatch.times must have shape {tuple(self.noise.shape[:2])}")


@register_objective(
    name="flow_prior_alignment",
    aliases=("flow_prior",),
    paper="Aligning Latent Spaces with Flow Priors",
    arxiv="2506.05240",
    family="representation",
    needs_reference=False,
    batch_type=FlowPriorBatch,
    requires=("latents_and_prior",),
    tags=("latent-alignment", "flow-matching", "modality:image", "modality:cross-modal"),
    verification="reconstruction",
)
@example(
    """
import torch, alignkit as ak
from alignkit.objectives.representation.flow_prior import FlowPriorBatch
mu = torch.tensor([1.0, -1.0])
v = lambda x, t: mu + ((2 * t - 1) / ((1 - t) ** 2 + t**2)).unsqueeze(-1) * (x - t.unsqueeze(-1) * mu)  # N(mu, I)
batch = FlowPriorBatch(latents=torch.randn(8, 2, requires_grad=True), velocity=v)
out = ak.get("flow_prior_alignment")(batch)
out.loss.backward()
print(out.loss, out.metrics)
"""
)
def flow_prior_alignment(batch: FlowPriorBatch, *, draws: int = 1) -> LossOutput:
    """Aligning Latent Spaces with Flow Priors (arXiv:2506.05240): the flow-matching loss of a frozen
    velocity field, with the latents in the place of the data — a surrogate for -log p_target(z).

    Formula:
        x_t = (1 - t) eps + t z,   eps ~ N(0, I),  t ~ U(0, 1)
        L(z) = E_{t, eps} || v_phi(x_t, t) - (z - eps) ||^2        (v_phi frozen; gradients reach z only)

    Hyper-parameters:
        draws: 1 — (t, eps) draws per latent when the batch carries none (drawn from torch's global generator);
            ignored when the batch gives ``noise`` and ``times``.

    Reconstruction: from the abstract; the interpolation convention (t = 1 at the data) is the catalogue's
    reading. Freeze v_phi's parameters (``requires_grad_(False)``): this function does not.
    With the exact velocity field of N(mu, I) the loss grows with ||z - mu|| (tested).
    """
    z = batch.latents
    if batch.noise is None:
        if draws < 1:
            raise ValueError(f"draws must be >= 1; got {draws}")
        eps = torch.randn(draws, *z.shape, dtype=z.dtype, device=z.device)
        t = torch.rand(draws, z.shape[0], dtype=z.dtype, device=z.device)
    else:
        eps, t = batch.noise, batch.times
    k = eps.shape[0]
    x_t = (1 - t).unsqueeze(-1) * eps + t.unsqueeze(-1) * z.unsqueeze(0)
    v = batch.velocity(x_t.reshape(-1, z.shape[1]), t.reshape(-1)).reshape(k, *z.shape)
    losses = (v - (z.unsqueeze(0) - eps)).square().sum(-1).mean(0)
    return LossOutput(loss=losses.mean(), losses=losses, metrics={"flow_prior/loss": losses.mean().item()})
