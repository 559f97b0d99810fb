"""GKD's token-level generalized Jensen-Shannon divergence between a teacher's and a student's next-token
distributions (the offline, supervised case: fixed completions, no student samples)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.objectives.distillation.distilbert import DistillationBatch
from alignkit.registry import register_objective
from alignkit.types import LossOutput

PAPER = "On-Policy Distillation of Language Models: Learning from Self-Generated Mistakes"


def _wide(x: Tensor) -> Tensor:
    """fp64 stays fp64; anything narrower is computed in fp32."""
    return x if x.dtype == torch.float64 else x.float()


def generalized_jsd(
    student_logits: Tensor, teacher_logits: Tensor, beta: float = 0.5, temperature: float = 1.0
) -> Tensor:
    """Per-position generalized JSD ``(N,)`` between softmax(z_t / T) and softmax(z_s / T) (no reduction).

    beta = 0: KL(p_t || p_s); beta = 1: KL(p_s || p_t); in between the mixture form (TRL's special cases)."""
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1]; got {beta}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive; got {temperature}")
    log_s = F.log_softmax(_wide(student_logits) / temperature, dim=-1)
    log_t = F.log_softmax(_wide(teacher_logits.detach()) / temperature, dim=-1)
    if beta == 0.0:
        return (log_t.exp() * (log_t - log_s)).sum(-1)
    if beta == 1.0:
        return (log_s.exp() * (log_s - log_t)).sum(-1)
    b = torch.tensor(beta, dtype=log_s.dtype, device=log_s.device)
    log_m = torch.logsumexp(torch.stack([log_s + torch.log1p(-b), log_t + torch.log(b)]), dim=0)
    kl_t = (log_t.exp() * (log_t - log_m)).sum(-1)
    kl_s = (log_s.exp() * (log_s - log_m)).sum(-1)
    return beta * kl_t + (1.0 - beta) * kl_s


def _example() -> str:
    return (
        "import torch, alignkit as ak\n"
        "from alignkit.objectives.distillation import DistillationBatch\n"
        "batch = DistillationBatch(student_logits=torch.randn(6, 50, requires_grad=True),\n"
        "                          teacher_logits=torch.randn(6, 50))\n"
        'out = ak.get("gkd")(batch, beta=0.5)\n'
        "out.loss.backward()\n"
        "print(out.loss, out.metrics)"
    )


@register_objective(
    name="gkd",
    aliases=("generalized_jsd", "gkd_jsd"),
    paper=PAPER,
    arxiv="2306.13649",
    family="distillation",
    batch_type=DistillationBatch,
    requires=("student_logits", "teacher_logits"),
    needs_reference=False,
    aggregation="mean",
    normalisation="token",
    ranges={"beta": "[0, 1]", "temperature": "(0, inf)"},
    tags=(
        "distillation",
        "modality:text",
        "algorithm:pointwise",
        "feedback:teacher-logits",
        "data:off-policy",
    ),
    verification="trl-parity",
)
def gkd(batch: DistillationBatch, *, beta: float = 0.5, temperature: float = 1.0) -> LossOutput:
    """On-Policy Distillation of Language Models: Learning from Self-Generated Mistakes (GKD, Agarwal et al.,
    arXiv:2306.13649): the generalized Jensen-Shannon divergence between the teacher's and the student's
    next-token distributions, averaged over the distilled (completion) tokens.

    This is GKD's loss on a fixed data set (TRL's ``lmbda = 0``, ``seq_kd = False``: supervised KD on the data's
    completions). On-policy GKD (``lmbda > 0``: completions sampled from the student) is not done here.

    Formula:
        p_t = softmax(z_t / T), p_s = softmax(z_s / T), M = beta p_t + (1 - beta) p_s
        JSD_beta(n) = beta KL(p_t || M) + (1 - beta) KL(p_s || M)          (0 < beta < 1)
        JSD_0(n) = KL(p_t || p_s) (forward KL);  JSD_1(n) = KL(p_s || p_t) (reverse KL)
        L = (1/N) sum_n JSD_beta(n)       over the N distilled positions

    Hyper-parameters:
        beta: 0.5 — interpolation between forward (0) and reverse (1) KL (TRL ``GKDConfig.beta`` default; the
            paper's Eq. 1 with its mixture weight; it sweeps beta in §5).
        temperature: 1.0 — softmax temperature of both distributions in the loss (TRL
            ``GKDTrainer.generalized_jsd_loss`` default, and the value ``GKDTrainer.compute_loss`` uses: TRL's
            ``GKDConfig.temperature`` is the sampling temperature of on-policy generation, not the loss's).
            No T^2 factor (as TRL).

    The loss equals TRL 1.16's ``GKDTrainer.generalized_jsd_loss(student, teacher, labels, beta, temperature)``
    with its default ``batchmean`` reduction over the non-ignored labels (tested in-process, beta in
    {0, 0.1, 0.5, 0.9, 1}). The endpoints are TRL's special cases (the mixture formula itself tends to 0 at
    beta = 0 and beta = 1). The teacher's logits are detached.
    """
    if batch.teacher_logits is None:
        raise ValueError("gkd needs teacher_logits")
    per = generalized_jsd(batch.student_logits, batch.teacher_logits, beta, temperature)
    loss = per.mean()
    with torch.no_grad():
        fkl = generalized_jsd(batch.student_logits, batch.teacher_logits, 0.0, temperature).mean()
    return LossOutput(loss=loss, losses=per.detach(), metrics={"kl/teacher_student": float(fkl)})


gkd.fn.example = _example()
