"""What a merged folder records about its origin: a fresh ``merge.json`` (method, hyper-parameters, the inputs'
SHA-256, the output's SHA-256), and only the files that make it a loadable model — never an input's training
records (``meta.json``, ``history.jsonl``, ``config.yaml``, ``data_report.json``), which describe other weights.

    from alignkit.merging.provenance import copy_model_files, write_provenance
    copy_model_files("base", "out")                       # config.json, tokenizer files, generation config
    write_provenance("out", method="ties", hyper_parameters={"density": 0.2}, base="base", models=["a", "b"])
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from alignkit.merging.checkpoint import INDEX_NAME, SINGLE_NAME

#: the non-weight files of a Hugging Face model folder that a merged folder needs to load (model and tokenizer)
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
)
PROVENANCE_NAME = "merge.json"


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weight_files(path: str | Path) -> list[Path]:
    """The safetensors files holding a checkpoint's weights (a bare file, a folder's single file or shards)."""
    p = Path(path)
    if p.is_file():
        return [p]
    index = p / INDEX_NAME
    if index.is_file():
        return [p / f for f in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return [p / SINGLE_NAME]


def checkpoint_record(path: str | Path, role: str) -> dict[str, Any]:
    """``{"role", "path", "sha256": {file: digest}}`` for one input or output checkpoint."""
    files = weight_files(path)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{role} {path}: weight file(s) {', '.join(missing)} not found")
    return {"role": role, "path": str(path), "sha256": {f.name: sha256_file(f) for f in files}}


def copy_model_files(like: str | Path | None, output: str | Path) -> list[str]:
    """Copy :data:`MODEL_FILES` present in the folder ``like`` into ``output``; returns their names."""
    if like is None or not Path(like).is_dir():
        return []
    out = Path(output)
    copied = []
    for name in MODEL_FILES:
        src = Path(like) / name
        if src.is_file():
            shutil.copy2(src, out / name)
            copied.append(name)
    return copied


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return repr(v)


def write_provenance(
    output: str | Path,
    *,
    method: str,
    hyper_parameters: Mapping[str, Any],
    base: str | Path | None,
    models: Sequence[str | Path],
    config_from: str | Path | None = None,
) -> Path:
    """Write the merge record: ``OUTPUT/merge.json`` for a folder, ``OUTPUT.merge.json`` beside a bare
    ``.safetensors`` file. Returns its path."""
    from alignkit import __version__

    out = Path(output)
    record = {
        "merged_by": f"alignkit {__version__}",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "method": method,
        "hyper_parameters": _jsonable(dict(hyper_parameters)),
        "inputs": ([checkpoint_record(base, "base")] if base is not None else [])
        + [checkpoint_record(m, f"model {i}") for i, m in enumerate(models)],
        "output": checkpoint_record(out, "output")["sha256"],
        "config_and_tokenizer_from": str(config_from) if config_from is not None else None,
    }
    target = out / PROVENANCE_NAME if out.is_dir() else out.with_name(out.name + "." + PROVENANCE_NAME)
    target.write_text(json.dumps(record, indent=2) + "\n")
    return target
