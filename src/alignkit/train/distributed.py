"""Scale-out through PyTorch's own tools: DDP, or FSDP2 (``torch.distributed.fsdp.fully_shard``).

``wrap`` returns the module a step calls (the :class:`~alignkit.engine.layout.PolicyScorer`): under DDP a
``DistributedDataParallel`` around it; under FSDP the scorer itself, with every decoder layer and then the
scorer sharded in place (the scorer is the root, so its forward gathers the embeddings, final norm and LM head
that the completion-only head reads directly). FSDP checkpoints are sharded with ``torch.distributed.checkpoint``
(each rank writes its shard; resume reads them back into the same world size); the final model is gathered into
one full state dict and saved by rank 0 with ``save_pretrained``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from alignkit.engine.logprobs import unwrap_model
from alignkit.errors import UserError

STRATEGIES = ("auto", "ddp", "fsdp")


def strategy(requested: str, world: int) -> str:
    """``none`` (one process), ``ddp`` or ``fsdp``."""
    if requested not in STRATEGIES:
        raise UserError(f"distributed must be one of {STRATEGIES}; got {requested!r}")
    if requested == "fsdp":
        return "fsdp"
    return "ddp" if world > 1 else "none"


def _decoder_layers(model: nn.Module) -> list[nn.Module]:
    base = unwrap_model(model)
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else None
    layers = getattr(decoder, "layers", None) or getattr(decoder, "h", None)
    if layers is None:
        raise UserError(
            f"FSDP shards decoder layers, and {type(base).__name__} has no decoder.layers (or .h) to shard"
        )
    return list(layers)


def wrap(scorer: nn.Module, kind: str, device: torch.device) -> nn.Module:
    if kind == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(scorer, device_ids=[device.index] if device.type == "cuda" else None)
    if kind == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for layer in _decoder_layers(scorer.model):
            fully_shard(layer)
        fully_shard(scorer)
    return scorer


def no_sync(module: nn.Module, kind: str, last: bool) -> contextlib.AbstractContextManager[Any]:
    """Skip the gradient all-reduce on every micro-batch but the last (DDP); FSDP reduce-scatters each one."""
    if kind == "ddp" and not last:
        return module.no_sync()
    return contextlib.nullcontext()


def all_reduce_sum(values: dict[str, float], world: int) -> dict[str, float]:
    """Sum floats over ranks (keys must agree across ranks: they come from the same objective)."""
    if world <= 1 or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist(), strict=True))


# --- FSDP checkpoints -------------------------------------------------------------------------------------------


def save_sharded(path: Path, module: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Each rank writes its shard of model and optimizer state into ``path/sharded`` (collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(module, optimizer)
    dcp.save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=str(path / "sharded"))


def load_sharded(path: Path, module: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_sd, optim_sd = get_state_dict(module, optimizer)
    state = {"model": model_sd, "optimizer": optim_sd}
    dcp.load(state, checkpoint_id=str(path / "sharded"))
    set_state_dict(module, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights gathered to CPU (collective; every rank gets them). Keys as ``model.*`` of the
    scorer, so strip the ``model.`` prefix for ``save_pretrained``."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    sd = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k.removeprefix("model."): v for k, v in sd.items()}


@contextlib.contextmanager
def gathered(module: nn.Module, kind: str) -> Iterator[None]:
    """Full (unsharded) parameters for the duration (sampling under FSDP); a no-op otherwise."""
    if kind != "fsdp":
        yield
        return
    module.unshard()
    try:
        yield
    finally:
        module.reshard()


def barrier(world: int) -> None:
    if world > 1:
        dist.barrier()
