"""The run's log on rank 0: ``history.jsonl`` (when there is an output folder), the ``report_to`` loggers and a
rich progress bar.

``report_to`` (TRL / transformers' name): ``tensorboard`` writes ``<output>/tensorboard`` with
``torch.utils.tensorboard.SummaryWriter`` (what transformers' ``TensorBoardCallback`` uses), ``wandb`` logs to
Weights & Biases with ``wandb.init`` / ``wandb.log`` (as ``WandbCallback``; ``WANDB_PROJECT``, ``WANDB_MODE``
and the other ``WANDB_*`` variables apply; files under ``<output>/wandb``), ``none`` nothing, ``all`` every one of
them whose library is installed. Each gets the scalars of every ``history.jsonl`` record, at its step. A logger
asked for by name whose library is not installed is refused at start, naming the package to install. The
transformers callbacks themselves are not reused: they read a ``TrainerState`` and ``TrainingArguments`` this
trainer does not have.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from alignkit.errors import UserError
from alignkit.train.config import TrainConfig

_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except ValueError:  # a module whose __spec__ is None (stubbed out)
        return False


def report_targets(cfg: TrainConfig) -> list[str]:
    """The loggers ``report_to`` asks for, ``all`` expanded to those installed; ``--no-tensorboard`` drops it."""
    asked = list(dict.fromkeys(cfg.report_to))
    if "none" in asked:
        if len(asked) > 1:
            raise UserError(f"report_to (--report-to): 'none' with other loggers ({', '.join(asked)})")
        return []
    if "all" in asked:
        asked = [t for t in asked if t != "all"] + [t for t in _PACKAGES if t not in asked and _installed(t)]
    return [t for t in asked if t != "tensorboard" or cfg.tensorboard]


def check_report_to(targets: list[str]) -> list[str]:
    """``targets``, or a :class:`UserError` naming each logger whose library is not installed."""
    missing = [t for t in targets if not _installed(_PACKAGES[t])]
    if missing:
        pkgs = " ".join(_PACKAGES[t] for t in missing)
        raise UserError(
            f"report_to {', '.join(missing)}: the {pkgs} package is not installed (pip install {pkgs}), "
            "or drop it from --report-to"
        )
    return targets


class RunLogger:
    def __init__(self, cfg: TrainConfig, out: Path | None, total: int, start: int, rank: int) -> None:
        self.active = rank == 0
        self.jsonl = None
        self.tb = None
        if self.active and out is not None:
            self.jsonl = open(out / "history.jsonl", "a", encoding="utf-8")  # noqa: SIM115
        targets = report_targets(cfg) if self.active else []
        if "tensorboard" in targets and out is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))
        self.wandb = None
        if "wandb" in targets:
            import wandb

            kw: dict[str, Any] = {
                "project": os.environ.get("WANDB_PROJECT", "alignkit"),
                "config": cfg.to_dict(),
            }
            if out is not None:
                kw.update(dir=str(out), name=out.name)
            self.wandb = wandb.init(**kw)
        self.progress = None
        if self.active and cfg.progress:
            from rich.progress import TextColumn

            from alignkit.engine._progress import make_progress

            self.progress = make_progress(False, TextColumn("{task.fields[info]}"))
            self.progress.start()
            label = cfg.progress_label or "training"
            self.task = self.progress.add_task(label, total=total, completed=start, info="")

    def log(self, record: dict[str, Any], write: bool) -> None:
        if not self.active:
            return
        if write and self.jsonl is not None:
            self.jsonl.write(json.dumps(record) + "\n")
            self.jsonl.flush()
        if write and (self.tb is not None or self.wandb is not None):
            step = record["step"]
            scalars = {
                (f"train/{k}" if "/" not in k else k): v
                for k, v in record.items()
                if k != "step" and isinstance(v, (int, float))
            }
            if self.tb is not None:
                for k, v in scalars.items():
                    self.tb.add_scalar(k, v, step)
            if self.wandb is not None:
                self.wandb.log(scalars, step=step)
        if self.progress is not None:
            info = f"loss {record['loss']:.4f}"
            for key, label in (("rewards/margins", "margin"), ("rewards/accuracies", "acc")):
                if key in record:
                    info += f" {label} {record[key]:.3f}"
            self.progress.update(self.task, completed=record["step"], info=info)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.jsonl is not None:
            self.jsonl.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()
