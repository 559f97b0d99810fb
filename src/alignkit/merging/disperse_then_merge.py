"""Disperse-Then-Merge: split the SFT data, fine-tune one sub-model per portion, average the sub-models."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import torch

from alignkit.engine._progress import make_progress
from alignkit.merging.checkpoint import StateDict, check_compatible, source_of, work_dtype
from alignkit.merging.task_arithmetic import resolve_weights
from alignkit.registry import register


def average(
    models: Sequence[StateDict], *, weights: Sequence[float] | None = None, progress: bool = False
) -> dict[str, torch.Tensor]:
    """Weight averaging: ``theta = sum_k w_k theta_k / sum_k w_k`` (uniform by default); DTM's merge step.

    Non-float tensors are copied from the first model and must be equal in all. Computed in float32.
    """
    w = resolve_weights(weights, len(models))
    total = sum(w)
    if total == 0:
        raise ValueError("average weights sum to 0")
    first, rest = models[0], list(models[1:])
    names = check_compatible(first, rest, base_name="models[0]") if rest else list(first)
    out: dict[str, torch.Tensor] = {}
    with make_progress(disable=not progress) as bar:
        task = bar.add_task("averaging", total=len(names))
        for k in names:
            t0 = first[k]
            if not t0.is_floating_point():
                for i, m in enumerate(rest, start=1):
                    if not torch.equal(m[k], t0):
                        raise ValueError(f"{source_of(m, f'models[{i}]')}: non-float tensor {k!r} differs")
                out[k] = t0.clone()
            else:
                wd = work_dtype(t0)
                acc = sum(wi * m[k].to(wd) for wi, m in zip(w, models, strict=True))
                out[k] = (acc / total).to(t0.dtype)
            bar.advance(task)
    return out


def disperse(data: Sequence[Any], k: int, *, seed: int = 0) -> list[list[Any]]:
    """Randomly split ``data`` into ``k`` disjoint portions of (nearly) equal size (DTM's random dispersal)."""
    if k < 1 or k > len(data):
        raise ValueError(f"k must be in [1, len(data)={len(data)}], got {k}")
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    return [[data[i] for i in order[j::k]] for j in range(k)]


@register(
    name="disperse_then_merge",
    verification="reconstruction",
    kind="merge",
    family="weight_averaging",
    aliases=("dtm",),
    paper="Disperse-Then-Merge: Pushing the Limits of Instruction Tuning via Alignment Tax Reduction",
    arxiv="2405.13432",
    summary="split the SFT data into K portions, train K sub-models from one base, average their weights",
)
def disperse_then_merge(
    data: Sequence[Any],
    train_fn: Callable[[list[Any], int], StateDict],
    *,
    k: int = 4,
    seed: int = 0,
    portions: Sequence[Sequence[Any]] | None = None,
    merge_fn: Callable[[list[StateDict]], dict[str, torch.Tensor]] | None = None,
) -> dict[str, torch.Tensor]:
    """Disperse-Then-Merge: Pushing the Limits of Instruction Tuning via Alignment Tax Reduction
    (Fu et al., Findings of ACL 2024; arXiv:2405.13432).

    The alignment tax (knowledge/reasoning benchmarks degrading late in SFT) is attributed to data biases; each
    sub-model trained on one portion of the instruction data carries its own biases, which averaging in weight
    space attenuates while the shared knowledge survives. No extra inference cost.

    Formula:
        D = D_1 u ... u D_K             (disperse: random split, or clusters passed as ``portions``)
        theta_k = SFT(theta_0, D_k)     (``train_fn(D_k, k)``, every sub-model from the same base)
        theta   = (1/K) sum_k theta_k   (merge: simple average, the paper's robust default)

    Hyper-parameters:
        k: number of portions / sub-models K (default 4: alignkit's choice, the paper's default K was not
            verified).
        seed: seed of the random split (default 0).
            Operational (alignkit's interface, not a paper hyper-parameter).
        portions: explicit portions (e.g. from a clustering; the paper compares clustering methods) instead of
            a random split (default None).
        merge_fn: merging of the sub-models (default None = uniform ``average``; the paper also tries task
            arithmetic and TIES, e.g. ``lambda sds: ties(base, sds)``).

    Source: the paper (aclanthology 2024.findings-acl.175; procedure and "simple average is robust" from its
    summaries: sciencestack, liner review of Fig. 7). The sub-model training is the caller's ``train_fn``.

    Guessed after re-checking: the clustering and K: a second search (issue #14) found only summaries (the
    paper compares clustering methods; simple averaging is robust); still guessed.
    """
    parts = [list(p) for p in portions] if portions is not None else disperse(data, k, seed=seed)
    subs: list[StateDict] = []
    with make_progress() as bar:
        task = bar.add_task("disperse-then-merge: sub-models", total=len(parts))
        for i, part in enumerate(parts):
            subs.append(train_fn(part, i))
            bar.advance(task)
    return merge_fn(subs) if merge_fn is not None else average(subs)
