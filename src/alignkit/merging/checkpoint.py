"""Checkpoints for merging: safetensors only (never pickles), read lazily one tensor at a time.

``Checkpoint(path)`` opens a Hugging Face model folder written by ``save_pretrained`` (``model.safetensors`` or
sharded ``model.safetensors.index.json``) or a bare ``.safetensors`` file, and behaves as a read-only mapping
``name -> Tensor`` that loads a tensor only when it is asked for. Every merge function in this package takes
such mappings (a plain ``dict`` of tensors works the same), checks that they agree — same tensor names, same
shapes, equal non-float tensors — and names the file and the tensor when they do not.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from alignkit.engine._progress import make_progress

StateDict = Mapping[str, torch.Tensor]

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")
INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
# Files of a training run, not of the model: a merged model does not inherit the first model's run history.
NOT_COPIED = frozenset(
    {
        INDEX_NAME,
        "config.yaml",
        "data_report.json",
        "alignkit_run.json",
        "trainer_state.json",
        "manifest.json",
    }
)


class Checkpoint(Mapping[str, torch.Tensor]):
    """A lazily read safetensors checkpoint (HF folder or bare file); ``source`` names it in errors."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.source = str(self.path)
        self._files: dict[str, Path] = {}  # tensor name -> file
        self._shapes: dict[str, tuple[int, ...]] = {}
        if self.path.is_dir():
            index, single = self.path / INDEX_NAME, self.path / SINGLE_NAME
            if index.is_file():
                weight_map = json.loads(index.read_text())["weight_map"]
                files = {name: self.path / fname for name, fname in weight_map.items()}
            elif single.is_file():
                with safe_open(single, framework="pt") as f:
                    files = dict.fromkeys(f.keys(), single)
            else:
                pickles = sorted(p.name for p in self.path.iterdir() if p.suffix in (".bin", ".pt", ".pth"))
                hint = f" (found {', '.join(pickles)}: pickle checkpoints are not loaded)" if pickles else ""
                raise FileNotFoundError(f"{self.path}: no {SINGLE_NAME} or {INDEX_NAME}{hint}")
        elif self.path.is_file():
            if self.path.suffix != ".safetensors":
                raise ValueError(f"{self.path}: only .safetensors files are read (pickles are never loaded)")
            with safe_open(self.path, framework="pt") as f:
                files = dict.fromkeys(f.keys(), self.path)
        else:
            raise FileNotFoundError(f"{self.path}: no such checkpoint folder or .safetensors file")
        for fname in sorted(set(files.values())):
            if not fname.is_file():
                raise FileNotFoundError(f"{fname}: shard listed in {self.path / INDEX_NAME} is missing")
            with safe_open(fname, framework="pt") as f:
                for name in f.keys():
                    if files.get(name) == fname:
                        self._shapes[name] = tuple(f.get_slice(name).get_shape())
        missing = sorted(set(files) - set(self._shapes))
        if missing:
            raise ValueError(
                f"{self.path}: tensor {missing[0]!r} is listed in the index but not in its shard"
            )
        self._files = {k: files[k] for k in sorted(files)}

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._files:
            raise KeyError(f"{self.source}: no tensor named {key!r}")
        with safe_open(self._files[key], framework="pt") as f:
            return f.get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._files)

    def __len__(self) -> int:
        return len(self._files)

    def shape(self, key: str) -> tuple[int, ...]:
        return self._shapes[key]

    @property
    def folder(self) -> Path | None:
        """The HF model folder (for copying config/tokenizer files), or None for a bare file."""
        return self.path if self.path.is_dir() else None


def source_of(sd: StateDict, default: str) -> str:
    return getattr(sd, "source", default)


def _shape(sd: StateDict, key: str) -> tuple[int, ...]:
    return sd.shape(key) if isinstance(sd, Checkpoint) else tuple(sd[key].shape)


def check_compatible(base: StateDict, models: Sequence[StateDict], base_name: str = "base") -> list[str]:
    """The tensor names to merge; raises naming the file and tensor on a missing key or a shape mismatch."""
    if not models:
        raise ValueError("no models to merge")
    bsrc = source_of(base, base_name)
    keys = list(base)
    for i, m in enumerate(models):
        msrc = source_of(m, f"models[{i}]")
        missing = [k for k in keys if k not in m]
        if missing:
            raise ValueError(
                f"{msrc}: missing tensor {missing[0]!r} that {bsrc} has ({len(missing)} missing)"
            )
        extra = [k for k in m if k not in base]
        if extra:
            raise ValueError(f"{msrc}: has tensor {extra[0]!r} that {bsrc} lacks ({len(extra)} extra)")
        for k in keys:
            if _shape(m, k) != _shape(base, k):
                raise ValueError(
                    f"{msrc}: tensor {k!r} has shape {list(_shape(m, k))} but {bsrc} has {list(_shape(base, k))}"
                )
    return keys


def work_dtype(t: torch.Tensor) -> torch.dtype:
    """Merges are computed in float32 (float64 stays float64) and cast back to the base tensor's dtype."""
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def merge_deltas(
    base: StateDict,
    models: Sequence[StateDict],
    combine: Callable[[str, list[torch.Tensor]], torch.Tensor],
    *,
    desc: str = "merging",
    progress: bool = False,
) -> dict[str, torch.Tensor]:
    """``theta[k] = base[k] + combine(k, [models[i][k] - base[k] for i])`` for every float tensor ``k``.

    Non-float tensors (integer buffers, masks) are copied from ``base`` and must be equal in every model.
    """
    keys = check_compatible(base, models)
    out: dict[str, torch.Tensor] = {}
    with make_progress(disable=not progress) as bar:
        task = bar.add_task(desc, total=len(keys))
        for key in keys:
            b = base[key]
            ts = [m[key] for m in models]
            if not b.is_floating_point():
                for i, t in enumerate(ts):
                    if t.dtype != b.dtype or not torch.equal(t, b):
                        src = source_of(models[i], f"models[{i}]")
                        raise ValueError(
                            f"{src}: non-float tensor {key!r} differs from the base's; cannot merge it"
                        )
                out[key] = b.clone()
            else:
                wd = work_dtype(b)
                bw = b.to(wd)
                merged = combine(key, [t.to(wd) - bw for t in ts])
                out[key] = (bw + merged).to(b.dtype)
            bar.advance(task)
    return out


def load(path: str | Path) -> Checkpoint:
    """Open a safetensors checkpoint (HF folder or bare file) lazily."""
    return Checkpoint(path)


def save(state: Mapping[str, torch.Tensor], output: str | Path, *, like: str | Path | None = None) -> Path:
    """Write a merged state dict.

    ``output`` ending in ``.safetensors`` writes a bare file. Otherwise ``output`` is a folder: the tensors go to
    ``model.safetensors`` and the non-weight files of the HF folder ``like`` (config.json, generation config,
    tokenizer files) are copied next to it, so ``AutoModel*.from_pretrained(output)`` works; a training run's own
    files (``history.jsonl``, ``config.yaml``, ``data_report.json``, ``alignkit_run.json``) are not. ``output``
    may not be ``like`` itself (its weights are read lazily while the merge is written).
    """
    output = Path(output)
    tensors = {k: v.detach().contiguous() for k, v in state.items()}
    if output.suffix == ".safetensors":
        output.parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(output), metadata={"format": "pt"})
        return output
    if like is not None and Path(like).is_dir() and output.resolve() == Path(like).resolve():
        from alignkit.errors import OutputDirError

        raise OutputDirError(f"--output {output} is the input model folder {like}; choose another --output")
    output.mkdir(parents=True, exist_ok=True)
    if like is not None and Path(like).is_dir():
        for f in Path(like).iterdir():
            if (
                f.is_file()
                and f.suffix not in WEIGHT_SUFFIXES
                and f.name not in NOT_COPIED
                and f.suffix != ".jsonl"
            ):
                shutil.copy2(f, output / f.name)
    save_file(tensors, str(output / SINGLE_NAME), metadata={"format": "pt"})
    return output
