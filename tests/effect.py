"""Shared settings of the slow effect tests (testbed runs that show an objective's effect)."""

from __future__ import annotations

from typing import Any


def effect_base_config(task: str = "sentiment") -> Any:
    """The base model of the slow effect tests (~25 s to build on 2 cores, then cached for the session): a
    ~0.3 M-parameter Llama pretrained 200 steps. Large enough that DPO's effect on ``sentiment`` is clear
    (SFT 0.081 vs DPO 0.176 gold reward, non-overlapping CIs), small enough for CI."""
    from alignkit.testbed import get_task

    settings = dict(pretrain_steps=200, hidden_size=96, num_layers=2, num_heads=2, intermediate_size=256)
    if task == "sentiment":
        settings.update(vocab_size=1024, corpus_chars=1_500_000)
    return get_task(task).base_config(**settings)
