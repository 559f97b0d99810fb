"""Transformed and combined rewards: log-sigmoid of the reward against a reference reward, summed over
properties, optimised with a KL-regularised policy gradient."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.batches_extra import extra
from alignkit.objectives.policy_gradient._common import reinforce, rewards_of
from alignkit.registry import register_objective
from alignkit.types import LossOutput, UnpairedBatch

PAPER = "Transforming and Combining Rewards for Aligning Large Language Models"


def lsc_transform(rewards: Tensor, ref_rewards: Tensor | float = 0.0) -> Tensor:
    """u = log sigma(r - r_ref): the log-probability, under the Bradley-Terry reward model, that the response
    beats the reference one ("is good"). Always <= 0, -log 2 at r = r_ref, saturating as r - r_ref grows."""
    return F.logsigmoid(rewards - torch.as_tensor(ref_rewards, dtype=rewards.dtype))


def combine_rewards(
    rewards: Tensor, ref_rewards: Tensor | float = 0.0, weights: Sequence[float] | None = None
) -> Tensor:
    """sum_k w_k log sigma(r_k - r_ref,k) over the last axis (properties): with w = 1 the log-probability that
    the response is good on every property (a logical AND)."""
    u = lsc_transform(rewards, ref_rewards)
    if rewards.dim() == 1:
        return u
    w = torch.ones(u.shape[-1], dtype=u.dtype) if weights is None else torch.as_tensor(weights, dtype=u.dtype)
    if w.shape != (u.shape[-1],):
        raise ValueError(f"weights must hold one value per property ({u.shape[-1]}); got {tuple(w.shape)}")
    return (u * w).sum(-1)


@register_objective(
    name="lsc_reward",
    verification="reconstruction",
    aliases=("transformed_reward",),
    paper=PAPER,
    arxiv="2402.00742",
    family="policy_gradient",
    needs_reference=True,
    aggregation="sum",
    batch_type=UnpairedBatch,
    requires=("rewards",),
    optional={
        "ref_rewards": "no ref_reward column: r_ref(x) = 0, so the transform is log sigma(r)",
        "group_ids": "no prompt groups: the baseline is taken over the whole micro-batch",
    },
    tags=("reward", "multi-objective", "algorithm:pointwise", "feedback:reward", "data:on-policy"),
)
def lsc_reward(
    batch: UnpairedBatch,
    *,
    kl_coef: float = 0.1,
    weights: Sequence[float] | None = None,
    baseline: str = "leave_one_out",
) -> LossOutput:
    """Transforming and Combining Rewards for Aligning Large Language Models (arXiv:2402.00742).

    RLHF with a Bradley-Terry reward r is better served by u = log sigma(r - r_ref(x)) than by r itself: u is
    the log-probability that the output beats a reference output, it saturates for already-good outputs (less
    reward hacking, more weight on improving poor ones), and summing u over properties is the log-probability of
    being good on all of them. The policy maximises E[u] - gamma KL(pi || pi_0); here as a REINFORCE surrogate
    with the KL folded into the reward.

    Formula:
        u(x, y) = sum_k w_k log sigma(r_k(x, y) - r_ref,k(x))
        R = u - gamma (log pi(y|x) - log pi_0(y|x))            (no gradient through R)
        L = -mean_i (R_i - b_i) log pi(y_i|x),  b_i = leave-one-out mean of R over the same prompt

    Hyper-parameters:
        kl_coef: 0.1 — gamma, the KL strength (this library's choice; the paper sweeps it).
        weights: None — w_k per property; None = 1 each (the paper's sum).
        baseline: "leave_one_out" — "leave_one_out", "mean" or "none" (ours, as ``task_reward``).

    Inputs: a :class:`alignkit.batches_extra.RewardedBatch` with ``rewards`` (B,) or (B, P) and ``ref_rewards``
    (r_ref(x): the paper uses a reference response's reward, e.g. a quantile of SFT samples' rewards); without
    ``ref_rewards`` r_ref = 0, and a plain ``UnpairedBatch``'s labels are a 0/1 reward. Source: the paper's
    abstract (ICML 2024) and summaries of its Sections 3-5 (catalogue entry 66); the paper optimises with PPO
    — this REINFORCE surrogate is this library's pure-loss form. UNVERIFIED: how r_ref(x) was chosen in the
    experiments.
    """
    ref = batch.require_reference("objective 'lsc_reward' (KL to the initial policy)")
    r = rewards_of(batch)
    ref_r = extra(batch, "ref_rewards")
    u = combine_rewards(r, 0.0 if ref_r is None else ref_r, weights)
    kl = (batch.side.seq - ref.seq).detach()
    total = u - kl_coef * kl
    losses, adv = reinforce(batch, total, baseline)
    return LossOutput(
        loss=losses.mean(),
        losses=losses,
        metrics={
            "reward/transformed": u.detach().mean().item(),
            "kl": kl.mean().item(),
            "advantage/abs_mean": adv.abs().mean().item(),
        },
    )
