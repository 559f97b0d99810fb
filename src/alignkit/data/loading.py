"""Read rows from JSONL, JSON, Parquet, CSV, ``datasets`` folders (``save_to_disk``), lists or ``Dataset``s."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Record:
    """One input row and where it came from (``source`` is a file path or ``"data"``; ``row`` is 1-based)."""

    source: str
    row: int
    fields: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.source} row {self.row}"


def _jsonl(path: Path) -> list[Record]:
    out = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"{path} row {n}: not valid JSON ({exc.msg} at column {exc.colno})"
                ) from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path} row {n}: expected a JSON object, got {type(obj).__name__}")
            out.append(Record(str(path), n, obj))
    return out


def _rows(source: str, rows: Iterable[Any]) -> list[Record]:
    out = []
    for n, obj in enumerate(rows, start=1):
        if not isinstance(obj, dict):
            raise ValueError(f"{source} row {n}: expected a mapping of fields, got {type(obj).__name__}")
        out.append(Record(source, n, dict(obj)))
    return out


def load_records(data: Any) -> list[Record]:
    """All rows of ``data``: a path (file or ``save_to_disk`` folder), a list of dicts, or a ``datasets.Dataset``."""
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if not path.exists():
            raise FileNotFoundError(f"data file {path} does not exist")
        if path.is_dir():
            import datasets

            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if "train" not in ds:
                    raise ValueError(f"{path}: a DatasetDict without a 'train' split (has {list(ds)})")
                ds = ds["train"]
            return _rows(str(path), ds)
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            return _jsonl(path)
        if suffix == ".json":
            try:
                obj = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                return _jsonl(path)  # JSON lines under a .json name
            if isinstance(obj, dict) and isinstance(obj.get("data"), list):
                obj = obj["data"]
            if not isinstance(obj, list):
                raise ValueError(f"{path}: expected a JSON list of rows (or {{'data': [...]}})")
            return _rows(str(path), obj)
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return _rows(str(path), pq.read_table(path).to_pylist())
        if suffix in (".csv", ".tsv"):
            with path.open(encoding="utf-8", newline="") as f:
                reader = csv.DictReader(f, delimiter="\t" if suffix == ".tsv" else ",")
                # row numbers are file lines: the header is line 1
                return [Record(str(path), n + 1, dict(r)) for n, r in enumerate(reader, start=1)]
        raise ValueError(
            f"{path}: unknown data format {suffix!r}; use .jsonl, .json, .parquet, .csv or a save_to_disk folder"
        )
    if isinstance(data, list):
        return _rows("data", data)
    try:
        import datasets

        if isinstance(data, datasets.Dataset):
            return _rows("dataset", data)
    except ImportError:  # pragma: no cover
        pass
    raise TypeError(f"data must be a path, a list of dicts or a datasets.Dataset; got {type(data).__name__}")
