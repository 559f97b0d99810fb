"""Model plumbing shared by the engine: unwrap wrappers, find backbone and LM head, the model's device."""

from __future__ import annotations

import torch
from torch import nn


def unwrap_model(model: nn.Module) -> nn.Module:
    """The underlying ``PreTrainedModel`` (through DDP / peft / accelerate wrappers)."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):  # DDP, FSDP-like wrappers
            model = model.module
        elif hasattr(model, "get_base_model"):  # peft: adapters are injected in place
            model = model.get_base_model()
        else:
            return model


def _backbone_and_head(model: nn.Module) -> tuple[nn.Module | None, nn.Module]:
    base = unwrap_model(model)
    head = base.get_output_embeddings()
    if head is None:
        raise TypeError(f"{type(base).__name__} has no output embeddings (LM head); is it a causal LM?")
    decoder = None
    if hasattr(base, "get_decoder"):
        try:
            decoder = base.get_decoder()
        except (AttributeError, NotImplementedError):
            decoder = None
    if decoder is base:
        decoder = None
    return decoder, head


def model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")
