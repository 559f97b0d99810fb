"""alignkit: the training objectives that align models, each verified against its paper.

import alignkit as ak
obj = ak.get("dpo")
out = obj(ak.PreferenceBatch(chosen_logps=..., rejected_logps=..., chosen_mask=..., rejected_mask=...,
                             ref_chosen_logps=..., ref_rejected_logps=...), beta=0.1)
out.loss.backward()
"""

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
from alignkit.train import TrainConfig, TrainResult, train  # noqa: E402  (after the objective API it uses)
from alignkit.types import LossOutput, PreferenceBatch, RewardBatch, SFTBatch, UnpairedBatch

__version__ = "0.1.0"

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
