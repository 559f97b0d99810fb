"""The effect tests' figures, recorded once and checked on every run: the single source of docs/claims.md.

An effect test calls :func:`record_claims` with the figures it measured. With ``ALIGNKIT_UPDATE_CLAIMS=1`` in the
environment the figures are written to ``docs/claims/results/<results_id>.json`` (with the test's node id, the date
and the git commit); otherwise the committed file is loaded and every figure must agree with it (numbers within
``tolerance``, strings exactly, lists element by element), so the board rendered from those files
(``python tools/build_claims.py``) can never drift from what the tests measure.

Workflow after a change that moves a figure::

    ALIGNKIT_UPDATE_CLAIMS=1 pytest tests/<the effect test> -m slow   # re-record
    python tools/build_claims.py                                     # regenerate docs/claims.md
"""

from __future__ import annotations

import datetime
import json
import math
import os
import pathlib
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "docs" / "claims" / "results"
UPDATE_ENV = "ALIGNKIT_UPDATE_CLAIMS"
# Default agreement for numbers: |measured - recorded| <= tol + tol·|recorded|. Deterministic CPU runs reproduce to
# far better than this; tests whose figures move between runs (floating-point reduction order in a testbed run) pass
# a looser tolerance and say why.
DEFAULT_TOLERANCE = 1e-6
# The check never asks for more than this agreement: the same test on another machine, or with another thread count,
# sums in another order, and a few evaluation samples flip (e.g. 0.6570 vs 0.6572 accuracy). 0.01 absolute + 1%
# relative keeps every figure the board prints to two decimals, and still catches a drifted claim (1.21 vs 1.54).
CHECK_FLOOR = 0.01
TRANSCRIBED = "transcribed from the hand-written board, not yet re-run"

Figure = float | int | str | list


def results_path(results_id: str) -> pathlib.Path:
    if not results_id or any(c in results_id for c in "/\\. ") or results_id != results_id.strip():
        raise ValueError(f"results id {results_id!r}: use letters, digits, '_' and '-' only")
    return RESULTS_DIR / f"{results_id}.json"


def _current_test() -> str:
    node = os.environ.get("PYTEST_CURRENT_TEST", "")
    return node.rsplit(" (", 1)[0] if node else ""


def _git_commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+uncommitted changes" if dirty else "")


def _plain(value: Any, name: str) -> Figure:
    """A JSON-able figure: python/numpy/torch scalars to float/int, tuples and arrays to lists."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"figure {name!r} is {value}; record only finite numbers")
        return value
    if isinstance(value, Sequence):
        return [_plain(v, f"{name}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"figure {name!r}: {type(value).__name__} is not a number, string or list")


def _disagreements(name: str, got: Any, want: Any, tol: float) -> list[str]:
    if isinstance(want, list) or isinstance(got, list):
        if not (isinstance(want, list) and isinstance(got, list)) or len(got) != len(want):
            return [f"{name}: measured {got!r}, recorded {want!r}"]
        return [
            m
            for i, (g, w) in enumerate(zip(got, want, strict=True))
            for m in _disagreements(f"{name}[{i}]", g, w, tol)
        ]
    if isinstance(want, str) or isinstance(got, str):
        return (
            []
            if got == want
            else [f"{name}: measured {got!r}, recorded {want!r} (labels must match exactly)"]
        )
    if _is_p_value(
        name
    ):  # a p-value of a near-null difference moves freely: ask only for the same side of 0.05
        if (got < 0.05) == (want < 0.05):
            return []
        return [f"{name}: measured p = {got!r}, recorded p = {want!r} (on different sides of 0.05)"]
    if abs(got - want) <= tol + tol * abs(want):
        return []
    return [f"{name}: measured {got!r}, recorded {want!r} (tolerance {tol:g} absolute + {tol:g} relative)"]


def _is_p_value(name: str) -> bool:
    """Figures named ``p``, ``p_*`` or ``*_p`` are p-values (the board's Holm correction reads them)."""
    base = name.split("[", 1)[0]
    return base == "p" or base.startswith("p_") or base.endswith("_p")


def record_claims(
    results_id: str,
    figures: Mapping[str, Any],
    *,
    tolerance: Mapping[str, float] | float = DEFAULT_TOLERANCE,
) -> None:
    """Write (``ALIGNKIT_UPDATE_CLAIMS=1``) or check the figures behind the claims-board rows that cite
    ``results_id``. ``tolerance`` is one number for every figure or a per-figure mapping (missing names take
    :data:`DEFAULT_TOLERANCE`); it is used both as an absolute and as a relative tolerance."""
    plain = {str(k): _plain(v, str(k)) for k, v in figures.items()}
    path = results_path(results_id)
    redo = (
        f"re-run this test with {UPDATE_ENV}=1 to re-record docs/claims/results/{results_id}.json, then "
        "`python tools/build_claims.py` to regenerate docs/claims.md, and check the rows' held labels"
    )
    if os.environ.get(UPDATE_ENV) == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "results_id": results_id,
            "test": _current_test(),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
            "commit": _git_commit(),
            "recorded_by": f"{UPDATE_ENV}=1 run of the test",
            "figures": plain,
        }
        path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
        return
    if not path.exists():
        raise AssertionError(f"no recorded figures at {path}: {redo}")
    record = json.loads(path.read_text())
    recorded = record["figures"]
    problems = [f"{k}: not measured by this test" for k in recorded if k not in plain]
    problems += [f"{k}: measured but not recorded" for k in plain if k not in recorded]
    for k in plain.keys() & recorded.keys():
        tol = tolerance.get(k, DEFAULT_TOLERANCE) if isinstance(tolerance, Mapping) else tolerance
        problems += _disagreements(k, plain[k], recorded[k], max(float(tol), CHECK_FLOOR))
    if problems:
        problems.sort()
        if record.get("recorded_by") == TRANSCRIBED:
            problems.insert(
                0, "(these figures were transcribed from the old hand-written board, never measured)"
            )
        raise AssertionError(
            f"figures differ from docs/claims/results/{results_id}.json:\n  "
            + "\n  ".join(problems)
            + f"\n{redo}"
        )


def interval_figures(name: str, interval: Mapping[str, Any], *, seeds: bool = True) -> dict[str, Any]:
    """The figures of one across-seed interval (:func:`alignkit.eval.metrics.seed_interval`) under the board's
    naming: ``name`` (mean), ``name_ci`` (95% interval) and, with ``seeds``, ``name_seeds`` (per-seed values)."""
    out = {name: interval["mean"], f"{name}_ci": interval["ci95"]}
    if seeds:
        out[f"{name}_seeds"] = interval["values"]
    return out
