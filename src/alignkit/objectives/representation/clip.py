"""CLIP's softmax InfoNCE and SigLIP's pairwise sigmoid loss for paired (image, text) embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from alignkit.objectives.representation._batches import PairBatch, check_positive, example
from alignkit.registry import register_objective
from alignkit.types import LossOutput

_EXAMPLE = """
import torch, alignkit as ak
from alignkit.objectives.representation import PairBatch
batch = PairBatch(a=torch.randn(8, 16, requires_grad=True), b=torch.randn(8, 16))
out = ak.get("{name}")(batch)
out.loss.backward()
print(out.loss, out.metrics)
"""


@register_objective(
    name="clip",
    aliases=("clip_infonce", "clip_softmax"),
    paper="Learning Transferable Visual Models From Natural Language Supervision",
    arxiv="2103.00020",
    family="representation",
    needs_reference=False,
    batch_type=PairBatch,
    requires=("paired_embeddings",),
    optional={"logit_scale": "the fixed scale 1/temperature"},
    tags=("contrastive", "in-batch-negatives", "modality:cross-modal", "modality:image", "modality:text"),
    verification="library-parity",
)
@example(_EXAMPLE.format(name="clip"))
def clip(batch: PairBatch, *, temperature: float = 0.07, label_smoothing: float = 0.0) -> LossOutput:
    """Learning Transferable Visual Models From Natural Language Supervision (CLIP's symmetric InfoNCE,
    arXiv:2103.00020).

    Formula:
        x_i = a_i / ||a_i||, y_j = b_j / ||b_j||,  l_ij = s * <x_i, y_j>,  s = batch.logit_scale or 1/temperature
        L = ( mean_i CE(softmax_j l_ij, i) + mean_j CE(softmax_i l_ij, j) ) / 2
        (with label_smoothing e the target puts 1-e on the match and e/B on every column)

    Hyper-parameters:
        temperature: 0.07 — the paper's initial temperature (§2.5: "initialized to the equivalent of 0.07");
            used only when the batch carries no learnable ``logit_scale`` (which is exp(t), as in open_clip).
        label_smoothing: 0.0 — none in CLIP; the improved CLIP baselines (arXiv:2305.08675) use 0.1.

    Equal to open_clip's ``ClipLoss`` (open_clip_torch 3.3.0 ``loss.py``) on normalised features (tested).
    """
    check_positive("temperature", temperature)
    x, y = F.normalize(batch.a, dim=-1), F.normalize(batch.b, dim=-1)
    scale = batch.logit_scale if batch.logit_scale is not None else torch.tensor(1.0 / temperature)
    logits = scale * x @ y.T
    target = torch.arange(batch.batch_size, device=x.device)
    li = F.cross_entropy(logits, target, reduction="none", label_smoothing=label_smoothing)
    lt = F.cross_entropy(logits.T, target, reduction="none", label_smoothing=label_smoothing)
    losses = (li + lt) / 2
    acc = (logits.argmax(1) == target).float().mean().item()
    return LossOutput(
        loss=losses.mean(),
        losses=losses,
        metrics={"contrastive/accuracy": acc, "contrastive/logit_scale": float(scale.detach())},
    )


@register_objective(
    name="siglip",
    aliases=("sigmoid_contrastive", "siglip_loss"),
    paper="Sigmoid Loss for Language Image Pre-Training",
    arxiv="2303.15343",
    family="representation",
    needs_reference=False,
    batch_type=PairBatch,
    requires=("paired_embeddings",),
    optional={
        "logit_scale": "the fixed t = logit_scale hyper-parameter",
        "logit_bias": "the fixed b = logit_bias hyper-parameter",
    },
    tags=("contrastive", "pairwise-sigmoid", "modality:cross-modal", "modality:image", "modality:text"),
    verification="library-parity",
)
@example(_EXAMPLE.format(name="siglip"))
def siglip(batch: PairBatch, *, logit_scale: float = 10.0, logit_bias: float = -10.0) -> LossOutput:
    """Sigmoid Loss for Language Image Pre-Training (SigLIP, arXiv:2303.15343).

    Every (image, text) pair of the batch is an independent binary problem — matched (i = j) or not — so the
    loss needs no softmax over the batch.

    Formula:
        x_i = a_i / ||a_i||, y_j = b_j / ||b_j||,  z_ij = +1 if i = j else -1
        l_ij = t * <x_i, y_j> + b,   t = exp(t') (batch.logit_scale) , b = batch.logit_bias
        L = -(1/B) sum_i sum_j log sigmoid(z_ij * l_ij)

    Hyper-parameters:
        logit_scale: 10.0 — t when the batch carries none: the paper's initialisation t' = log 10 (§3.2).
        logit_bias: -10.0 — b when the batch carries none: the paper's initialisation (§3.2, so that training
            starts close to the prior of mostly negative pairs).

    Train t' and b by passing ``logit_scale=t_prime.exp()`` and ``logit_bias=b`` in the batch. Equal to
    open_clip's ``SigLipLoss`` (open_clip_torch 3.3.0 ``loss.py``, one process) on normalised features (tested).
    """
    check_positive("logit_scale", logit_scale)
    x, y = F.normalize(batch.a, dim=-1), F.normalize(batch.b, dim=-1)
    t = batch.logit_scale if batch.logit_scale is not None else torch.tensor(float(logit_scale))
    b = batch.logit_bias if batch.logit_bias is not None else torch.tensor(float(logit_bias))
    logits = t * x @ y.T + b
    n = batch.batch_size
    z = 2 * torch.eye(n, dtype=logits.dtype, device=logits.device) - 1
    losses = -F.logsigmoid(z * logits).sum(1)  # per image, summed over its B texts
    return LossOutput(
        loss=losses.sum() / n,
        losses=losses,
        metrics={
            "contrastive/accuracy": (logits.argmax(1) == torch.arange(n, device=logits.device))
            .float()
            .mean()
            .item(),
            "siglip/t": float(t.detach()),
            "siglip/b": float(b.detach()),
            "siglip/pos_prob": torch.sigmoid(logits.diagonal()).mean().item(),
        },
    )
