"""Training: ``alignkit.train(objective=..., model=..., data=...)`` and ``alignkit train`` on the CLI."""

from alignkit.train.config import TrainConfig
from alignkit.train.hooks import Hook, MicroBatch, ProximalHook, TrainContext
from alignkit.train.trainer import TrainResult, train

__all__ = ["Hook", "MicroBatch", "ProximalHook", "TrainConfig", "TrainContext", "TrainResult", "train"]
