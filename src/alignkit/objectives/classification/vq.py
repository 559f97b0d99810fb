"""Straightening out the straight-through estimator: VQ with an affine re-parameterised codebook, alternating
optimisation and the synchronised commitment update."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from alignkit.registry import register_objective
from alignkit.spec import register_field
from alignkit.types import LossOutput

PAPER = "Straightening Out the Straight-Through Estimator: Overcoming Optimization Challenges in Vector Quantized Networks"

register_field("vq_latents", "encoder outputs z (N, D) to quantise (VQBatch.latents)")
register_field("vq_codes", "the quantised vectors q = c_k(z) (N, D) selected for each latent (VQBatch.codes)")


@dataclass
class VQBatch:
    """Latents ``z`` (N, D) and the code vectors ``q`` (N, D) a quantiser picked for them (both carry gradient:
    ``q`` to the codebook, ``z`` to the encoder)."""

    latents: Tensor
    codes: Tensor

    def __post_init__(self) -> None:
        for name in ("latents", "codes"):
            t = getattr(self, name)
            if not isinstance(t, Tensor) or t.dim() != 2 or not t.is_floating_point():
                raise ValueError(
                    f"VQBatch.{name} must be a floating (N, D) tensor; got {getattr(t, 'shape', t)!r}"
                )
        if self.latents.shape != self.codes.shape:
            raise ValueError(
                f"VQBatch.codes {tuple(self.codes.shape)} must match latents {tuple(self.latents.shape)}"
            )


def vq_loss_terms(z: Tensor, q: Tensor, beta: float) -> Tensor:
    """Per-vector VQ loss (N,): ||sg(z) - q||^2 + beta ||z - sg(q)||^2 (mean over dimensions)."""
    return (z.detach() - q).pow(2).mean(-1) + beta * (z - q.detach()).pow(2).mean(-1)


@register_objective(
    name="vq_commitment",
    paper=PAPER,
    arxiv="2305.08842",
    family="classification",
    needs_reference=False,
    batch_type=VQBatch,
    requires=("vq_latents", "vq_codes"),
    tags=("modality:vision", "modality:audio", "vector-quantization", "straight-through"),
    verification="official-code-parity",
)
def vq_commitment(batch: VQBatch, *, beta: float = 0.25) -> LossOutput:
    """Straightening Out the Straight-Through Estimator (Huh, Cheung, Agrawal, Isola; ICML 2023;
    arXiv:2305.08842): the codebook + commitment loss of a vector-quantised network.

    The straight-through output and the paper's fixes live in :class:`VectorQuantizer` (affine codebook,
    synchronised update) and :func:`alternating_step` (alternating optimisation); this is the loss term.

    Formula:
        L = mean_n ( ||sg(z_n) - q_n||^2 + beta * ||z_n - sg(q_n)||^2 ) / D

    Hyper-parameters:
        beta: 0.25 — the commitment weight of VQ-VAE (van den Oord et al. 2017) that the paper builds on. The
            authors' vqtorch writes the same loss as (1 - b) commit + b codebook with b = 0.95; set
            beta = (1 - b) / b and scale by b to match it.
    """
    terms = vq_loss_terms(batch.latents, batch.codes, beta)
    return LossOutput(loss=terms.mean(), losses=terms, metrics={"vq_loss": float(terms.detach().mean())})


class VectorQuantizer(nn.Module):
    """Nearest-code vector quantiser with the paper's fixes (as in the authors' vqtorch ``VectorQuant``).

    ``affine=True``: the codebook used is ``c_k = (1 + a * s) * c~_k + a * b`` with a learnt per-dimension scale
    ``s`` and shift ``b`` (zero-initialised, ``a = affine_lr``) so the whole codebook follows the encoder's
    distribution, not only the selected codes. ``sync_nu > 0``: the synchronised update — the output is
    ``z + sg(q - z) + nu * q - sg(nu * q)``, which has the value of ``q`` but also sends ``nu`` times the task
    gradient to the selected code, moving it with the encoder.

    Formula:
        k(z) = argmin_k ||z - c_k||,  q = c_{k(z)},  c_k = (1 + a s) * c~_k + a b   (affine; s = b = 0 at init)
        z_out = z + sg(q - z) + nu q - sg(nu q)       (value q; d z_out/d z = I; d z_out/d q = nu I)

    Hyper-parameters:
        beta: 0.25 — commitment weight (VQ-VAE's; see :func:`vq_commitment`).
        sync_nu: 0.0 — no synchronised update (vqtorch's default; the paper's experiments use nu > 0, e.g. 2.0 in
            its README examples).
        affine_lr: 0.0 — no affine reparameterisation (vqtorch's default; the README uses 2.0).
    """

    def __init__(
        self, num_codes: int, dim: int, *, beta: float = 0.25, sync_nu: float = 0.0, affine_lr: float = 0.0
    ) -> None:
        super().__init__()
        self.codebook = nn.Parameter(torch.randn(num_codes, dim))
        self.beta = beta
        self.sync_nu = sync_nu
        self.affine_lr = affine_lr
        if affine_lr > 0:
            self.affine_scale = nn.Parameter(torch.zeros(dim))
            self.affine_bias = nn.Parameter(torch.zeros(dim))

    def effective_codebook(self) -> Tensor:
        if self.affine_lr > 0:
            return (
                1 + self.affine_lr * self.affine_scale
            ) * self.codebook + self.affine_lr * self.affine_bias
        return self.codebook

    def codebook_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n.startswith(("codebook", "affine_"))]

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(z_out, loss, indices)`` for latents ``z`` (N, D)."""
        cb = self.effective_codebook()
        with torch.no_grad():
            idx = torch.cdist(z.detach(), cb.detach()).argmin(-1)
        q = cb[idx]
        loss = vq_commitment(VQBatch(z, q), beta=self.beta).loss
        out = z + (q - z).detach()
        if self.sync_nu > 0:
            out = out + self.sync_nu * q - (self.sync_nu * q).detach()
        return out, loss, idx


def alternating_step(
    loss_fn: Callable[[], Tensor],
    encoder_optimizer: torch.optim.Optimizer,
    codebook_optimizer: torch.optim.Optimizer,
    *,
    codebook_steps: int = 1,
) -> float:
    """The paper's alternating optimisation: ``codebook_steps`` updates of the codebook with the encoder fixed,
    then one encoder (and decoder) update, each on a fresh ``loss_fn()``. Returns the last loss.

    ``encoder_optimizer`` must not hold the codebook's parameters, ``codebook_optimizer`` nothing else.
    """
    if codebook_steps < 1:
        raise ValueError(f"codebook_steps must be >= 1; got {codebook_steps}")
    for _ in range(codebook_steps):
        encoder_optimizer.zero_grad(set_to_none=True)
        codebook_optimizer.zero_grad(set_to_none=True)
        loss_fn().backward()
        codebook_optimizer.step()
    encoder_optimizer.zero_grad(set_to_none=True)
    codebook_optimizer.zero_grad(set_to_none=True)
    loss = loss_fn()
    loss.backward()
    encoder_optimizer.step()
    encoder_optimizer.zero_grad(set_to_none=True)
    codebook_optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())
