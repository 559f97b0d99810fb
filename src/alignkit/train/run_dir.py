"""The output folder of a run: who it belongs to, and when it may be used.

A run has an **identity**: a fingerprint of the settings that decide its trajectory, of its data and of its model
(:func:`run_identity`). It is written to ``<output>/alignkit_run.json`` when the run starts and into every
checkpoint's manifest (:mod:`alignkit.train.checkpoint`).

Rules (:func:`prepare_output_dir`, called before anything is written):

1. The output folder is never the model, reference model, tokenizer or data path, nor inside one of them, and
   never a folder where the run would overwrite one of its own input files.
2. A missing or empty folder is used (and created).
3. A folder holding this same run (same identity) is used: ``resume=True`` continues from its newest complete
   checkpoint; without ``resume`` it is refused while it holds checkpoints (``--resume`` to continue them,
   ``--overwrite`` to start over), so a forgotten ``--resume`` never deletes a run's checkpoints.
4. Any other non-empty folder — another run (other settings, data or model: the message says which), an alignkit
   run from before identities, or unrelated files — is refused unless ``overwrite=True`` (``--overwrite``). With
   it, the earlier run's artifacts (checkpoints, history, TensorBoard logs, run file) are removed first so runs
   never mix; other files stay, and those the run writes (``config.json``, ``model.safetensors`` ...) are replaced.

``max_steps``/``epochs`` are not part of the identity: a checkpoint of the same run written for another number of
steps is refused at resume with both numbers named (:func:`alignkit.train.checkpoint.find_resume_checkpoint`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.errors import OutputDirError

RUN_FILE = "alignkit_run.json"

# Settings that do not change what is trained (where it is written, how it is logged or shown).
_NOT_IDENTITY = frozenset(
    {
        "output_dir",
        "overwrite",
        "resume",
        "max_steps",
        "epochs",
        "save_steps",
        "save_total_limit",
        "logging_steps",
        "progress",
        "progress_label",
        "tensorboard",
        "report_to",
        "cache_dir",
        "ref_batch_size",
        "distributed",  # DDP, FSDP and one process train the same trajectory
        "dataset_num_proc",  # tokenising in N processes gives the same token ids
        "model",
        "data",
    }
)
# Files and folders an alignkit run writes into its output folder (what --overwrite clears / may replace).
RUN_ARTIFACTS = (
    "history.jsonl",
    "config.yaml",
    "data_report.json",
    "fast_paths.json",
    "tensorboard",
    "wandb",
    RUN_FILE,
)
_HEAD_TAIL = 4 << 20  # bytes hashed from each end of a large weight file


@dataclass(frozen=True)
class RunIdentity:
    """``fingerprint``: one hex digest of ``parts`` (``config``, ``data``, ``model`` digests); ``summary``: what a
    person reads in an error (objective, model, data)."""

    fingerprint: str
    parts: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "parts": dict(self.parts), "summary": dict(self.summary)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunIdentity:
        return cls(str(d["fingerprint"]), dict(d.get("parts", {})), dict(d.get("summary", {})))

    def differs(self, other: RunIdentity) -> list[str]:
        """Which parts differ (``["data", "config"]``); all of them when either lacks parts."""
        keys = sorted(set(self.parts) | set(other.parts)) or ["config", "data", "model"]
        return [k for k in keys if self.parts.get(k) != other.parts.get(k)]


def _sha(*chunks: bytes) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def file_fingerprint(path: Path, full: bool = True) -> str:
    """sha256 of a file's bytes; ``full=False`` and a file over 8 MiB: its size and first and last 4 MiB."""
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as f:
        if full or size <= 2 * _HEAD_TAIL:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        else:
            h.update(f"{size}:".encode())
            h.update(f.read(_HEAD_TAIL))
            f.seek(size - _HEAD_TAIL)
            h.update(f.read(_HEAD_TAIL))
    return h.hexdigest()


def _tree_fingerprint(path: Path, full: bool) -> str:
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode() + b"\0")
        h.update(file_fingerprint(p, full=full).encode())
    return h.hexdigest()


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    name = getattr(v, "name", None)  # an Objective
    if isinstance(name, str):
        return name
    mod, qual = getattr(v, "__module__", None), getattr(v, "__qualname__", None)
    if mod and qual:  # a function (reward_fn): by its import name
        return f"{mod}:{qual}"
    return type(v).__name__  # an object (hook): by its class


def data_fingerprint(data: Any) -> str:
    """The data's content: a file's bytes, a ``save_to_disk`` folder's files, rows' JSON, a Dataset's fingerprint."""
    if data is None:
        return "none"
    if isinstance(data, (str, os.PathLike)):
        p = Path(data)
        if p.is_file():
            return _sha(b"file:", file_fingerprint(p).encode())
        if p.is_dir():
            return _sha(b"dir:", _tree_fingerprint(p, full=True).encode())
        return _sha(b"missing:", str(p).encode())
    fp = getattr(data, "_fingerprint", None)  # datasets.Dataset
    if isinstance(fp, str):
        return _sha(b"dataset:", fp.encode())
    try:
        return _sha(b"rows:", json.dumps(_jsonable(list(data)), sort_keys=True).encode())
    except TypeError:
        return _sha(b"object:", repr(data).encode())


def model_fingerprint(model: Any) -> str:
    """A model's weights: a local folder's files (config and weights; large files by size, head and tail), a hub
    id by name, an in-memory model by its parameters' bytes."""
    if model is None:
        return "none"
    if isinstance(model, (str, os.PathLike)):
        p = Path(model)
        if p.is_dir():
            return _sha(b"folder:", _tree_fingerprint(p, full=False).encode())
        return _sha(b"hub:", str(model).encode())
    import torch

    h = hashlib.sha256(b"module:")
    base = getattr(model, "module", model)
    for name, t in sorted(base.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def run_identity(config: Any) -> RunIdentity:
    """The identity of the run ``config`` (a :class:`~alignkit.train.config.TrainConfig`) describes.

    Computed from the config alone, before any model is loaded: the trajectory settings (every field but where and
    how it is written and how long it runs), the data's content and the model's (and reference model's) weights.
    """
    settings = {
        f.name: _jsonable(getattr(config, f.name))
        for f in dataclasses.fields(config)
        if f.name not in _NOT_IDENTITY
    }
    settings["ref_model"] = model_fingerprint(config.ref_model) if config.ref_model is not None else None
    teacher = getattr(config, "teacher", None)  # distillation: the teacher's weights, like the reference's
    settings["teacher"] = model_fingerprint(teacher) if teacher is not None else None
    settings["tokenizer"] = (
        model_fingerprint(config.tokenizer) if isinstance(config.tokenizer, (str, os.PathLike)) else None
    )
    parts = {
        "config": _sha(json.dumps(settings, sort_keys=True).encode()),
        "data": data_fingerprint(config.data),
        "model": model_fingerprint(config.model),
    }
    summary = {
        "objective": _jsonable(config.objective),
        "model": _jsonable(config.model) if isinstance(config.model, (str, os.PathLike)) else "<in-memory>",
        "data": _jsonable(config.data) if isinstance(config.data, (str, os.PathLike)) else "<in-memory>",
    }
    return RunIdentity(_sha(json.dumps(parts, sort_keys=True).encode()), parts, summary)


def read_identity(output_dir: str | Path) -> RunIdentity | None:
    """The identity recorded in ``<output>/alignkit_run.json`` (None if the folder has none)."""
    f = Path(output_dir) / RUN_FILE
    if not f.is_file():
        return None
    try:
        return RunIdentity.from_dict(json.loads(f.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError) as exc:
        raise OutputDirError(f"{f}: unreadable run file ({exc}); remove it or pass --overwrite") from None


def write_identity(output_dir: str | Path, identity: RunIdentity) -> Path:
    """Write ``alignkit_run.json`` atomically."""
    out = Path(output_dir)
    f = out / RUN_FILE
    tmp = out / f".{RUN_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(identity.to_dict(), indent=1), encoding="utf-8")
    os.replace(tmp, f)
    return f


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_not_input(output_dir: str | Path, inputs: dict[str, Any]) -> None:
    """Refuse an output folder that is (or lies inside) an input folder, or holds an input file under a name the run
    writes. ``inputs``: ``{"model": path, "data": path, ...}``; non-path values are ignored."""
    out = Path(output_dir).resolve()
    written = {
        *RUN_ARTIFACTS,
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "adapter_model.safetensors",
    }
    for what, value in inputs.items():
        if not isinstance(value, (str, os.PathLike)) or not Path(value).exists():
            continue
        src = Path(value).resolve()
        if src.is_dir() and _inside(out, src):
            raise OutputDirError(
                f"--output {output_dir} is {'the' if out == src else 'inside the'} {what} folder {value}; "
                "the run would write over its own input. Choose another --output"
            )
        if src.is_file() and src.parent == out and src.name in written:
            raise OutputDirError(
                f"--output {output_dir} holds the {what} file {src.name}, which the run writes; "
                "choose another --output"
            )


def clear_run(output_dir: str | Path) -> list[str]:
    """Remove an earlier run's artifacts (checkpoints, temporaries, history, logs, run file); return their names."""
    from alignkit.train.checkpoint import is_checkpoint_name

    out = Path(output_dir)
    removed = []
    for p in sorted(out.iterdir()):
        if p.name in RUN_ARTIFACTS or is_checkpoint_name(p.name):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
            removed.append(p.name)
    return removed


def prepare_output_dir(
    output_dir: str | Path,
    identity: RunIdentity,
    *,
    resume: bool = False,
    overwrite: bool = False,
    inputs: dict[str, Any] | None = None,
) -> Path:
    """Apply the output-folder rules (module docstring) and record ``identity``; return the folder.

    Raises :class:`~alignkit.errors.OutputDirError` naming the folder, what it holds and the flag that would
    allow it. Call on rank 0 before anything is written (and before loading models: it reads only paths).
    """
    from alignkit.train.checkpoint import clean_temporaries, is_checkpoint_name, list_checkpoints

    out = Path(output_dir)
    check_not_input(out, inputs or {})
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"--output {out} is a file, not a folder")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if entries:
        old = read_identity(out)
        ckpts = [p.name for _, p in list_checkpoints(out)]
        if old is not None and old.fingerprint == identity.fingerprint:
            if ckpts and not resume and not overwrite:
                raise OutputDirError(
                    f"--output {out} holds checkpoints of this same run ({', '.join(ckpts[-3:])}); pass --resume "
                    "to continue from the newest, or --overwrite to start over (they are deleted)"
                )
            if overwrite and not resume:
                clear_run(out)
        elif not overwrite:
            if old is not None:
                what = (
                    f"another alignkit run (its {' and '.join(identity.differs(old))} differ; it trained "
                    f"{old.summary.get('objective')} on {old.summary.get('data')} from {old.summary.get('model')})"
                )
            elif ckpts or any(is_checkpoint_name(e) for e in entries) or "history.jsonl" in entries:
                what = "an alignkit run without a run identity (written by an older alignkit)"
            else:
                shown = ", ".join(entries[:5]) + (" ..." if len(entries) > 5 else "")
                what = f"{len(entries)} file(s) of something else ({shown})"
            verb = "resume" if resume else "use"
            raise OutputDirError(
                f"--output {out} is not empty: it holds {what}. Refusing to {verb} it; choose an empty or new "
                "folder, or pass --overwrite to replace the earlier run's files"
            )
        else:
            removed = clear_run(out)
            if removed:
                warnings.warn(
                    f"--overwrite: removed {len(removed)} item(s) of an earlier run from {out}: "
                    + ", ".join(removed[:8]),
                    stacklevel=2,
                )
    out.mkdir(parents=True, exist_ok=True)
    clean_temporaries(out)
    write_identity(out, identity)
    return out
