"""DistilBERT's triple loss: soft-target KL at a temperature, masked-LM cross-entropy, hidden-state cosine."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.registry import register_objective
from alignkit.spec import register_field
from alignkit.types import LossOutput

PAPER = "DistilBERT, a distilled version of BERT: smaller, faster, cheaper and lighter"

register_field(
    "student_logits",
    "the student's full-vocabulary logits at the distilled positions (N, V)",
    computed="the student forward (alignkit.objectives.distillation.student_forward)",
)
register_field(
    "teacher_hidden_states",
    "the teacher's last-layer hidden states (B, T, H) on the same input as the student",
    computed="alignkit.objectives.distillation.teacher_outputs(teacher, batch), once per batch, no grad",
)
register_field(
    "student_hidden_states",
    "the student's last-layer hidden states (B, T, H)",
    computed="the student forward (output_hidden_states)",
)
register_field(
    "mlm_labels",
    "masked-LM targets at the distilled positions (N,), -100 where a position is not a masked-LM target",
    computed="alignkit.objectives.distillation.mask_tokens (BERT's 80/10/10 masking); alignkit train (causal LM "
    "student): the next-token targets of the completion tokens",
)


def _check(name: str, value: Tensor, dims: int) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a tensor; got {type(value).__name__}")
    if value.dim() != dims:
        raise ValueError(f"{name} must have {dims} dimensions; got shape {tuple(value.shape)}")
    if value.is_floating_point() and not torch.isfinite(value.detach()).all():
        raise ValueError(f"{name} holds a non-finite value (NaN or inf)")


@dataclass
class DistillationBatch:
    """What a logit/hidden-state distillation objective reads.

    ``student_logits`` / ``teacher_logits``: (N, V) at the N distilled positions (DistilBERT's
    ``restrict_ce_to_mask``: the masked-LM positions; pass every non-pad position to distil all of them).
    ``mlm_labels``: (N,) token ids, -100 where a position has no masked-LM target (optional: without it the MLM
    term is 0). ``student_hidden`` / ``teacher_hidden``: (B, T, H) last-layer hidden states and ``hidden_mask``
    (B, T), 1 on real tokens (optional: without them the cosine term is 0).
    """

    student_logits: Tensor
    teacher_logits: Tensor | None = None
    mlm_labels: Tensor | None = None
    student_hidden: Tensor | None = None
    teacher_hidden: Tensor | None = None
    hidden_mask: Tensor | None = None

    def __post_init__(self) -> None:
        _check("student_logits", self.student_logits, 2)
        n, v = self.student_logits.shape
        if self.teacher_logits is not None:
            _check("teacher_logits", self.teacher_logits, 2)
            if tuple(self.teacher_logits.shape) != (n, v):
                raise ValueError(
                    f"teacher_logits has shape {tuple(self.teacher_logits.shape)}; student_logits has {(n, v)}"
                )
        if self.mlm_labels is not None:
            _check("mlm_labels", self.mlm_labels, 1)
            if self.mlm_labels.shape[0] != n or self.mlm_labels.is_floating_point():
                raise ValueError(
                    f"mlm_labels must be integer ids of shape ({n},); got {tuple(self.mlm_labels.shape)}"
                )
            bad = (self.mlm_labels != -100) & ((self.mlm_labels < 0) | (self.mlm_labels >= v))
            if bad.any():
                raise ValueError(f"mlm_labels holds ids outside [0, {v}) other than -100")
        hidden = (self.student_hidden, self.teacher_hidden, self.hidden_mask)
        if any(h is not None for h in hidden) and not all(h is not None for h in hidden):
            raise ValueError(
                "student_hidden, teacher_hidden and hidden_mask go together: give all three or none"
            )
        if self.student_hidden is not None:
            _check("student_hidden", self.student_hidden, 3)
            if self.teacher_hidden.shape != self.student_hidden.shape:
                raise ValueError(
                    f"teacher_hidden has shape {tuple(self.teacher_hidden.shape)}; student_hidden has "
                    f"{tuple(self.student_hidden.shape)}"
                )
            if tuple(self.hidden_mask.shape) != tuple(self.student_hidden.shape[:2]):
                raise ValueError(
                    f"hidden_mask must have shape {tuple(self.student_hidden.shape[:2])}; got "
                    f"{tuple(self.hidden_mask.shape)}"
                )
            if not self.hidden_mask.bool().any():
                raise ValueError("hidden_mask selects no position")


def soft_target_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 2.0) -> Tensor:
    """T^2 * mean over positions of KL(softmax(z_t / T) || softmax(z_s / T)) (DistilBERT's ``loss_ce``)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive; got {temperature}")
    log_ps = F.log_softmax(student_logits / temperature, dim=-1)
    log_pt = F.log_softmax(teacher_logits.detach() / temperature, dim=-1)
    kl = (log_pt.exp() * (log_pt - log_ps)).sum(-1)
    return kl.mean() * temperature**2


def hidden_cosine(student_hidden: Tensor, teacher_hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean over masked positions of 1 - cos(h_s, h_t) (``nn.CosineEmbeddingLoss`` with target 1)."""
    m = mask.bool()
    cos = F.cosine_similarity(student_hidden[m], teacher_hidden.detach()[m], dim=-1, eps=1e-8)
    return (1.0 - cos).mean()


def _example() -> str:
    return (
        "import torch, alignkit as ak\n"
        "from alignkit.objectives.distillation import DistillationBatch\n"
        "s = torch.randn(6, 50, requires_grad=True)\n"
        "batch = DistillationBatch(student_logits=s, teacher_logits=torch.randn(6, 50),\n"
        "    mlm_labels=torch.tensor([1, 2, -100, 4, 5, -100]), student_hidden=torch.randn(2, 4, 8),\n"
        "    teacher_hidden=torch.randn(2, 4, 8), hidden_mask=torch.ones(2, 4))\n"
        'out = ak.get("distilbert")(batch)\n'
        "out.loss.backward()\n"
        "print(out.loss, out.metrics)"
    )


@register_objective(
    name="distilbert",
    aliases=("distilbert_triple", "distilbert_kd"),
    paper=PAPER,
    arxiv="1910.01108",
    family="distillation",
    batch_type=DistillationBatch,
    requires=("student_logits", "teacher_logits"),
    optional={
        "mlm_labels": "no masked-LM targets: the MLM term is 0 (alpha_mlm unused)",
        "teacher_hidden_states": "no hidden states: the cosine term is 0 (alpha_cos unused)",
    },
    needs_reference=False,
    aggregation="mean",
    normalisation="token",
    tags=(
        "distillation",
        "modality:text",
        "algorithm:pointwise",
        "feedback:teacher-logits",
        "data:off-policy",
    ),
    verification="trl-parity",
)
def distilbert(
    batch: DistillationBatch,
    *,
    temperature: float = 2.0,
    alpha_ce: float = 5.0,
    alpha_mlm: float = 2.0,
    alpha_cos: float = 1.0,
) -> LossOutput:
    """DistilBERT, a distilled version of BERT: smaller, faster, cheaper and lighter (arXiv:1910.01108).

    The student (every other teacher layer, initialised from them) learns from three signals: the teacher's
    softened output distribution (soft-target KL at temperature T, scaled by T^2 so its gradient keeps its size
    as T changes), the masked-LM targets, and the direction of the teacher's last hidden states.

    Formula:
        L_ce  = T^2 * (1/N) sum_n KL( softmax(z_t,n / T) || softmax(z_s,n / T) )
        L_mlm = CE(z_s, y) over positions with a masked-LM target (y != -100)
        L_cos = mean over real tokens of 1 - cos(h_s, h_t)
        L = alpha_ce * L_ce + alpha_mlm * L_mlm + alpha_cos * L_cos

    Hyper-parameters:
        temperature: 2.0 — T (HF research_projects/distillation, train.py ``--temperature``).
        alpha_ce: 5.0 — weight of the soft-target KL (its README training command ``--alpha_ce 5.0``).
        alpha_mlm: 2.0 — weight of the masked-LM loss (same README command, ``--alpha_mlm 2.0``).
        alpha_cos: 1.0 — weight of the cosine loss (same README command, ``--alpha_cos 1.0``).

    In ``alignkit train --teacher`` (a causal LM student; alignkit.train.teacher) the masked-LM term becomes the
    student's next-token cross-entropy on the data's completion tokens (``mlm_labels`` = the next tokens, nothing
    masked: masked LM is not a causal LM's objective), and all three terms are on the positions that predict a
    completion token (docs/distillation.md).

    The KL term equals TRL's ``GKDTrainer.generalized_jsd_loss(beta=0, temperature=T)`` times T^2 (tested);
    the cosine term equals ``torch.nn.CosineEmbeddingLoss`` with target 1 (tested). The teacher's tensors are
    detached. Source: the paper §2 and HF ``examples/research_projects/distillation/distiller.py``.
    """
    if alpha_ce < 0 or alpha_mlm < 0 or alpha_cos < 0:
        raise ValueError("alpha_ce, alpha_mlm and alpha_cos must be >= 0")
    if batch.teacher_logits is None:
        raise ValueError("distilbert needs teacher_logits (compute them with teacher_outputs)")
    zero = batch.student_logits.new_zeros(())
    l_ce = soft_target_kl(batch.student_logits, batch.teacher_logits, temperature)
    l_mlm = zero
    if batch.mlm_labels is not None and (batch.mlm_labels != -100).any():
        l_mlm = F.cross_entropy(batch.student_logits, batch.mlm_labels, ignore_index=-100)
    l_cos = zero
    if batch.student_hidden is not None:
        l_cos = hidden_cosine(batch.student_hidden, batch.teacher_hidden, batch.hidden_mask)
    loss = alpha_ce * l_ce + alpha_mlm * l_mlm + alpha_cos * l_cos
    n = batch.student_logits.shape[0]
    return LossOutput(
        loss=loss,
        losses=loss.detach().expand(n),
        metrics={
            "loss_ce": float(l_ce.detach()),
            "loss_mlm": float(l_mlm.detach()),
            "loss_cos": float(l_cos.detach()),
        },
    )


distilbert.fn.example = _example()
