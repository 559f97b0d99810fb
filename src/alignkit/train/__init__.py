"""Training: ``alignkit.train(objective=..., model=..., data=...)`` and ``alignkit train`` on the CLI.

Names are imported on first use, so importing a submodule (``alignkit.train.hooks``) does not load the trainer.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_WHERE = {
    "TrainConfig": "alignkit.train.config",
    "Hook": "alignkit.train.hooks",
    "MicroBatch": "alignkit.train.hooks",
    "ProximalHook": "alignkit.train.hooks",
    "TrainContext": "alignkit.train.hooks",
    "TrainResult": "alignkit.train.trainer",
    "train": "alignkit.train.trainer",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'alignkit.train' has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """``alignkit.train`` is both this package and the function ``alignkit.train(...)``: once the package is
    imported it is the attribute ``alignkit.train``, so calling it trains."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from alignkit.train.trainer import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
