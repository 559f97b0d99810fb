"""Runnable examples for ``alignkit explain`` (the generic snippet builds LM batches; this family's batch differs)."""

from __future__ import annotations

from alignkit.registry import get

_LOGITS = "logits = torch.randn(4, 3, requires_grad=True)\ntargets = torch.tensor([0, 2, 1, 0])\n"
_CALL = 'out = ak.get("{name}")(batch)\nout.loss.backward()\nprint(out.loss, out.metrics)'
_HEAD = "import torch, alignkit as ak\nfrom alignkit.objectives.classification import ClassificationBatch\n"

EXAMPLES = {
    "plain": _LOGITS + "batch = ClassificationBatch(logits=logits, targets=targets)\n",
    "views": _LOGITS
    + "batch = ClassificationBatch(logits=logits, targets=targets, views=(torch.randn(4, 3), torch.randn(4, 3)))\n",
    "mixup": _LOGITS
    + "batch = ClassificationBatch(logits=logits, targets=targets, views=(torch.randn(4, 3),),\n"
    + "                            view_weights=torch.tensor([[0.7], [1.0], [0.6], [0.9]]))\n",
    "regression": "pred = torch.rand(4, requires_grad=True)\n"
    + "batch = ClassificationBatch(predictions=pred, targets=torch.tensor([0.1, 0.5, 0.9, 0.3]),\n"
    + "                            logits=torch.randn(4, 10, requires_grad=True))\n",
    "zerror": "pred = torch.rand(6, requires_grad=True)\n"
    + "batch = ClassificationBatch(predictions=pred, targets=torch.tensor([0.1, 0.5, 0.9, 0.3, 0.2, 9.0]))\n",
}

USES = {
    "squentropy": "plain",
    "comp_sum": "plain",
    "sum_exponential_loss": "plain",
    "generalized_cross_entropy": "plain",
    "mae_loss": "plain",
    "soft_jaccard": "plain",
    "jaccard_metric_loss": "plain",
    "correctness_aware_calibration": "plain",
    "score_se": "views",
    "augmix_jsd": "views",
    "rankmixup_mrl": "mixup",
    "rankmixup_mndcg": "mixup",
    "regression_plus_classification": "regression",
    "z_error": "zerror",
}

VQ_EXAMPLE = (
    "import torch, alignkit as ak\nfrom alignkit.objectives.classification import VQBatch\n"
    "z = torch.randn(8, 4, requires_grad=True)\ncodes = torch.randn(8, 4, requires_grad=True)\n"
    'out = ak.get("vq_commitment")(VQBatch(latents=z, codes=codes))\nout.loss.backward()\nprint(out.loss, out.metrics)'
)


def install() -> None:
    for name, kind in USES.items():
        get(name).fn.example = _HEAD + EXAMPLES[kind] + _CALL.format(name=name)
    get("vq_commitment").fn.example = VQ_EXAMPLE
