"""Random inputs shaped like the engine's output: per-token log-probs with unequal completion lengths."""

from __future__ import annotations

import torch

import alignkit as ak


def token_inputs(
    b: int = 4, t: int = 7, seed: int = 0, dtype: torch.dtype = torch.float64
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def lp() -> torch.Tensor:
        return -torch.rand(b, t, generator=g, dtype=dtype) * 1.5 - 0.01

    def mask() -> torch.Tensor:
        lengths = torch.randint(1, t + 1, (b,), generator=g)
        lengths[0] = t  # at least one full row
        return (torch.arange(t) < lengths.unsqueeze(1)).to(dtype)

    mc, mr = mask(), mask()
    return {
        "chosen_logps": (lp() * mc).requires_grad_(),
        "rejected_logps": (lp() * mr).requires_grad_(),
        "ref_chosen_logps": lp() * mc,
        "ref_rejected_logps": lp() * mr,
        "chosen_mask": mc,
        "rejected_mask": mr,
        "chosen_log_sum_sq_probs": lp() * 0.5,
        "rejected_log_sum_sq_probs": lp() * 0.5,
    }


def preference_batch(x: dict[str, torch.Tensor], with_lss: bool = False) -> ak.PreferenceBatch:
    keys = [
        "chosen_logps",
        "rejected_logps",
        "ref_chosen_logps",
        "ref_rejected_logps",
        "chosen_mask",
        "rejected_mask",
    ]
    if with_lss:
        keys += ["chosen_log_sum_sq_probs", "rejected_log_sum_sq_probs"]
    return ak.PreferenceBatch(**{k: x[k] for k in keys})


def grads(loss: torch.Tensor, *tensors: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, tensors, retain_graph=True, allow_unused=True))
