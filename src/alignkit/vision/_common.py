"""Shared checks of the vision / audio / text-to-image components."""

from __future__ import annotations

import torch
from torch import Tensor

from alignkit.spec import register_field

register_field("region_masks", "binary masks of image regions (B, H, W): boxes, anomaly masks", column="mask")


def check_maps(name: str, value: Tensor, dims: int) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a tensor; got {type(value).__name__}")
    if value.dim() != dims:
        raise ValueError(f"{name} must have {dims} dimensions; got shape {tuple(value.shape)}")
    if value.is_floating_point() and not torch.isfinite(value.detach()).all():
        raise ValueError(f"{name} holds a non-finite value (NaN or inf)")


def check_binary(name: str, value: Tensor) -> Tensor:
    if value.dtype != torch.bool and not ((value == 0) | (value == 1)).all():
        raise ValueError(f"{name} must be a 0/1 mask")
    return value.to(torch.float64 if value.dtype == torch.float64 else torch.float32)
