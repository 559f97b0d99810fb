"""Checkpoints: a ``save_pretrained`` folder + optimizer, scheduler, RNG and data position, atomic and verified.

``checkpoint-<step>`` is what Hugging Face tools read — ``AutoModelForCausalLM.from_pretrained(checkpoint-N)`` (the
model in the run's saved dtype), or under LoRA ``PeftModel.from_pretrained(base, checkpoint-N)`` (the adapter
only), plus the tokenizer — with alignkit's resume state beside it: ``optimizer.pt``, ``scheduler.pt``,
``rng_state_<rank>.pt``, ``trainer_state.json``, ``manifest.json`` and, when the saved weights are not the trained
ones bit for bit, ``master_weights.safetensors`` (:mod:`alignkit.train.hf_save`).

A checkpoint is written to a temporary folder and renamed to ``checkpoint-<step>`` in one ``os.replace``: a kill
during a save leaves at worst a ``.tmp-*`` folder (ignored and cleaned up), never a broken checkpoint. Its
``manifest.json`` — the run identity, the step, the run's total steps and every file's size and sha256 — is written
last, so a checkpoint without one is incomplete. At resume :func:`find_resume_checkpoint` verifies checkpoints
newest first against their manifests, falls back to the newest complete one and says which it skipped and why (or
fails naming the bad file), and refuses a checkpoint of another run or past this run's ``max_steps``, naming both.
:func:`restore_history` reads ``history.jsonl`` back to the resumed step, dropping a line torn by a kill.
Everything is read back with ``safetensors`` or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import re
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alignkit.errors import CheckpointError, UserError
from alignkit.train.hf_save import load_model_folder, save_model_folder

_CKPT = re.compile(r"^checkpoint-(\d+)$")
MANIFEST = "manifest.json"
_TEMP_PREFIXES = (".tmp-checkpoint-", ".old-checkpoint-")


def is_checkpoint_name(name: str) -> bool:
    """``checkpoint-<n>`` or a temporary of one."""
    return bool(_CKPT.match(name)) or name.startswith(_TEMP_PREFIXES)


def rng_state() -> dict[str, Any]:
    import numpy as np

    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np

    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    d = Path(output_dir)
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = _CKPT.match(p.name)
        if m and p.is_dir() and (p / "trainer_state.json").exists():
            found.append((int(m.group(1)), p))
    return sorted(found)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def write_manifest(folder: Path, *, step: int, total_steps: int | None, identity: str | None) -> Path:
    """Write ``manifest.json`` (sizes and sha256 of every other file) into ``folder``, durably; call it last."""
    files = {
        p.name: {"size": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    manifest = {"format": 1, "identity": identity, "step": step, "total_steps": total_steps, "files": files}
    f = folder / MANIFEST
    with open(f, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(manifest, indent=1))
        fh.flush()
        os.fsync(fh.fileno())
    return f


def _no_space(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    return isinstance(exc, RuntimeError) and ("unexpected pos" in str(exc) or "No space left" in str(exc))


def save_weights(
    model: nn.Module, folder: Path, *, dtype: torch.dtype | None = None, tokenizer: Any = None
) -> None:
    """The Hugging Face part of a checkpoint: the model's ``save_pretrained`` folder (adapter only under LoRA; in
    ``dtype``, with the trained weights beside it when they differ) and the tokenizer."""
    save_model_folder(model, folder, dtype=dtype, master=True)
    if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
        tokenizer.save_pretrained(str(folder))


def save_checkpoint(
    output_dir: str | Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    trainer_state: dict[str, Any],
    rng_states: list[dict[str, Any]],
    save_total_limit: int | None = None,
    identity: str | None = None,
    *,
    dtype: torch.dtype | None = None,
    tokenizer: Any = None,
) -> Path:
    """Write ``checkpoint-<step>`` atomically, its manifest last; keep at most ``save_total_limit`` checkpoints.

    ``identity``: the run's fingerprint (:func:`alignkit.train.run_dir.run_identity`), recorded in the manifest;
    pruning counts only checkpoints of this identity, so another run's files are never taken for newer ones.
    ``trainer_state["total_steps"]`` is recorded too. ``dtype``: the saved model's dtype (None: as trained);
    ``tokenizer``: saved beside it. A full disk raises a :class:`~alignkit.errors.UserError`
    ("no space left on device") after removing the partial temporary folder.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    final = out / f"checkpoint-{step}"
    tmp = out / f".tmp-checkpoint-{step}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        save_weights(model, tmp, dtype=dtype, tokenizer=tokenizer)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        for rank, st in enumerate(rng_states):
            torch.save(st, tmp / f"rng_state_{rank}.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=1))
        for f in (p for p in tmp.iterdir() if p.is_file()):  # durable before the manifest vouches for them
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        write_manifest(tmp, step=step, total_steps=trainer_state.get("total_steps"), identity=identity)
    except (OSError, RuntimeError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if _no_space(exc):
            raise UserError(
                f"no space left on device while writing checkpoint-{step} in {out} "
                f"(free: {shutil.disk_usage(out).free / 2**20:.0f} MiB); free space or lower --save-total-limit"
            ) from exc
        raise
    if final.exists():
        old = out / f".old-checkpoint-{step}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(out)
    if save_total_limit is not None and save_total_limit > 0:
        mine = [p for _, p in list_checkpoints(out) if identity is None or _manifest_identity(p) == identity]
        for p in mine[:-save_total_limit]:
            shutil.rmtree(p, ignore_errors=True)
    return final


def _manifest_identity(path: Path) -> str | None:
    try:
        return json.loads((path / MANIFEST).read_text(encoding="utf-8")).get("identity")
    except (OSError, ValueError, AttributeError):
        return None


def verify_checkpoint(path: str | Path, *, full: bool = True) -> dict[str, Any]:
    """The manifest of a complete, intact checkpoint; else :class:`~alignkit.errors.CheckpointError` naming the
    file at fault (missing manifest = a save cut short; a missing file; a size or sha256 that differs).
    ``full=False`` checks sizes only."""
    path = Path(path)
    mf = path / MANIFEST
    if not mf.is_file():
        raise CheckpointError(
            f"{mf} is missing: {path.name} is incomplete (a save was cut short, or older alignkit)"
        )
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{mf}: unreadable manifest ({exc})") from None
    for name, meta in files.items():
        f = path / name
        if not f.is_file():
            raise CheckpointError(f"{f} is missing (listed in {mf})")
        size = f.stat().st_size
        if size != meta["size"]:
            raise CheckpointError(
                f"{f} is {size} bytes; the manifest says {meta['size']} (truncated or altered)"
            )
        if full and _sha256(f) != meta["sha256"]:
            raise CheckpointError(f"{f} does not match its sha256 in the manifest (corrupt)")
    return manifest


@dataclass
class ResumePoint:
    """The checkpoint to resume from; ``skipped``: newer checkpoints passed over, each with why."""

    step: int
    path: Path
    manifest: dict[str, Any]
    skipped: list[str] = field(default_factory=list)


def find_resume_checkpoint(
    output_dir: str | Path, *, identity: str | None, total_steps: int, full: bool = True
) -> ResumePoint | None:
    """The newest complete checkpoint of this run in ``output_dir`` (None when there is none at all).

    Checkpoints are verified newest first (:func:`verify_checkpoint`); a corrupt or incomplete one is skipped with
    a warning that names it and the bad file, and the newest complete one is used (the warning says which). Raises
    :class:`~alignkit.errors.CheckpointError` when every checkpoint is bad (naming each bad file), when the newest
    complete one belongs to another run (both identities named) or was written for another number of steps or
    past ``total_steps`` (both numbers named: its learning-rate schedule and data order belong to that run).
    """
    out = Path(output_dir)
    found = (
        sorted(
            ((int(m.group(1)), p) for p in out.iterdir() if (m := _CKPT.match(p.name)) and p.is_dir()),
            reverse=True,
        )
        if out.is_dir()
        else []
    )
    if not found:
        return None
    skipped: list[str] = []
    for step, path in found:
        try:
            manifest = verify_checkpoint(path, full=full)
        except CheckpointError as exc:
            skipped.append(str(exc))
            continue
        theirs = manifest.get("identity")
        if identity is not None and theirs != identity:
            raise CheckpointError(
                f"{path} belongs to another run (identity {str(theirs)[:12]}; this run is {identity[:12]}): its "
                "settings, data or model differ. Resume with the same settings, or use another --output"
            )
        if step > total_steps or manifest.get("total_steps") not in (None, total_steps):
            raise CheckpointError(
                f"{path} is step {step} of a {manifest.get('total_steps')}-step run; this run has max_steps "
                f"{total_steps}. Resume with --max-steps {manifest.get('total_steps')} (the schedule and data order "
                "of a run depend on its length), or start a new run in another --output"
            )
        if skipped:
            warnings.warn(
                f"resuming from {path.name}, the newest complete checkpoint; skipped: " + "; ".join(skipped),
                stacklevel=2,
            )
        return ResumePoint(step, path, manifest, skipped)
    raise CheckpointError(f"no complete checkpoint in {out} to resume from: " + "; ".join(skipped))


def restore_history(output_dir: str | Path, upto_step: int, *, rewrite: bool = True) -> list[dict[str, Any]]:
    """``history.jsonl`` records up to ``upto_step`` (resume), rewritten atomically (``rewrite``: rank 0 only);
    [] if the file is absent.

    A last line torn by a kill (no newline, not JSON) is dropped with a warning; a bad line before the last is an
    error naming the file and line."""
    f = Path(output_dir) / "history.jsonl"
    if not f.is_file():
        return []
    raw = f.read_bytes().decode("utf-8", errors="replace")
    lines = raw.split("\n")
    records: list[dict[str, Any]] = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or not isinstance(rec.get("step"), int):
                raise ValueError("not a step record")
        except ValueError as exc:
            if all(not rest.strip() for rest in lines[n:]):  # the last line: torn by a kill mid-write
                warnings.warn(f"{f} line {n}: dropped a torn last record ({exc})", stacklevel=2)
                break
            raise CheckpointError(
                f"{f} line {n}: not a history record ({exc}); fix or remove the line"
            ) from None
        if rec["step"] <= upto_step:
            records.append(rec)
    if rewrite:
        tmp = f.with_name(f".history.jsonl.tmp-{os.getpid()}")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        os.replace(tmp, f)
    return records


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, rank: int = 0
) -> dict[str, Any]:
    """Restore weights, optimizer and scheduler; return the trainer state (with ``rng`` for this rank).

    A file that cannot be read raises :class:`~alignkit.errors.CheckpointError` naming it."""

    def read(name: str, fn: Any) -> Any:
        try:
            return fn(path / name)
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(
                f"{path / name}: cannot be read ({str(exc).splitlines()[0][:200]})"
            ) from exc
        except Exception as exc:  # safetensors' SafetensorError derives from Exception only
            if type(exc).__name__ != "SafetensorError":
                raise
            raise CheckpointError(f"{path / name}: corrupt safetensors file ({exc})") from exc

    load_model_folder(model, path, read)
    optimizer.load_state_dict(read("optimizer.pt", lambda f: torch.load(f, weights_only=True)))
    scheduler.load_state_dict(read("scheduler.pt", lambda f: torch.load(f, weights_only=True)))
    state = read("trainer_state.json", lambda f: json.loads(f.read_text()))
    rng_file = path / f"rng_state_{rank}.pt"
    state["rng"] = (
        read(rng_file.name, lambda f: torch.load(f, weights_only=True)) if rng_file.exists() else None
    )
    return state


def clean_temporaries(output_dir: str | Path) -> None:
    d = Path(output_dir)
    if d.is_dir():
        for p in d.iterdir():
            if p.name.startswith(_TEMP_PREFIXES):
                shutil.rmtree(p, ignore_errors=True)
