"""Row validation shared by the curation rules: clear errors naming the row and the field."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def check_row(row: Any, i: int) -> dict[str, Any]:
    """``row`` itself, or a ``ValueError`` naming row ``i`` when it is not a dict."""
    if not isinstance(row, dict):
        raise ValueError(f"row {i}: must be a dict, got {type(row).__name__}")
    return row


def annotated(
    rows: Sequence[Any], order: Sequence[int], field: str, values: Sequence[float]
) -> list[dict[str, Any]]:
    """``rows[i]`` for ``i`` in ``order`` (copies), each with ``field = values[i]`` added."""
    return [{**check_row(rows[i], i), field: float(values[i])} for i in order]


def field_str(row: Any, i: int, name: str, *, allow_empty: bool = False) -> str:
    """``row[name]`` as a string, or a ``ValueError`` naming row ``i`` and the field."""
    check_row(row, i)
    if name not in row:
        raise ValueError(f"row {i}: missing field {name!r}")
    v = row[name]
    if not isinstance(v, str):
        raise ValueError(f"row {i}: field {name!r} must be a string, got {type(v).__name__}")
    if not allow_empty and not v.strip():
        raise ValueError(f"row {i}: field {name!r} is empty")
    return v


def field_ids(row: Any, i: int, name: str, *, allow_empty: bool = False) -> list[int]:
    """``row[name]`` as a list of token ids, or a ``ValueError`` naming row ``i`` and the field."""
    check_row(row, i)
    if name not in row:
        raise ValueError(f"row {i}: missing field {name!r}")
    v = row[name]
    if not isinstance(v, (list, tuple)) or not all(isinstance(t, int) for t in v):
        raise ValueError(f"row {i}: field {name!r} must be a list of token ids (ints)")
    if not allow_empty and not v:
        raise ValueError(f"row {i}: field {name!r} is empty")
    return list(v)


def check_fraction(name: str, value: float, *, allow_zero: bool = False) -> None:
    ok = (0 <= value <= 1) if allow_zero else (0 < value <= 1)
    if not isinstance(value, (int, float)) or not ok:
        raise ValueError(f"{name} must be in {'[0, 1]' if allow_zero else '(0, 1]'}, got {value!r}")


def n_keep(n: int, frac: float) -> int:
    """ceil(frac * n), at least 1 when n > 0."""
    return min(n, max(1, math.ceil(frac * n - 1e-9))) if n else 0


def check_scores(scores: Sequence[float], n_rows: int, name: str = "scores") -> list[float]:
    out = [float(s) for s in scores]
    if len(out) != n_rows:
        raise ValueError(f"{name} has {len(out)} entries but there are {n_rows} rows")
    for i, s in enumerate(out):
        if not math.isfinite(s):
            raise ValueError(f"{name}[{i}] (row {i}) is not finite: {s}")
    return out
