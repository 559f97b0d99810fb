"""A trainer hook that simulates a crash: shared by the resume tests."""

from __future__ import annotations

from alignkit.train import Hook


class StopAt(Hook):
    """Raises ``KeyboardInterrupt`` at the start of step ``at`` (a crash after a checkpoint); ``at=0`` never."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_begin(self, ctx) -> None:  # noqa: ANN001
        if ctx.step == self.at:
            raise KeyboardInterrupt("stop")
