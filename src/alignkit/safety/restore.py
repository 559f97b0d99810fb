"""Alignment recovery: restore a gradient-selected subset of weights from the aligned model, with rollback."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from alignkit.engine.logprobs import pad_right
from alignkit.registry import register


def last_token_hidden(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    layer: int,
    *,
    pad_token_id: int = 0,
    params: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """Mean over prompts of the last-token hidden state after decoder layer ``layer`` (``hidden_states[layer]``)."""
    if not prompts:
        raise ValueError("prompts: needs at least one prompt")
    dev = next(model.parameters()).device
    ids, att = pad_right([list(p) for p in prompts], pad_token_id, dev)
    kwargs = {"input_ids": ids, "attention_mask": att, "output_hidden_states": True}
    out = functional_call(model, dict(params), (), kwargs) if params is not None else model(**kwargs)
    hs = out.hidden_states
    if not -len(hs) <= layer < len(hs):
        raise ValueError(f"layer: {layer} is out of range for {len(hs)} hidden states")
    last = att.sum(1) - 1
    return hs[layer][torch.arange(ids.shape[0], device=dev), last].float().mean(0)


def default_selectable(name: str, layer: int) -> bool:
    """The official code's choice: parameters of decoder layers ``< layer``, norms skipped."""
    if "norm" in name:
        return False
    parts = name.split(".")
    if "layers" in parts:
        i = parts.index("layers")
        return i + 1 < len(parts) and parts[i + 1].isdigit() and int(parts[i + 1]) < layer
    return False


@dataclass
class RestoreResult:
    """``restored[name]``: bool mask of the entries now equal to the aligned model's; ``history`` per step."""

    restored: dict[str, Tensor]
    n_restored: int
    n_params: int
    rollback: bool
    history: list[dict[str, Any]] = field(default_factory=list)


def _cos_grad(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    layer: int,
    direction: Tensor,
    pad: int,
    names: list[str],
) -> tuple[float, dict[str, Tensor]]:
    params = dict(model.named_parameters())
    model.zero_grad(set_to_none=True)
    h = last_token_hidden(model, prompts, layer, pad_token_id=pad)
    loss = -torch.nn.functional.cosine_similarity(h, direction.to(h), dim=0)
    grads = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
    return float(loss.detach()), {
        n: (g if g is not None else torch.zeros_like(params[n])) for n, g in zip(names, grads, strict=True)
    }


@torch.no_grad()
def _top_k(scores: Mapping[str, Tensor], k: int) -> dict[str, Tensor]:
    """Bool masks of the ``k`` largest finite scores over all tensors (``-inf`` = not a candidate)."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    k = min(k, int(torch.isfinite(flat).sum()))
    out = {n: torch.zeros_like(s, dtype=torch.bool) for n, s in scores.items()}
    if k <= 0:
        return out
    idx = torch.topk(flat, k).indices
    sel = torch.zeros_like(flat, dtype=torch.bool)
    sel[idx] = True
    off = 0
    for n, s in scores.items():
        out[n] = sel[off : off + s.numel()].view_as(s)
        off += s.numel()
    return out


def restore_alignment_weights(
    model: nn.Module,
    aligned: Mapping[str, Tensor],
    harmful_prompts: Sequence[Sequence[int]],
    *,
    layer: int,
    recovery_rate: float = 0.002,
    steps: int = 20,
    sign_filter: bool = True,
    selectable: Callable[[str], bool] | None = None,
    eval_fn: Callable[[nn.Module], float] | None = None,
    benign_prompts: Sequence[Sequence[int]] | None = None,
    rollback_rate: float = 0.2,
    warmup_steps: int = 5,
    metric_drop: float = 0.05,
    pad_token_id: int = 0,
) -> RestoreResult:
    """Alleviating the Fear of Losing Alignment in LLM Fine-tuning (Yang et al., 2025; arXiv:2504.09757) —
    alignment recovery by restoring a gradient-selected subset of weights from the aligned model, with rollback.

    Edits ``model`` (the fine-tuned model theta_f) in place: each step moves the entries that most pull the
    harmful representation back, chosen by a gradient, to their aligned values theta_a.

    Formula:
        d_h = mean_i h_L(x_i; theta_a)                 (last-token hidden state after layer L, harmful prompts)
        l(theta) = -cos(mean_i h_L(x_i; theta), d_h),  g = grad l
        candidates: (theta - theta_a) * g > 0   (moving to theta_a descends l; all entries if sign_filter=False)
        per step: restore the ceil(recovery_rate * n) candidates with the largest |g|: theta[m] <- theta_a[m]
        rollback (only if eval_fn drops below (1 - metric_drop) * its initial value after warmup_steps steps:
        then restart from theta_f): d_b = mean_i h_L(x_i; theta_f) on benign prompts, l_b = -cos(., d_b);
        each step, of the entries restored in that step with (theta - theta_f) * grad l_b > 0, the
        rollback_rate fraction with the largest |grad l_b| go back to theta_f.

    Hyper-parameters:
        aligned: the aligned model's parameters (``named_parameters`` names; a state dict works).
        layer: L, index into ``hidden_states`` (0 = embeddings); the official default is ``floor(n_layers / 3)``.
        recovery_rate: fraction of the selectable parameters restored per step (default 0.002, official).
        steps: restoration steps (default 20, official).
        sign_filter: keep only sign-matched candidates (default True, official).
        selectable: which parameter names may be restored (default: decoder layers < L, norms skipped, official).
        eval_fn / benign_prompts / rollback_rate (0.2) / warmup_steps (5) / metric_drop (0.05): rollback,
            official defaults; rollback runs only with both ``eval_fn`` and ``benign_prompts``.
        pad_token_id: padding id for the prompt batches (right padding).

    ``recovery_rate=0`` leaves the model unchanged; ``recovery_rate=1, sign_filter=False, steps=1`` with every
    parameter selectable gives the aligned model exactly.

    Source: the catalog's reading of the official code (kangyangWHU/LLMAlignment ``sgdg_rollback_final.py``,
    ``run_recover_exp.py``) and the arXiv 2504.09757 abstract; not re-read here (the code was not found in the
    index this session). Unverified: the paper's title (recalled, not read) and equations; the hidden-state layer indexing
    convention (we use ``hidden_states[L]``).
    """
    if not 0.0 <= recovery_rate <= 1.0:
        raise ValueError(f"recovery_rate must be in [0, 1], got {recovery_rate}")
    if not 0.0 <= rollback_rate <= 1.0:
        raise ValueError(f"rollback_rate must be in [0, 1], got {rollback_rate}")
    pick = selectable or (lambda n: default_selectable(n, layer))
    params = dict(model.named_parameters())
    names = [n for n in params if pick(n)]
    missing = [n for n in names if n not in aligned]
    if missing:
        raise ValueError(f"aligned: missing parameter {missing[0]!r} (and {len(missing) - 1} more)")
    for n in names:
        if aligned[n].shape != params[n].shape:
            raise ValueError(
                f"aligned: parameter {n!r} has shape {tuple(aligned[n].shape)}, model has "
                f"{tuple(params[n].shape)}"
            )
    n_params = sum(params[n].numel() for n in names)
    theta_f = {n: params[n].detach().clone() for n in names}
    theta_a = {n: aligned[n].detach().to(params[n]) for n in names}
    with torch.no_grad():
        d_h = last_token_hidden(
            model,
            harmful_prompts,
            layer,
            pad_token_id=pad_token_id,
            params={k: v.to(params[k]) for k, v in aligned.items() if k in params},
        )
    k = min(n_params, int(-(-recovery_rate * n_params // 1)))
    do_rollback = eval_fn is not None and benign_prompts is not None and rollback_rate > 0
    history: list[dict[str, Any]] = []

    def restore_step() -> dict[str, Tensor]:
        loss, g = _cos_grad(model, harmful_prompts, layer, d_h, pad_token_id, names)
        with torch.no_grad():
            scores = {}
            for n in names:
                diff = params[n] - theta_a[n]
                ok = (diff * g[n] > 0) if sign_filter else torch.ones_like(diff, dtype=torch.bool)
                scores[n] = torch.where(
                    ok, g[n].abs().float(), torch.full_like(g[n], -torch.inf, dtype=torch.float)
                )
            masks = _top_k(scores, k)
            for n in names:
                params[n][masks[n]] = theta_a[n][masks[n]]
        history.append({"harmful_cos_loss": loss, "restored": int(sum(int(m.sum()) for m in masks.values()))})
        return masks

    rollback = False
    if do_rollback:
        assert eval_fn is not None and benign_prompts is not None
        base = float(eval_fn(model))
        for _ in range(min(warmup_steps, steps)):
            restore_step()
        if float(eval_fn(model)) < base * (1 - metric_drop):
            rollback = True
            with torch.no_grad():
                for n in names:
                    params[n].copy_(theta_f[n])
                d_b = last_token_hidden(model, benign_prompts, layer, pad_token_id=pad_token_id)
            history.clear()
            for _ in range(steps):
                masks = restore_step()
                _, gb = _cos_grad(model, benign_prompts, layer, d_b, pad_token_id, names)
                with torch.no_grad():
                    scores = {
                        n: torch.where(
                            masks[n] & ((params[n] - theta_f[n]) * gb[n] > 0),
                            gb[n].abs().float(),
                            torch.full_like(gb[n], -torch.inf, dtype=torch.float),
                        )
                        for n in names
                    }
                    n_this = int(sum(int(m.sum()) for m in masks.values()))
                    back = _top_k(scores, int(rollback_rate * n_this))
                    for n in names:
                        params[n][back[n]] = theta_f[n][back[n]]
                history[-1]["rolled_back"] = int(sum(int(m.sum()) for m in back.values()))
        else:
            for _ in range(steps - min(warmup_steps, steps)):
                restore_step()
    else:
        for _ in range(steps):
            restore_step()
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        restored = {n: (params[n] == theta_a[n]) & (theta_f[n] != theta_a[n]) for n in names}
    return RestoreResult(
        restored, int(sum(int(m.sum()) for m in restored.values())), n_params, rollback, history
    )


register(
    name="restore_alignment_weights",
    kind="merge",
    family="harmful_finetuning",
    paper="Alleviating the Fear of Losing Alignment in LLM Fine-tuning",
    arxiv="2504.09757",
    tags=("safety",),
    summary="restore gradient-selected weights of a fine-tuned model to the aligned model's values, with rollback",
)(restore_alignment_weights)
