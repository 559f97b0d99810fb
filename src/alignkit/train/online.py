"""Online data: completions sampled from the policy each step and scored by ``reward_fn``.

Preference objectives get pairs (two samples per prompt, the higher reward chosen); policy-gradient objectives
(``UnpairedBatch`` with ``rewards``) get every sample with its reward and its prompt as the baseline group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from alignkit.data.prepare import Example
from alignkit.engine.generation import sample
from alignkit.errors import UserError
from alignkit.train.config import TrainConfig


def _sample_and_score(
    model: nn.Module,
    prompts: list[Example],
    cfg: TrainConfig,
    num_samples: int,
    seed: int,
    pad: int,
) -> tuple[list[list[list[int]]], torch.Tensor]:
    comps = sample(
        model,
        [e.prompt_ids for e in prompts],
        num_samples=num_samples,
        max_new_tokens=cfg.online_max_new_tokens,
        temperature=cfg.online_temperature,
        top_p=cfg.online_top_p,
        top_k=cfg.online_top_k,
        seed=seed,
        pad_token_id=pad,
        progress=False,
    )
    p_ids = [e.prompt_ids for e in prompts for _ in range(num_samples)]
    c_ids = [c for per in comps for c in per]
    reward_fn: Callable[..., Any] = cfg.reward_fn
    rewards = torch.as_tensor(reward_fn(p_ids, c_ids), dtype=torch.float64)
    if rewards.shape[0] != len(c_ids) or rewards.dim() not in (1, 2):
        raise UserError(
            f"reward_fn returned rewards of shape {tuple(rewards.shape)} for {len(c_ids)} completions; "
            f"expected ({len(c_ids)},) or ({len(c_ids)}, P)"
        )
    return comps, rewards


def online_pairs(
    model: nn.Module, prompts: list[Example], cfg: TrainConfig, seed: int, pad: int
) -> tuple[list[Example], float]:
    """Two samples per prompt; the one with the higher reward is chosen. Returns (pairs, mean reward)."""
    comps, rewards = _sample_and_score(model, prompts, cfg, 2, seed, pad)
    total = rewards if rewards.dim() == 1 else rewards.sum(-1)
    pairs = []
    for i, e in enumerate(prompts):
        a, b = comps[i]
        first = bool(total[2 * i] >= total[2 * i + 1])
        chosen, rejected = (a, b) if first else (b, a)
        pairs.append(Example(e.prompt_ids, chosen_ids=chosen, rejected_ids=rejected, where=e.where))
    return pairs, float(total.mean())


def online_scored(
    model: nn.Module, prompts: list[Example], cfg: TrainConfig, seed: int, pad: int
) -> tuple[list[Example], list[int], float]:
    """``cfg.online_samples`` samples per prompt with their rewards (``extras['reward']``) and group ids (one
    group per prompt: the baseline of REINFORCE-style objectives). Returns (examples, group ids, mean reward)."""
    k = cfg.online_samples
    comps, rewards = _sample_and_score(model, prompts, cfg, k, seed, pad)
    out: list[Example] = []
    groups: list[int] = []
    for i, e in enumerate(prompts):
        for j, c in enumerate(comps[i]):
            r = rewards[i * k + j]
            extras = {"reward": r.tolist() if r.dim() else float(r)}
            out.append(Example(e.prompt_ids, completion_ids=c or [pad], where=e.where, extras=extras))
            groups.append(i)
    total = rewards if rewards.dim() == 1 else rewards.sum(-1)
    return out, groups, float(total.mean())
