"""CLM: one identity-initialised layer before the stack, trained for alignment; inference mixes the logits of
the path with the layer and the path without it, with a control coefficient."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from alignkit.decoding._common import DecodeContext, pad_id_of, sample_text
from alignkit.decoding.dera import DeRaProcessor
from alignkit.registry import register

PAPER = "Adding Alignment Control to Language Models"


def _layers(model: nn.Module) -> nn.ModuleList:
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(
            "model.model.layers (a ModuleList of decoder layers, as in Llama/Qwen/Mistral) is required"
        )
    return layers


def _zero_output_projections(layer: nn.Module) -> int:
    """Zero the attention-output and MLP-down projections (weights and biases): the layer becomes the identity
    on the residual stream. Returns how many projections were zeroed (2 for Llama-style layers)."""
    n = 0
    for name, mod in layer.named_modules():
        if name.endswith(("o_proj", "down_proj")) and isinstance(mod, nn.Linear):
            with torch.no_grad():
                mod.weight.zero_()
                if mod.bias is not None:
                    mod.bias.zero_()
            n += 1
    if n != 2:
        raise ValueError(f"expected an o_proj and a down_proj Linear in the layer, found {n} of them")
    return n


def add_identity_layer(model: nn.Module, *, freeze_rest: bool = True) -> nn.Module:
    """A copy of ``model`` with an identity-initialised copy of its bottom layer inserted before layer 0.

    At insertion the new model computes exactly the original function. With ``freeze_rest`` only the new layer
    (``model.model.layers[0]``) is trainable — train it with any objective, the original model as reference
    (e.g. ``alignkit.train(objective="dpo", model=new, ref_model=model, ...)``). The copy is a plain HF model
    (``config.num_hidden_layers`` + 1, attention ``layer_idx`` renumbered) so it generates and saves normally.
    """
    layers = _layers(model)
    new = copy.deepcopy(model)
    extra = copy.deepcopy(layers[0])
    _zero_output_projections(extra)
    new_layers = _layers(new)
    new.model.layers = nn.ModuleList([extra, *new_layers])
    new.config.num_hidden_layers = len(new.model.layers)
    lt = getattr(new.config, "layer_types", None)
    if isinstance(lt, list) and lt:
        new.config.layer_types = [lt[0], *lt]
    for i, layer in enumerate(new.model.layers):
        for mod in layer.modules():
            if hasattr(mod, "layer_idx"):
                mod.layer_idx = i
    if freeze_rest:
        for p in new.parameters():
            p.requires_grad_(False)
        for p in new.model.layers[0].parameters():
            p.requires_grad_(True)
    return new


class ControlProcessor(DeRaProcessor):
    """Sampling runs on the unaligned model; the aligned path is mixed in with weight ``lam``:
    ``lam * z_aligned + (1 - lam) * z_unaligned`` (normalised per path)."""

    def __init__(
        self, aligned_model: nn.Module, lam: float, pad_token_id: int, *, use_cache: bool = True
    ) -> None:
        super().__init__(aligned_model, 1.0 - float(lam), pad_token_id, use_cache=use_cache)


@register(
    name="clm",
    verification="reconstruction",
    kind="decoder",
    family="logit_mixing",
    aliases=("alignment_control",),
    paper=PAPER,
    arxiv="2503.04346",
    tags=("decoding", "needs:ref_model"),
    summary="z = lam * z_aligned + (1 - lam) * z_unaligned, aligned = the model with the trained identity layer",
)
def clm(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    context: DecodeContext,
    *,
    lam: float = 1.0,
) -> list[list[str]]:
    """Adding Alignment Control to Language Models (Zhu, Zhang, Wang, ICML 2025; arXiv:2503.04346) — CLM.

    ``model`` is the model with the trained identity layer (:func:`add_identity_layer`), ``context.ref_model``
    the original model (the same network without the layer = the unaligned path).

    Formula:
        layer_0' = copy(layer_0) with o_proj = down_proj = 0      (identity on the residual stream)
        z_aligned = LM(layer_0'(embed(x)));  z_unaligned = LM(embed(x))   (shared upper layers)
        y_t ~ softmax(lam * z_aligned + (1 - lam) * z_unaligned)
        (lam = 0: the original model; lam = 1: the aligned model; lam > 1 extrapolates)

    Hyper-parameters:
        lam: alignment-control coefficient lambda (default 1.0, ours: the paper's value was not read here).

    Training the layer is ordinary preference learning on ``add_identity_layer(model)`` (only the new layer is
    trainable; the original model is the reference).

    Source: abstract of arXiv:2503.04346 (read via search: "adds one identity layer preceding the initial layers
    and performs preference learning only on this layer"; inference "processed through the aligned and
    unaligned layers, which are then merged through the interpolation coefficient"). Layer construction
    (layer-0 copy, zeroed o_proj/down_proj) and logit-level merge follow the catalogue's reading of the same
    authors' ReAligner code (#110/#115). UNVERIFIED: CLM's exact preference loss, beta and learning rate. Mixing
    normalised log-probs (done here) or raw logits gives the same per-token distribution.
    """
    base = context.need("ref_model", "clm")
    proc = ControlProcessor(model, lam, pad_token_id=pad_id_of(model, tokenizer))
    return sample_text(base, tokenizer, prompts, logits_processor=proc, **context.sampling)
