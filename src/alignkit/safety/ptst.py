"""PTST lives in :mod:`alignkit.data.ptst` (a data template the trainer applies); re-exported here."""

from alignkit.data.ptst import LLAMA2_SAFETY_PROMPT, ptst_messages, ptst_rows

__all__ = ["LLAMA2_SAFETY_PROMPT", "ptst_messages", "ptst_rows"]
