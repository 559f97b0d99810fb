"""Checkpoints: safetensors weights + optimizer, scheduler, RNG and data position, written atomically.

A checkpoint is written to a temporary folder and renamed to ``checkpoint-<step>`` in one ``os.replace``: a kill
during a save leaves at worst a ``.tmp-*`` folder (ignored and cleaned up), never a broken checkpoint.
Everything is read back with ``safetensors`` or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

_CKPT = re.compile(r"^checkpoint-(\d+)$")


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


def save_checkpoint(
    output_dir: str | Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    trainer_state: dict[str, Any],
    rng_states: list[dict[str, Any]],
    save_total_limit: int | None = None,
) -> Path:
    """Write ``checkpoint-<step>`` atomically; keep at most ``save_total_limit`` checkpoints (newest)."""
    from safetensors.torch import save_model

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    final = out / f"checkpoint-{step}"
    tmp = out / f".tmp-checkpoint-{step}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_model(model, str(tmp / "model.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    for rank, st in enumerate(rng_states):
        torch.save(st, tmp / f"rng_state_{rank}.pt")
    (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=1))
    for f in tmp.iterdir():  # make the bytes durable before the rename publishes them
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        old = out / f".old-checkpoint-{step}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    if save_total_limit is not None and save_total_limit > 0:
        for _, p in list_checkpoints(out)[:-save_total_limit]:
            shutil.rmtree(p, ignore_errors=True)
    return final


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, rank: int = 0
) -> dict[str, Any]:
    """Restore weights, optimizer and scheduler; return the trainer state (with ``rng`` for this rank)."""
    from safetensors.torch import load_model

    load_model(model, str(path / "model.safetensors"))
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    state = json.loads((path / "trainer_state.json").read_text())
    rng_file = path / f"rng_state_{rank}.pt"
    state["rng"] = torch.load(rng_file, weights_only=True) if rng_file.exists() else None
    return state


def clean_temporaries(output_dir: str | Path) -> None:
    d = Path(output_dir)
    if d.is_dir():
        for p in d.iterdir():
            if p.name.startswith((".tmp-checkpoint-", ".old-checkpoint-")):
                shutil.rmtree(p, ignore_errors=True)
