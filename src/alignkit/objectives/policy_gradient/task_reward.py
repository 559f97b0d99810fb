"""Task-reward tuning: REINFORCE with a baseline towards an arbitrary reward function."""

from __future__ import annotations

from alignkit.objectives.policy_gradient._common import reinforce, rewards_of
from alignkit.registry import register_objective
from alignkit.types import LossOutput, UnpairedBatch

PAPER = "Tuning computer vision models with task rewards"


@register_objective(
    name="task_reward",
    verification="reconstruction",
    aliases=("reinforce_baseline",),
    paper=PAPER,
    arxiv="2302.08242",
    family="policy_gradient",
    needs_reference=False,
    aggregation="sum",
    batch_type=UnpairedBatch,
    requires=("rewards",),
    optional={"group_ids": "no prompt groups: the baseline is taken over the whole micro-batch"},
    tags=("reward", "algorithm:pointwise", "feedback:reward", "data:on-policy"),
)
def task_reward(batch: UnpairedBatch, *, baseline: str = "leave_one_out") -> LossOutput:
    """Tuning computer vision models with task rewards (arXiv:2302.08242).

    After maximum-likelihood pre-training, the model is tuned to maximise the expected task reward of its own
    samples (panoptic quality, mAP-style recall, colourfulness, CIDEr, ...) with the REINFORCE log-derivative
    trick and a baseline that reduces variance. The reward need not be differentiable.

    Formula:
        y_i ~ pi(.|x),  R_i = R(x, y_i),  b_i = mean_{j != i, same x} R_j   (leave-one-out)
        L = -mean_i (R_i - b_i) log pi(y_i|x)      (R - b carries no gradient)
        grad L = -mean_i (R_i - b_i) grad log pi(y_i|x),  an unbiased estimate of -grad E[R]

    Hyper-parameters:
        baseline: "leave_one_out" (ours: unbiased, as RLOO) — "leave_one_out", "mean" (group mean) or "none";
            a batch's explicit ``baselines`` override it.

    Inputs: a :class:`alignkit.batches_extra.RewardedBatch` (``rewards``, ``group_ids`` = prompt of each
    sample, optional ``baselines``); on a plain ``UnpairedBatch`` the labels are a 0/1 reward. Sources: the
    paper's two-step MLE -> REINFORCE recipe (arXiv 2302.08242, ICML 2023; summaries in the project catalogue).
    UNVERIFIED: the paper's exact baseline (leave-one-out over the samples of the same input is this library's
    default, as in RLOO) and samples per input.
    """
    r = rewards_of(batch)
    if r.dim() != 1:
        raise ValueError("task_reward takes one reward per sample: rewards must have shape (B,)")
    losses, adv = reinforce(batch, r, baseline)
    return LossOutput(
        loss=losses.mean(),
        losses=losses,
        metrics={
            "reward": r.detach().mean().item(),
            "advantage/abs_mean": adv.abs().mean().item(),
            "logps": batch.side.seq.detach().mean().item(),
        },
    )
