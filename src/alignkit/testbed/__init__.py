"""The testbed: tiny base models built here, tasks with ground-truth rewards, preference data with known truth,
and :func:`run_arena`, which trains several objectives on the same data and judges them by the gold reward.

>>> from alignkit.testbed import get_base_model, get_task
>>> base = get_base_model("sentiment")
"""

from alignkit.testbed.model import BaseModel, BaseModelConfig, cache_root, get_base_model
from alignkit.testbed.preferences import (
    bradley_terry_probability,
    build_pairs,
    draw_labels,
    label_probability,
    read_jsonl,
    unpaired_view,
    write_jsonl,
)
from alignkit.testbed.tasks import TASKS, ArithTask, Prompt, SafetyTask, SentimentTask, Task, get_task

__all__ = [
    "TASKS",
    "ArithTask",
    "BaseModel",
    "BaseModelConfig",
    "Prompt",
    "SafetyTask",
    "SentimentTask",
    "Task",
    "bradley_terry_probability",
    "build_pairs",
    "cache_root",
    "draw_labels",
    "get_base_model",
    "get_task",
    "label_probability",
    "read_jsonl",
    "unpaired_view",
    "write_jsonl",
]
