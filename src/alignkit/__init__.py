"""alignkit: the training objectives that align models, each verified against its paper.

import alignkit as ak
obj = ak.get("dpo")
out = obj(ak.PreferenceBatch(chosen_logps=..., rejected_logps=..., chosen_mask=..., rejected_mask=...,
                             ref_chosen_logps=..., ref_rejected_logps=...), beta=0.1)
out.loss.backward()
"""

from typing import Any

from alignkit import components as _components  # noqa: F401  (installs the registry's component loader)
from alignkit.composite import combine
from alignkit.registry import (
    Component,
    Objective,
    get,
    list_components,
    list_objectives,
    register,
    register_objective,
)
from alignkit.types import LossOutput, PreferenceBatch, RewardBatch, SFTBatch, UnpairedBatch

__version__ = "0.1.0"

_LAZY = {
    "TrainConfig": "alignkit.train.config",
    "TrainResult": "alignkit.train.trainer",
    "train": "alignkit.train.trainer",
}


def __getattr__(name: str) -> Any:
    """``ak.train`` / ``ak.TrainConfig`` import the trainer on first use, so ``import alignkit`` stays light."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'alignkit' has no attribute {name!r}")


__all__ = [
    "Component",
    "LossOutput",
    "Objective",
    "PreferenceBatch",
    "RewardBatch",
    "SFTBatch",
    "TrainConfig",
    "TrainResult",
    "UnpairedBatch",
    "combine",
    "get",
    "list_components",
    "list_objectives",
    "register",
    "register_objective",
    "train",
]
