"""The model part of a checkpoint and of the final output: a ``save_pretrained`` folder, and reading it back.

A ``PreTrainedModel`` is written with ``save_pretrained`` (safetensors, ``config.json``) in the run's saved dtype
(:func:`alignkit.train.precision.saved_dtype`; ``config.json``'s ``dtype`` names it), so
``AutoModelForCausalLM.from_pretrained(folder)`` loads it. A peft model writes its adapter only
(``adapter_config.json`` + ``adapter_model.safetensors``), loaded with ``PeftModel.from_pretrained(base, folder)``.
When the saved weights are not the trained ones bit for bit (fp32 master weights saved as bf16), the trained
weights are written beside them as ``master_weights.safetensors`` for resume. Any other ``nn.Module``: its
``model.safetensors``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

MASTER = "master_weights.safetensors"
ADAPTER = "adapter_model.safetensors"
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"


def is_peft(model: nn.Module) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def _trained_dtype(model: nn.Module) -> torch.dtype | None:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def _cast(state_dict: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Floating tensors cast to ``dtype``; tensors sharing storage (tied weights) stay shared."""
    out: dict[str, torch.Tensor] = {}
    done: dict[tuple[int, tuple[int, ...], tuple[int, ...]], torch.Tensor] = {}
    for k, v in state_dict.items():
        if not v.is_floating_point() or v.dtype == dtype:
            out[k] = v
            continue
        key = (
            v.untyped_storage().data_ptr() + v.storage_offset() * v.element_size(),
            tuple(v.shape),
            v.stride(),
        )
        if key not in done:
            done[key] = v.detach().to(dtype)
        out[k] = done[key]
    return out


def save_model_folder(
    model: nn.Module,
    folder: str | Path,
    *,
    dtype: torch.dtype | None = None,
    state_dict: dict[str, torch.Tensor] | None = None,
    master: bool = False,
) -> None:
    """Write ``model`` into ``folder`` as a ``save_pretrained`` folder in ``dtype`` (None: as trained).

    ``state_dict``: the full weights where the module holds shards (FSDP). ``master``: also write the trained
    weights as :data:`MASTER` when ``dtype`` differs from theirs (a checkpoint's resume state)."""
    folder = Path(folder)
    if is_peft(model):
        model.save_pretrained(str(folder), safe_serialization=True)
        return
    if not hasattr(model, "save_pretrained"):
        from safetensors.torch import save_model

        save_model(model, str(folder / WEIGHTS))
        return
    trained = _trained_dtype(model)
    sd = state_dict if state_dict is not None else model.state_dict()
    cast = dtype is not None and dtype != trained
    model.save_pretrained(str(folder), state_dict=_cast(sd, dtype) if cast else sd, safe_serialization=True)
    if dtype is not None:
        f = folder / "config.json"
        config = json.loads(f.read_text(encoding="utf-8"))
        config["dtype"] = str(dtype).removeprefix("torch.")
        f.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if cast and master and state_dict is None:
        from safetensors.torch import save_model

        save_model(model, str(folder / MASTER))


def weight_files(folder: Path) -> list[Path]:
    """The files resume reads the model's weights from (master weights first, else the saved ones)."""
    for name in (MASTER, ADAPTER, WEIGHTS):
        if (folder / name).is_file():
            return [folder / name]
    index = folder / WEIGHTS_INDEX
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        return [folder / s for s in shards]
    return [folder / WEIGHTS]  # absent: the caller's reader names it


def load_model_folder(model: nn.Module, folder: Path, read: Any) -> None:
    """Load the weights of :func:`save_model_folder`'s ``folder`` into ``model`` (resume).

    ``read(name, fn)`` reads one file, turning any failure into a :class:`~alignkit.errors.CheckpointError`
    naming it. Keys the file lacks must be tied to keys it has (``save_pretrained`` drops the copies)."""
    from safetensors.torch import load_file

    from alignkit.errors import CheckpointError

    files = weight_files(folder)
    if files[0].name == ADAPTER:
        from peft import set_peft_model_state_dict

        sd = read(ADAPTER, lambda f: load_file(str(f)))
        res = read(ADAPTER, lambda f: set_peft_model_state_dict(model, sd))
        if res.unexpected_keys:
            raise CheckpointError(f"{files[0]}: keys this model's adapter lacks: {res.unexpected_keys[:5]}")
        return
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        sd.update(read(f.name, lambda p: load_file(str(p))))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    own = model.state_dict()
    loaded = {own[k].untyped_storage().data_ptr() for k in sd if k in own}
    untied = [k for k in missing if own[k].untyped_storage().data_ptr() not in loaded]
    if untied or unexpected:
        raise CheckpointError(
            f"{files[0]}: does not fit this model (missing {untied[:5]}, unexpected {list(unexpected)[:5]})"
        )
