"""Bradley-Terry reward-model loss, with optional margin and reward centring."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from alignkit.registry import register_objective
from alignkit.types import LossOutput, RewardBatch


@register_objective(
    name="bradley_terry",
    verification="trl-parity",
    aliases=("bt", "reward_model"),
    family="reward",
    paper="Training language models to follow instructions with human feedback",
    arxiv="2203.02155",
    needs_reference=False,
    batch_type=RewardBatch,
    tags=("reward-model", "algorithm:pairwise", "feedback:preference", "data:off-policy"),
)
def bradley_terry(batch: RewardBatch, *, center_rewards_coefficient: float | None = None) -> LossOutput:
    """Reward-model training as in Training language models to follow instructions with human feedback
    (InstructGPT, arXiv:2203.02155): the Bradley-Terry likelihood of the human preference. A per-pair margin
    (Llama 2, arXiv:2307.09288) and a centring penalty that keeps rewards near zero (Eisenstein et al.,
    arXiv:2312.09244) are optional.

    Formula:
        L = -log sigma(r(x, y_w) - r(x, y_l) - m) + c * mean_B[(r(x, y_w) + r(x, y_l))^2]

    Hyper-parameters:
        center_rewards_coefficient: None — c; None or 0 disables centring (TRL's name; 0.01 is typical).
    """
    rc, rr = batch.chosen_rewards, batch.rejected_rewards
    margin = batch.margin if batch.margin is not None else torch.zeros_like(rc)
    losses = -F.logsigmoid(rc - rr - margin)
    loss = losses.mean()
    if center_rewards_coefficient:
        loss = loss + center_rewards_coefficient * torch.mean((rc + rr) ** 2)
    metrics = {
        "accuracy": (rc > rr).float().mean().item(),
        "margin": (rc - rr).detach().mean().item(),
        "mean_reward": torch.cat([rc, rr]).detach().mean().item(),
    }
    return LossOutput(loss=loss, losses=losses, metrics=metrics)
