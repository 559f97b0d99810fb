"""Call TRL 1.16's own loss code on given log-probs (no model), for parity tests.

TRL computes its losses inside ``_compute_loss(model, inputs)``; we pass a stand-in model whose output carries
the per-token log-probs we choose, so TRL's real code path computes the loss. Nothing of TRL's formulas is
re-typed here.
"""

from __future__ import annotations

import types
from collections import defaultdict

import torch

trl = __import__("pytest").importorskip("trl")
from trl import DPOTrainer, KTOTrainer  # noqa: E402
from trl.experimental.cpo import CPOTrainer  # noqa: E402
from trl.experimental.orpo import ORPOTrainer  # noqa: E402
from trl.trainer.reward_trainer import RewardTrainer  # noqa: E402


class _Accel:
    device = torch.device("cpu")
    parallelism_config = None

    def gather(self, x):
        return x

    gather_for_metrics = gather

    def unwrap_model(self, m):
        return m


class _FakeLM(torch.nn.Module):
    """Returns fixed per-token log-probs, keyed by the identity of the input_ids tensor."""

    is_gradient_checkpointing = False

    def __init__(self, table: dict[int, dict[str, torch.Tensor]]):
        super().__init__()
        self.table = table

    def forward(self, input_ids=None, labels=None, fused_lm_head=True, **_):
        rec = self.table[id(input_ids)]
        n, t = input_ids.shape
        z = torch.zeros(n, t - 1, dtype=rec["log_probs"].dtype)
        return types.SimpleNamespace(
            log_probs=rec["log_probs"],
            entropy=z,
            mean_logits=z,
            is_top1=torch.zeros(n, t - 1, dtype=torch.bool),
            log_sum_sq_probs=rec.get("log_sum_sq_probs", z),
            aux_loss=None,
        )


def _base(cls, **attrs):
    self = cls.__new__(cls)
    self.accelerator = _Accel()
    self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    self._total_train_tokens = 0
    self._tp_size = 1
    self.aux_loss_enabled = False
    self.model = types.SimpleNamespace(training=True)
    for k, v in attrs.items():
        setattr(self, k, v)
    return self


def trl_dpo_loss(
    loss_types,
    chosen,
    rejected,
    ref_chosen,
    ref_rejected,
    mask_c,
    mask_r,
    *,
    beta=0.1,
    loss_weights=None,
    label_smoothing=0.0,
    f_divergence_type="reverse_kl",
    f_alpha_divergence_coef=1.0,
    ld_alpha=None,
    use_weighting=False,
    discopop_tau=0.05,
    lss_c=None,
    lss_r=None,
):
    """TRL DPOTrainer._compute_loss on per-token log-probs (B, T) with masks (B, T). Returns (loss, metrics)."""
    if isinstance(loss_types, str):
        loss_types = [loss_types]
    b, t = chosen.shape
    # TRL's completion_mask has one more (prompt) column; its [:, 1:] shift is our mask.
    completion_mask = torch.cat([torch.zeros(2 * b, 1), torch.cat([mask_c, mask_r]).float()], dim=1).long()
    input_ids = torch.zeros(2 * b, t + 1, dtype=torch.long)
    rec = {"log_probs": torch.cat([chosen, rejected]) * torch.cat([mask_c, mask_r])}
    ref_rec = {"log_probs": torch.cat([ref_chosen, ref_rejected]) * torch.cat([mask_c, mask_r])}
    if lss_c is not None:
        rec["log_sum_sq_probs"] = torch.cat([lss_c, lss_r])
    policy, ref = _FakeLM({id(input_ids): rec}), _FakeLM({id(input_ids): ref_rec})
    self = _base(
        DPOTrainer,
        loss_types=list(loss_types),
        loss_weights=loss_weights or [1.0] * len(loss_types),
        beta=beta,
        label_smoothing=label_smoothing,
        f_divergence_type=f_divergence_type,
        f_alpha_divergence_coef=f_alpha_divergence_coef,
        ld_alpha=ld_alpha,
        use_weighting=use_weighting,
        precompute_ref_logps=False,
        ref_model=ref,
        args=types.SimpleNamespace(discopop_tau=discopop_tau, gradient_checkpointing_kwargs=None),
    )
    self.model = policy
    inputs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "completion_mask": completion_mask,
    }
    loss = DPOTrainer._compute_loss(self, policy, inputs, return_outputs=False)
    return loss, {k: v[-1] for k, v in self._metrics["train"].items()}


def trl_kto_loss(
    loss_type,
    logps,
    ref_logps,
    labels,
    mask,
    kl_logps,
    ref_kl_logps,
    kl_mask,
    *,
    beta=0.1,
    desirable_weight=1.0,
    undesirable_weight=1.0,
):
    """TRL KTOTrainer._compute_loss on per-token log-probs; the KL pass is served from kl_logps (N, T)."""
    n, t = logps.shape
    input_ids = torch.zeros(n, t + 1, dtype=torch.long)
    kl_ids = torch.ones(n, t + 1, dtype=torch.long)
    cm = torch.cat([torch.zeros(n, 1), mask.float()], dim=1).long()
    klm = torch.cat([torch.zeros(n, 1), kl_mask.float()], dim=1).long()
    calculate_kl = loss_type == "kto"
    policy = _FakeLM(
        {id(input_ids): {"log_probs": logps * mask}, id(kl_ids): {"log_probs": kl_logps * kl_mask}}
    )
    ref = _FakeLM(
        {id(input_ids): {"log_probs": ref_logps * mask}, id(kl_ids): {"log_probs": ref_kl_logps * kl_mask}}
    )
    self = _base(
        KTOTrainer,
        loss_type=loss_type,
        beta=beta,
        desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight,
        calculate_KL=calculate_kl,
        precompute_ref_logps=False,
        ref_model=ref,
        args=types.SimpleNamespace(gradient_checkpointing_kwargs=None),
    )
    self.model = policy
    batch = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "completion_mask": cm,
        "label": labels.long(),
        "KL_input_ids": kl_ids,
        "KL_attention_mask": torch.ones_like(kl_ids),
        "KL_completion_mask": klm,
    }
    loss = KTOTrainer._compute_loss(self, policy, batch, return_outputs=False)
    return loss, {k: v[-1] for k, v in self._metrics["train"].items()}


def trl_cpo_losses(
    loss_type, chosen_logps, rejected_logps, *, beta=0.1, label_smoothing=0.0, simpo_gamma=0.5, alpha=0.0
):
    """TRL CPOTrainer.cpo_loss on sequence log-probs (sum, or average for simpo/alphapo)."""
    self = _base(
        CPOTrainer,
        loss_type=loss_type,
        beta=beta,
        label_smoothing=label_smoothing,
        simpo_gamma=simpo_gamma,
        alpha=alpha,
    )
    return CPOTrainer.cpo_loss(self, chosen_logps, rejected_logps)


def trl_orpo_losses(chosen_avg_logps, rejected_avg_logps, *, beta=0.1):
    self = _base(ORPOTrainer, beta=beta)
    return ORPOTrainer.odds_ratio_loss(self, chosen_avg_logps, rejected_avg_logps)


def trl_reward_loss(chosen_rewards, rejected_rewards, margin=None, center_rewards_coefficient=None):
    logits = torch.cat([chosen_rewards, rejected_rewards]).unsqueeze(-1)

    def model(**_):
        return types.SimpleNamespace(logits=logits)

    self = _base(
        RewardTrainer, args=types.SimpleNamespace(center_rewards_coefficient=center_rewards_coefficient)
    )
    inputs = {"attention_mask": torch.ones(logits.shape[0], 3, dtype=torch.long)}
    if margin is not None:
        inputs["margin"] = margin
    return RewardTrainer.compute_loss(self, model, inputs)
