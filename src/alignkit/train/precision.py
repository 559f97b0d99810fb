"""Precision of a run: the dtype the model is saved in, the compute precision (autocast, grad scaler), QLoRA.

Three separate settings (docs/training.md, "Precision"):

- ``dtype`` (TRL's ``dtype`` / ``torch_dtype``): the dtype of the **saved** model (checkpoints and the final
  folder; ``config.json``'s ``dtype`` says the same). ``auto`` keeps the input's dtype: a bf16 model comes back bf16.
  Full fine-tuning trains fp32 master weights whatever the input dtype (a bf16 or fp16 checkpoint is upcast on
  load; Adam's updates at alignment learning rates, ~1e-6 of a weight, are below bf16's resolution and would be
  lost), and a checkpoint whose saved dtype is not fp32 also holds the fp32 master weights for resume. An in-memory
  model is trained in the dtype it is given. LoRA adapters are saved as peft keeps them (fp32).
- ``bf16`` / ``fp16`` (TRL's booleans): autocast compute. ``bf16``: on CUDA by default where supported; on CPU only
  when asked (``torch.autocast("cpu", bfloat16)``). ``fp16``: CUDA only, with a ``torch.amp.GradScaler`` (saved
  in checkpoints); on a machine without CUDA it is refused at start.
- ``load_in_4bit`` (QLoRA, TRL's name): the base model loaded 4-bit by bitsandbytes (``BitsAndBytesConfig``,
  TRL's ``get_quantization_config``), prepared with peft's ``prepare_model_for_kbit_training`` and trained through
  LoRA adapters. Needs a CUDA GPU, bitsandbytes and ``lora=True``; anything missing is named at start.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alignkit.errors import UserError

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def _dtype_of(value: Any) -> torch.dtype | None:
    if isinstance(value, torch.dtype):
        return value
    if isinstance(value, str):
        return DTYPES.get(value.removeprefix("torch."))
    return None


def source_dtype(spec: Any, trust_remote_code: bool = False) -> torch.dtype | None:
    """The dtype a model folder / hub id records (``config.json``'s ``dtype`` or ``torch_dtype``), or an in-memory
    model's (its first floating parameter's); None when it records none."""
    if isinstance(spec, nn.Module):
        for p in spec.parameters():
            if p.is_floating_point():
                return p.dtype
        return None
    path = Path(os.fspath(spec))
    if path.is_dir():
        f = path / "config.json"
        try:
            cfg = json.loads(f.read_text(encoding="utf-8")) if f.is_file() else {}
        except (OSError, ValueError):
            return None
        return _dtype_of(cfg.get("dtype", cfg.get("torch_dtype")))
    try:  # a hub id (cached or reachable)
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(str(spec), trust_remote_code=trust_remote_code)
    except (OSError, ValueError):
        return None
    return _dtype_of(getattr(config, "dtype", None))


def saved_dtype(requested: str, source: torch.dtype | None) -> torch.dtype:
    """The dtype the model is written in: ``requested`` unless ``auto``; ``auto``: the source's, else fp32."""
    if requested != "auto":
        return DTYPES[requested]
    return source if source in DTYPES.values() else torch.float32


def check_compute(cfg: Any, device: torch.device) -> None:
    """Refuse compute settings this machine cannot run, at start."""
    if cfg.bf16 and cfg.fp16:
        raise UserError("--bf16 and --fp16 are both set; choose one compute precision")
    if cfg.fp16 and device.type != "cuda":
        raise UserError(
            "--fp16 trains with fp16 autocast and a grad scaler, which needs a CUDA GPU; this run is on "
            f"{device.type}. Use --bf16 (CPU autocast) or neither (fp32)"
        )
    if cfg.bf16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError("--bf16: this GPU does not support bfloat16; use --fp16")


def compute_dtype(cfg: Any, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of forward passes (None: no autocast). ``bf16=None``: on where a CUDA GPU supports it."""
    if cfg.fp16:
        return torch.float16
    if cfg.bf16 is None:
        use = device.type == "cuda" and torch.cuda.is_bf16_supported()
    else:
        use = bool(cfg.bf16)
    return torch.bfloat16 if use else None


def autocast_factory(dtype: torch.dtype | None, device: torch.device) -> Callable[[], Any]:
    """A context-manager factory: autocast to ``dtype`` on ``device`` (a no-op when ``dtype`` is None)."""
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device.type, dtype=dtype)


def grad_scaler(dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler | None:
    """fp16 autocast's loss scaler (CUDA); None otherwise."""
    if dtype is torch.float16 and device.type == "cuda":
        return torch.amp.GradScaler("cuda")
    return None


# --- QLoRA ------------------------------------------------------------------------------------------------------


def check_4bit(cfg: Any, *, cuda: bool | None = None, bnb: bool | None = None) -> None:
    """Refuse ``load_in_4bit`` at start when anything it needs is missing, naming all of it."""
    if not cfg.load_in_4bit:
        return
    cuda = torch.cuda.is_available() if cuda is None else cuda
    bnb = importlib.util.find_spec("bitsandbytes") is not None if bnb is None else bnb
    missing = []
    if not cfg.lora:
        missing.append("lora=True (--lora / TRL's use_peft: a 4-bit base is trained through LoRA adapters)")
    if not cuda:
        missing.append("a CUDA GPU (bitsandbytes' 4-bit kernels; this machine has none)")
    if not bnb:
        missing.append("the bitsandbytes package (pip install bitsandbytes)")
    if not isinstance(cfg.model, (str, os.PathLike)):
        missing.append(
            "a model folder or hub id (an in-memory model is already loaded; quantise it yourself)"
        )
    if missing:
        raise UserError("--load-in-4bit (QLoRA) needs " + "; ".join(missing))


def quantization_config(cfg: Any, compute: torch.dtype) -> Any:
    """The ``BitsAndBytesConfig`` of ``load_in_4bit`` (as TRL's ``get_quantization_config``: compute dtype = the
    model dtype, quant type ``bnb_4bit_quant_type``, nested quantisation ``use_bnb_nested_quant``)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_compute_dtype=compute,
        bnb_4bit_quant_type=cfg.bnb_4bit_quant_type,
        bnb_4bit_use_double_quant=cfg.use_bnb_nested_quant,
    )


def load_4bit(cfg: Any, path: str, compute: torch.dtype, device: torch.device) -> nn.Module:
    """The 4-bit base model on ``device``, prepared for k-bit training (peft)."""
    from peft import prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        path,
        quantization_config=quantization_config(cfg, compute),
        dtype=compute,
        device_map={"": device.index or 0},
        trust_remote_code=cfg.trust_remote_code,
    )
    return prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
