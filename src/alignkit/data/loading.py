"""Read rows from JSONL, JSON, Parquet, CSV, ``datasets`` folders (``save_to_disk``), lists or ``Dataset``s."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.errors import InputFileError


@dataclass
class Record:
    """One input row and where it came from (``source`` is a file path or ``"data"``; ``row`` is 1-based)."""

    source: str
    row: int
    fields: dict[str, Any]

    @property
    def where(self) -> str:
        return f"{self.source} row {self.row}"


def _decode(path: Path, raw: bytes, line: int | None = None) -> str:
    """UTF-8 text; else an error naming the file, the line and the byte (``line=None``: counted from ``raw``)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if line is None:
            line = raw.count(b"\n", 0, exc.start) + 1
            col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        else:
            col = exc.start + 1
        raise InputFileError(
            f"{path} line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {col}); "
            "save the file as UTF-8"
        ) from None


def _json_error(path: Path, line: int, exc: json.JSONDecodeError, word: str = "line") -> InputFileError:
    why = exc.msg.removesuffix(" at")  # "Unterminated string starting at" + " at column" read "at at"
    return InputFileError(f"{path} {word} {line}: not valid JSON ({why} at column {exc.colno})")


def _jsonl(path: Path) -> list[Record]:
    out = []
    with path.open("rb") as f:
        for n, raw in enumerate(f, start=1):
            line = _decode(path, raw, n)
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _json_error(path, n, exc, "row") from None
            if not isinstance(obj, dict):
                raise InputFileError(f"{path} row {n}: expected a JSON object, got {type(obj).__name__}")
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
            text = _decode(path, path.read_bytes())
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                if text.lstrip().startswith("{") and "\n{" in text:
                    return _jsonl(path)  # JSON lines under a .json name
                raise _json_error(path, exc.lineno, exc) from None
            if isinstance(obj, dict) and isinstance(obj.get("data"), list):
                obj = obj["data"]
            if not isinstance(obj, list):
                raise ValueError(f"{path}: expected a JSON list of rows (or {{'data': [...]}})")
            return _rows(str(path), obj)
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return _rows(str(path), pq.read_table(path).to_pylist())
        if suffix in (".csv", ".tsv"):
            text = _decode(path, path.read_bytes())
            reader = csv.DictReader(
                io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ","
            )
            out = []
            start = 2  # the header is line 1; a quoted field may span lines, so each row is named by its first line
            for r in reader:
                out.append(Record(str(path), start, dict(r)))
                start = reader.line_num + 1
            return out
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
