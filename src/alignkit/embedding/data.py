"""Rows for the embedding trainer: pairs, triplets or labelled texts, checked row by row.

Formats (one per file, decided by the first row; every row must follow it):

* pairs — ``{"anchor": str, "positive": str}``
* triplets — ``{"anchor": str, "positive": str, "negative": str}``
* labelled — ``{"text": str, "label": int | str}`` (string labels are numbered in sorted order)

Rows come from :func:`alignkit.data.loading.load_records` (JSONL, JSON, Parquet, CSV, ``save_to_disk``
folders, lists of dicts), and a bad row raises a ``ValueError`` naming the file, the row and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alignkit.data.loading import Record, load_records

FORMATS = ("pairs", "triplets", "labelled")


@dataclass
class EmbeddingData:
    """Parsed rows: ``format``; ``texts`` — per row the texts to encode (1 for labelled rows, 2 for pairs,
    3 for triplets); ``labels`` — per row its integer label (labelled rows) or ``None``."""

    format: str
    texts: list[tuple[str, ...]]
    labels: list[int] | None
    label_names: list[Any] | None = None

    def __len__(self) -> int:
        return len(self.texts)


def _format_of(rec: Record) -> str:
    f = rec.fields
    if "text" in f or "label" in f:
        return "labelled"
    if "anchor" in f or "positive" in f:
        return "triplets" if "negative" in f else "pairs"
    raise ValueError(
        f"{rec.where}: cannot tell the data format from fields {sorted(f)}; rows need anchor/positive[/negative] "
        "(pairs, triplets) or text/label (labelled)"
    )


def _text(rec: Record, name: str) -> str:
    if name not in rec.fields:
        raise ValueError(f"{rec.where}: missing field {name!r}")
    v = rec.fields[name]
    if not isinstance(v, str) or not v.strip():
        raise ValueError(f"{rec.where}: field {name!r} must be a non-empty string; got {v!r}")
    return v


def parse_rows(records: list[Record]) -> EmbeddingData:
    """Check ``records`` and turn them into :class:`EmbeddingData`."""
    if not records:
        raise ValueError("no rows in the data")
    fmt = _format_of(records[0])
    texts: list[tuple[str, ...]] = []
    raw_labels: list[Any] = []
    for rec in records:
        if fmt == "labelled":
            texts.append((_text(rec, "text"),))
            if "label" not in rec.fields:
                raise ValueError(f"{rec.where}: missing field 'label'")
            lab = rec.fields["label"]
            if isinstance(lab, bool) or not isinstance(lab, (int, str)):
                raise ValueError(f"{rec.where}: field 'label' must be an int or a string; got {lab!r}")
            raw_labels.append(lab)
        else:
            names = ("anchor", "positive", "negative") if fmt == "triplets" else ("anchor", "positive")
            extra = "negative" in rec.fields and fmt == "pairs"
            if extra:
                raise ValueError(
                    f"{rec.where}: field 'negative' in a pairs file (the first row has no negative)"
                )
            texts.append(tuple(_text(rec, n) for n in names))
    if fmt != "labelled":
        return EmbeddingData(fmt, texts, None)
    kinds = {type(x) for x in raw_labels}
    if len(kinds) > 1:
        raise ValueError("field 'label' mixes ints and strings across rows")
    names_sorted = sorted(set(raw_labels))
    index = {n: i for i, n in enumerate(names_sorted)}
    return EmbeddingData(fmt, texts, [index[x] for x in raw_labels], names_sorted)


def load_embedding_data(data: Any) -> EmbeddingData:
    """Load and check rows from a path, a list of dicts or a ``datasets.Dataset``."""
    return parse_rows(load_records(data))
