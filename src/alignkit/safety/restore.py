"""Alignment recovery: restore a gradient-selected subset of weights from the aligned model, with rollback."""

from __future__ import annotations

import math
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
    h = hs[layer][torch.arange(ids.shape[0], device=dev), last]
    return h.to(torch.promote_types(h.dtype, torch.float32)).mean(0)


def default_selectable(name: str, layer: int) -> bool:
    """The official code's choice: parameters of decoder layers ``< layer``, norms skipped."""
    if "norm" in name:
        return False
    i = _layer_index(name)
    return i is not None and i < layer


def default_budget(name: str) -> bool:
    """The official per-step budget counts every decoder-layer parameter of the full model, norms included
    (``utils/model_utils.py`` ``get_total_param``: names whose third dotted part is an integer)."""
    return _layer_index(name) is not None


def _layer_index(name: str) -> int | None:
    parts = name.split(".")
    if "layers" in parts:
        i = parts.index("layers")
        if i + 1 < len(parts) and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


@dataclass
class RestoreResult:
    """``restored[name]``: bool mask of the entries now equal to the aligned model's; ``n_params``: selectable
    entries; ``n_budget``: the entries the per-step budget is a fraction of; ``history`` per step."""

    restored: dict[str, Tensor]
    n_restored: int
    n_params: int
    rollback: bool
    history: list[dict[str, Any]] = field(default_factory=list)
    n_budget: int = 0


def _cos_grad(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    layer: int,
    direction: Tensor,
    pad: int,
    names: list[str],
    batch_size: int,
) -> tuple[float, dict[str, Tensor]]:
    """Sum over prompt batches of grad(-cos(mean_batch h_L, direction)) (the official ``optimize_param`` calls
    ``loss.backward()`` once per batch)."""
    params = dict(model.named_parameters())
    model.zero_grad(set_to_none=True)
    total = {n: torch.zeros_like(params[n]) for n in names}
    losses = []
    for i in range(0, len(prompts), batch_size):
        h = last_token_hidden(model, prompts[i : i + batch_size], layer, pad_token_id=pad)
        loss = -torch.nn.functional.cosine_similarity(h, direction.to(h), dim=0)
        grads = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
        for n, g in zip(names, grads, strict=True):
            if g is not None:
                total[n] += g
        losses.append(float(loss.detach()))
    return sum(losses) / len(losses), total


@torch.no_grad()
def _above_kth(scores: Mapping[str, Tensor], k: int) -> dict[str, Tensor]:
    """The official selection: over all finite scores (``-inf`` = not a candidate), threshold = the k-th
    largest, keep the candidates STRICTLY above it (``find_threshold`` + ``get_threshold_mask``: ``|g| >
    threshold``), i.e. k - 1 entries when there are no ties. With ``k >=`` the number of candidates every
    candidate is kept (the official ``topk`` would raise for ``k >`` candidates)."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    finite = torch.isfinite(flat)
    n_cand = int(finite.sum())
    if k <= 0 or n_cand == 0:
        sel = torch.zeros_like(flat, dtype=torch.bool)
    elif k >= n_cand:
        sel = finite
    else:
        threshold = torch.topk(flat, k).values[-1]
        sel = finite & (flat > threshold)
    out = {}
    off = 0
    for n, s in scores.items():
        out[n] = sel[off : off + s.numel()].view_as(s)
        off += s.numel()
    return out


def _masked_magnitude(g: Tensor, keep: Tensor) -> Tensor:
    """|g| where ``keep`` (in at least float32), -inf elsewhere (not a candidate)."""
    mag = g.abs().to(torch.promote_types(g.dtype, torch.float32))
    return torch.where(keep, mag, torch.full_like(mag, -torch.inf))


def _ceil(x: float) -> int:
    return int(math.ceil(x - 1e-12)) if x > 0 else 0


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
    budget: Callable[[str], bool] | None = None,
    batch_size: int = 8,
    eval_fn: Callable[[nn.Module], float] | None = None,
    benign_prompts: Sequence[Sequence[int]] | None = None,
    rollback_rate: float = 0.2,
    warmup_steps: int = 5,
    metric_drop: float = 0.05,
    pad_token_id: int = 0,
) -> RestoreResult:
    """Alleviating the Fear of Losing Alignment in LLM Fine-tuning (Yang et al., IEEE S&P 2025; arXiv:2504.09757)
    — alignment recovery by restoring a gradient-selected subset of weights from the aligned model, with
    rollback.

    Edits ``model`` (the fine-tuned model theta_f) in place: each step moves the entries that most pull the
    harmful representation back, chosen by a gradient, to their aligned values theta_a.

    Formula:
        d_h = mean_i h_L(x_i; theta_a)                 (last-token hidden state after layer L, harmful prompts)
        l(theta) = sum_batches -cos(mean_{i in batch} h_L(x_i; theta), d_h),   g_s = grad l at step s
        G_s = sum_{s' <= s} g_s'           (gradients accumulate over the steps; never zeroed between them)
        candidates: (theta - theta_a) * G_s > 0   (moving to theta_a descends l; all if sign_filter=False)
        n = numel of every decoder-layer parameter of the full model (``budget``), k = ceil(recovery_rate * n)
        per step: tau = k-th largest |G_s| over the candidates; restore candidates with |G_s| > tau:
            theta[m] <- theta_a[m]
        rollback (only if eval_fn drops below (1 - metric_drop) * its initial value after warmup_steps steps:
        then restart from theta_f; the harmful gradient is then fresh each step, g_s): d_b = mean_i h_L(x_i;
        theta_f) on benign prompts, l_b likewise; candidates C = this step's restored entries with
        (theta - theta_f) * grad l_b > 0; tau_b = the ceil(rollback_rate * |C|)-th largest |grad l_b| over C;
        entries of C above tau_b go back to theta_f.

    Hyper-parameters:
        aligned: the aligned model's parameters (``named_parameters`` names; a state dict works).
        layer: L, index into ``hidden_states`` (0 = embeddings); the official ``run_recover_exp.py`` uses
            ``floor(2 * n_layers / 6)`` (``sgdg_rollback_final.py``'s own ``__main__``: ``floor(4 * n / 6)``).
        recovery_rate: 0.002 — fraction of the budget restored per step (official ``run_recover_exp.py``
            ``sparsity``).
        steps: 20 (official ``run_recover_exp.py``).
        sign_filter: True — keep only sign-matched candidates (official ``get_select_mask``; False is ours, an
            ablation).
        selectable: which parameter names may be restored (default: decoder layers < L, norms skipped, official
            ``layer_index in range(layer_end)`` and the ``layernorm`` skip).
        budget: which parameters the per-step count is a fraction of (default: every decoder-layer parameter of
            the full model, norms included — official ``get_total_param``, computed before truncation).
        batch_size: 8 — prompts per gradient batch (official ``run_recover_exp.py``; each batch's cosine loss
            is back-propagated separately and the gradients add up).
        eval_fn, benign_prompts: None — the rollback's utility metric and its prompts (ours: rollback runs
            only when both are given).
        rollback_rate: 0.2, warmup_steps: 5, metric_drop: 0.05 — rollback, official ``run_recover_exp.py``
            defaults.
        pad_token_id: padding id for the prompt batches (right padding; the official code pads left and reads
            position -1 — the same last token).

    ``recovery_rate=0`` leaves the model unchanged; ``recovery_rate=1, sign_filter=False, steps=1`` with every
    parameter selectable and counted in the budget gives the aligned model exactly.

    Source: official code kangyangWHU/LLMAlignment (``sgdg_rollback_final.py``: ``AlignParamRollback``
    ``optimize_param``, ``get_select_mask``, ``find_threshold``, ``get_threshold_mask``, ``recover_param``, ``run``;
    ``utils/model_utils.py``: ``get_total_param``, ``truncate_auto_model``; ``run_recover_exp.py``), read; the
    test restates one step and one rollback step of it. Departure: where k exceeds the number of candidates the
    official ``torch.topk`` raises; alignkit restores every candidate.
    """
    if not 0.0 <= recovery_rate <= 1.0:
        raise ValueError(f"recovery_rate must be in [0, 1], got {recovery_rate}")
    if not 0.0 <= rollback_rate <= 1.0:
        raise ValueError(f"rollback_rate must be in [0, 1], got {rollback_rate}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pick = selectable or (lambda n: default_selectable(n, layer))
    counts = budget or default_budget
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
    n_budget = sum(p.numel() for n, p in params.items() if counts(n))
    if n_budget == 0:
        raise ValueError(
            "budget: no parameter is counted (the default counts names with a 'layers.<i>' part); pass budget="
        )
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
    k = min(n_budget, _ceil(recovery_rate * n_budget))
    do_rollback = eval_fn is not None and benign_prompts is not None and rollback_rate > 0
    history: list[dict[str, Any]] = []
    acc = {n: torch.zeros_like(params[n]) for n in names}

    def restore_step(accumulate: bool) -> dict[str, Tensor]:
        loss, g = _cos_grad(model, harmful_prompts, layer, d_h, pad_token_id, names, batch_size)
        with torch.no_grad():
            if accumulate:
                for n in names:
                    acc[n] += g[n]
                g = acc
            scores = {}
            for n in names:
                diff = params[n] - theta_a[n]
                ok = (diff * g[n] > 0) if sign_filter else torch.ones_like(diff, dtype=torch.bool)
                scores[n] = _masked_magnitude(g[n], ok)
            masks = _above_kth(scores, k)
            for n in names:
                params[n][masks[n]] = theta_a[n][masks[n]]
        history.append({"harmful_cos_loss": loss, "restored": int(sum(int(m.sum()) for m in masks.values()))})
        return masks

    rollback = False
    if do_rollback:
        assert eval_fn is not None and benign_prompts is not None
        base = float(eval_fn(model))
        for _ in range(min(warmup_steps, steps)):
            restore_step(accumulate=True)
        if float(eval_fn(model)) < base * (1 - metric_drop):
            rollback = True
            with torch.no_grad():
                for n in names:
                    params[n].copy_(theta_f[n])
                d_b = last_token_hidden(model, benign_prompts, layer, pad_token_id=pad_token_id)
            history.clear()
            for _ in range(steps):
                masks = restore_step(accumulate=False)
                _, gb = _cos_grad(model, benign_prompts, layer, d_b, pad_token_id, names, batch_size)
                with torch.no_grad():
                    scores = {
                        n: _masked_magnitude(gb[n], masks[n] & ((params[n] - theta_f[n]) * gb[n] > 0))
                        for n in names
                    }
                    n_cand = int(sum(int(torch.isfinite(v).sum()) for v in scores.values()))
                    back = _above_kth(scores, _ceil(rollback_rate * n_cand))
                    for n in names:
                        params[n][back[n]] = theta_f[n][back[n]]
                history[-1]["rolled_back"] = int(sum(int(m.sum()) for m in back.values()))
        else:
            for _ in range(steps - min(warmup_steps, steps)):
                restore_step(accumulate=True)
    else:
        for _ in range(steps):
            restore_step(accumulate=True)
    model.zero_grad(set_to_none=True)
    with torch.no_grad():
        restored = {n: (params[n] == theta_a[n]) & (theta_f[n] != theta_a[n]) for n in names}
    return RestoreResult(
        restored, int(sum(int(m.sum()) for m in restored.values())), n_params, rollback, history, n_budget
    )


register(
    name="restore_alignment_weights",
    kind="merge",
    family="harmful_finetuning",
    paper="Alleviating the Fear of Losing Alignment in LLM Fine-tuning",
    arxiv="2504.09757",
    tags=("safety",),
    summary="restore gradient-selected weights of a fine-tuned model to the aligned model's values, with rollback",
    verification="official-code-parity",
)(restore_alignment_weights)
