"""The run's log: JSONL + TensorBoard on rank 0 (when there is an output folder) and a rich progress bar."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from alignkit.train.config import TrainConfig


class RunLogger:
    def __init__(self, cfg: TrainConfig, out: Path | None, total: int, start: int, rank: int) -> None:
        self.active = rank == 0
        self.jsonl = None
        self.tb = None
        if self.active and out is not None:
            self.jsonl = open(out / "history.jsonl", "a", encoding="utf-8")  # noqa: SIM115
            if cfg.tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self.tb = SummaryWriter(str(out / "tensorboard"))
                except ImportError:  # pragma: no cover
                    warnings.warn("tensorboard is not installed; logging to JSONL only", stacklevel=2)
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
        if write and self.tb is not None:
            step = record["step"]
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"train/{k}" if "/" not in k else k, v, step)
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
