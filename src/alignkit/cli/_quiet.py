"""Keep the terminal to alignkit's own rich bars: transformers' tqdm bars ("Loading weights", "Writing model
shards") and the Hub's download bars are switched off for CLI commands."""

from __future__ import annotations

import os


def quiet_transformers() -> None:
    """Disable transformers' and huggingface_hub's tqdm progress bars (warnings still show)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # also calls huggingface_hub.utils.disable_progress_bars()
