"""Read rows from JSONL, JSON, Parquet, CSV files, ``datasets`` folders, hub dataset ids, lists or ``Dataset``s.

Forms of ``data`` (``load_records(data, split=..., config=...)``):

* a file (``.jsonl``, ``.json``, ``.parquet``, ``.csv``, ``.tsv``): read here, so a bad line is named by file and
  line;
* a ``save_to_disk`` folder: a ``Dataset``, or a ``DatasetDict`` whose ``split`` (default ``train``) is taken — a
  missing split is an error listing the folder's splits (``train_prefs``, ...);
* a folder of data files (a hub dataset's files, no loading script): its splits as ``datasets`` sees them (file
  names, or the README's ``configs:`` with ``config`` as the configuration name); each file is read here, so errors
  name the file and line;
* a hub dataset id (``org/name``): ``datasets.load_dataset(id, name=config, split=split)``; with the hub off
  (``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE``) or out of reach it fails at once saying so (and is not cached);
* in Python: a list of dicts, a ``Dataset``, a ``DatasetDict`` (``split``), an ``IterableDataset`` (streamed rows are
  read into memory once: the trainer needs the whole set to count steps, shuffle every epoch and pair KTO's KL
  completions within batches).

Rows of ``datasets`` sources are named ``<source> [<split>] row N`` (1-based).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.errors import InputFileError, InputPathError


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


def _file(path: Path) -> list[Record]:
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
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
        out = []
        start = (
            2  # the header is line 1; a quoted field may span lines, so each row is named by its first line
        )
        for r in reader:
            out.append(Record(str(path), start, dict(r)))
            start = reader.line_num + 1
        return out
    raise ValueError(
        f"{path}: unknown data format {suffix!r}; use .jsonl, .json, .parquet, .csv, a save_to_disk folder, a "
        "folder of data files or a hub dataset id"
    )


def _split_of(source: str, splits: list[str], split: str | None) -> str:
    """The split to read: ``split``, else ``train``; an error listing ``splits`` when it is not there."""
    want = split or "train"
    if want not in splits:
        how = "pass --split (TrainConfig.split) with one of them" if split is None else "pick one of them"
        raise InputPathError(
            f"{source}: no split {want!r}; it has {', '.join(map(repr, splits)) or 'no splits'}: {how}"
        )
    return want


def _pick(source: str, dd: Any, split: str | None) -> tuple[str, Any]:
    """One split of a ``DatasetDict`` / ``IterableDatasetDict`` and its row source name."""
    name = _split_of(source, list(dd), split)
    return f"{source} [{name}]", dd[name]


def _is_save_to_disk(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _folder(path: Path, split: str | None, config: str | None) -> list[Record]:
    import datasets

    if _is_save_to_disk(path):
        if config is not None:
            raise InputPathError(
                f"{path}: a save_to_disk folder has no configurations; --dataset-config {config!r} does not apply"
            )
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            source, ds = _pick(str(path), ds, split)
            return _rows(source, ds)
        if split not in (None, "train"):
            raise InputPathError(
                f"{path}: a single saved Dataset (no splits); --split {split!r} does not apply"
            )
        return _rows(str(path), ds)
    if any(path.glob("*.py")):
        raise InputPathError(
            f"{path}: a folder with a dataset loading script; scripts are not run (datasets >= 4 dropped them): "
            "pass the data files, or a save_to_disk folder"
        )
    try:
        builder = datasets.load_dataset_builder(str(path), name=config)
    except (ValueError, FileNotFoundError) as exc:  # no data files, an unknown configuration
        raise InputPathError(f"{path}: not a dataset folder datasets can read ({exc})") from None
    files = builder.config.data_files or {}
    name = _split_of(str(path), [str(k) for k in files], split)
    paths = [Path(f) for f in files[name]]
    if all(p.suffix.lower() in (".jsonl", ".json", ".parquet", ".csv", ".tsv") for p in paths):
        # each file read here, so a bad line or row is named by its file and line
        return [rec for p in sorted(paths) for rec in _file(p)]
    ds = datasets.load_dataset(str(path), name=config, split=name)
    return _rows(f"{path} [{name}]", ds)


def _hub(hub_id: str, split: str | None, config: str | None) -> list[Record]:
    """A hub dataset id (checked reachable first: :func:`alignkit.sources.check_data_source`)."""
    import datasets

    from alignkit.sources import check_data_source

    check_data_source(hub_id)
    try:
        splits = datasets.get_dataset_split_names(hub_id, config_name=config)
    except Exception as exc:  # noqa: BLE001 - the hub's errors vary (missing repo, gated, unknown config)
        raise InputPathError(
            f"--data {hub_id}: cannot read the hub dataset ({type(exc).__name__}: {exc})"
        ) from None
    name = _split_of(hub_id, splits, split)
    ds = datasets.load_dataset(hub_id, name=config, split=name)
    return _rows(f"{hub_id} [{name}]", ds)


def load_records(data: Any, *, split: str | None = None, config: str | None = None) -> list[Record]:
    """All rows of ``data`` (the forms are in the module docstring); ``split`` / ``config`` pick a split and a
    configuration of a dataset folder, a ``DatasetDict`` or a hub id. A list of :class:`Record` is returned as is."""
    if isinstance(data, list) and data and all(isinstance(r, Record) for r in data):
        return data
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.is_dir():
            return _folder(path, split, config)
        if path.exists():
            if split not in (None, "train") or config is not None:
                raise InputPathError(
                    f"{path}: a single data file has no splits or configurations (--split / --dataset-config); "
                    "pass a folder of data files or a hub id for those"
                )
            return _file(path)
        from alignkit.sources import looks_like_hub_id

        if looks_like_hub_id(os.fspath(data)):
            return _hub(os.fspath(data), split, config)
        raise FileNotFoundError(f"data file {path} does not exist")
    if isinstance(data, list):
        return _rows("data", data)
    try:
        import datasets
    except ImportError:  # pragma: no cover
        datasets = None
    if datasets is not None:
        if isinstance(data, (datasets.DatasetDict, datasets.IterableDatasetDict)):
            source, data = _pick(type(data).__name__, data, split)
            return _rows(source, data)
        if isinstance(data, datasets.Dataset):
            return _rows("dataset", data)
        if isinstance(data, datasets.IterableDataset):
            return _rows("iterable dataset", data)  # read into memory once (the module docstring says why)
    raise TypeError(
        "data must be a path, a hub dataset id, a list of dicts, a datasets.Dataset / DatasetDict / "
        f"IterableDataset; got {type(data).__name__}"
    )
