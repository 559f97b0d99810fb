"""A rich progress bar as a context manager yielding ``advance(n, status)``; silent when disabled."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True) -> Iterator[Callable[[int, str], None]]:
    if not enabled:
        yield lambda n=1, status="": None
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, transient=False) as prog:
        tid = prog.add_task(description, total=total, status="")

        def advance(n: int = 1, status: str = "") -> None:
            prog.update(tid, advance=n, status=status)

        yield advance
