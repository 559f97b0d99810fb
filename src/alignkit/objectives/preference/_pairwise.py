"""Shared machinery of the reference-based pairwise (DPO-family) objectives.

Each objective file holds one paper's per-example loss as a function of :class:`PairTerms`; the decorator
:func:`pairwise_objective` adds what every member of the family shares, exactly as TRL's ``DPOTrainer`` applies
it to all its loss types:

* ``ld_alpha`` — LD-DPO length desensitisation (arXiv:2409.06411): sequence log-prob = shared-length part
  + ``ld_alpha`` x the tail beyond the shorter completion (policy and reference alike).
* ``f_divergence_type`` / ``f_alpha_divergence_coef`` — f-DPO (arXiv:2309.16240): the log-ratio u is mapped
  through f'(exp u): reverse KL u, forward KL 1 - exp(-u), JS log 2 + log sigma(u), alpha (exp((a-1)u) - 1)/(a-1).
* ``use_weighting`` — WPO (arXiv:2406.11827): each pair's loss x w(y_w) w(y_l), with
  w(y) = exp(mean_t [log pi(y_t) - log sum_v pi(v)^2]) computed without gradient.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.registry import Objective, register_objective
from alignkit.types import LossOutput, PreferenceBatch, masked, masked_sum

F_DIVERGENCES = ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence")

_MODIFIER_DOC = """
Shared modifiers (TRL's names and TRL 1.16 ``DPOConfig`` defaults, which leave the paper's loss unchanged):
    ld_alpha: None — LD-DPO (arXiv:2409.06411): weight of log-probs beyond the shorter completion; None = off
        (TRL's default).
    use_weighting: False — WPO (arXiv:2406.11827): weight each pair by its on-policy probability; off (TRL's
        default).
"""
_FDIV_DOC = """    f_divergence_type: "reverse_kl" — f-DPO (arXiv:2309.16240): reverse_kl | forward_kl | js_divergence |
        alpha_divergence; reverse_kl (= DPO) is TRL's default.
    f_alpha_divergence_coef: 0.5 — alpha of the alpha-divergence (TRL 1.16 ``DPOConfig`` default; used only
        with alpha_divergence; alpha -> 1 is reverse KL).
"""


@dataclass
class PairTerms:
    """Per-pair quantities every DPO-family loss is written in. All are ``(B,)`` tensors."""

    batch: PreferenceBatch
    chosen_logps: Tensor
    rejected_logps: Tensor
    ref_chosen_logps: Tensor | None
    ref_rejected_logps: Tensor | None
    chosen_lengths: Tensor
    rejected_lengths: Tensor

    @property
    def chosen_logratios(self) -> Tensor:
        return self.chosen_logps - self.ref_chosen_logps

    @property
    def rejected_logratios(self) -> Tensor:
        return self.rejected_logps - self.ref_rejected_logps

    # Set by pair_terms: logratios mapped through the f-divergence (equal to the logratios for reverse KL).
    chosen_scores: Tensor | None = None
    rejected_scores: Tensor | None = None

    @property
    def delta_score(self) -> Tensor:
        return self.chosen_scores - self.rejected_scores


def _ld_logps(tokens: Tensor, mask: Tensor, shared_len: Tensor, ld_alpha: float) -> Tensor:
    pos = mask.cumsum(-1)
    shared = (pos > 0) & (pos <= shared_len.unsqueeze(-1))
    tail = pos > shared_len.unsqueeze(-1)
    return masked_sum(tokens, shared.to(tokens.dtype) * mask) + ld_alpha * masked_sum(
        tokens, tail.to(tokens.dtype) * mask
    )


def f_divergence_scores(logratios: Tensor, f_divergence_type: str, alpha: float) -> Tensor:
    """f'(pi/ref) written in the log-ratio u = log pi - log ref (f-DPO, arXiv:2309.16240)."""
    if f_divergence_type == "reverse_kl":
        return logratios
    if f_divergence_type == "forward_kl":
        return 1 - torch.exp(-logratios)
    if f_divergence_type == "js_divergence":
        return math.log(2) + F.logsigmoid(logratios)
    if f_divergence_type == "alpha_divergence":
        if abs(alpha - 1.0) < 1e-6:  # the limit alpha -> 1 is reverse KL
            return logratios
        t = (alpha - 1.0) * logratios
        clamp_max = 11.0 if t.dtype == torch.float16 else 80.0  # keeps exp() finite
        return (torch.exp(torch.clamp(t.float(), max=clamp_max)) - 1.0).to(t.dtype) / (alpha - 1.0)
    raise ValueError(f"f_divergence_type must be one of {F_DIVERGENCES}; got {f_divergence_type!r}")


def pair_terms(
    batch: PreferenceBatch,
    *,
    needs_reference: bool = True,
    ld_alpha: float | None = None,
    f_divergence_type: str = "reverse_kl",
    f_alpha_divergence_coef: float = 0.5,
    why: str = "this objective",
) -> PairTerms:
    c, r = batch.chosen, batch.rejected
    ref_c = ref_r = None
    if needs_reference:
        ref_c, ref_r = batch.require_reference(why)
    if ld_alpha is None:
        chosen_logps, rejected_logps = c.seq, r.seq
        ref_chosen = ref_c.seq if ref_c is not None else None
        ref_rejected = ref_r.seq if ref_r is not None else None
    else:
        batch.require_token_level(f"ld_alpha (LD-DPO) in {why}")
        if ref_c is not None and (ref_c.tokens is None or ref_r.tokens is None):
            raise ValueError(
                "ld_alpha (LD-DPO) needs per-token ref_chosen_logps/ref_rejected_logps; the batch has sequence sums"
            )
        shared = torch.minimum(c.lengths, r.lengths)
        chosen_logps = _ld_logps(c.tokens, c.mask, shared, ld_alpha)
        rejected_logps = _ld_logps(r.tokens, r.mask, shared, ld_alpha)
        ref_chosen = _ld_logps(ref_c.tokens, c.mask, shared, ld_alpha) if ref_c is not None else None
        ref_rejected = _ld_logps(ref_r.tokens, r.mask, shared, ld_alpha) if ref_r is not None else None
    t = PairTerms(batch, chosen_logps, rejected_logps, ref_chosen, ref_rejected, c.lengths, r.lengths)
    if needs_reference:
        t.chosen_scores = f_divergence_scores(t.chosen_logratios, f_divergence_type, f_alpha_divergence_coef)
        t.rejected_scores = f_divergence_scores(
            t.rejected_logratios, f_divergence_type, f_alpha_divergence_coef
        )
    return t


def wpo_weights(batch: PreferenceBatch) -> Tensor:
    """WPO (arXiv:2406.11827, Eq. 2): w = w(y_w) * w(y_l), w(y) = exp(mean_t[log pi(y_t) - log sum_v pi(v)^2])."""
    batch.require_token_level("use_weighting (WPO)")
    if batch.chosen_log_sum_sq_probs is None or batch.rejected_log_sum_sq_probs is None:
        raise ValueError(
            "use_weighting (WPO) needs chosen_log_sum_sq_probs and rejected_log_sum_sq_probs in the batch "
            "(per-token log sum_v pi(v)^2; the engine supplies them when the objective asks)"
        )
    with torch.no_grad():
        weights = []
        for side, lss in (
            (batch.chosen, batch.chosen_log_sum_sq_probs),
            (batch.rejected, batch.rejected_log_sum_sq_probs),
        ):
            aligned = masked(side.tokens - lss, side.mask)
            weights.append(torch.exp(aligned.sum(-1) / side.lengths.clamp_min(1)))
    return weights[0] * weights[1]


def preference_metrics(chosen_rewards: Tensor, rejected_rewards: Tensor, t: PairTerms) -> dict[str, float]:
    """TRL's metric names for a paired objective."""
    chosen_rewards, rejected_rewards = chosen_rewards.detach(), rejected_rewards.detach()
    return {
        "rewards/chosen": chosen_rewards.mean().item(),
        "rewards/rejected": rejected_rewards.mean().item(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
        "logps/chosen": t.chosen_logps.detach().mean().item(),
        "logps/rejected": t.rejected_logps.detach().mean().item(),
    }


def pairwise_objective(
    *,
    name: str,
    paper: str,
    arxiv: str,
    aliases: Iterable[str] = (),
    tags: Iterable[str] = (),
    f_divergence: bool = True,
    aggregation: str = "sum",
    taxonomy: tuple[str, ...] = ("algorithm:pairwise", "feedback:preference", "data:off-policy"),
    verification: str | None = None,
) -> Callable[[Callable[..., Tensor]], Objective]:
    """Register ``core(t: PairTerms, *, beta, ...) -> per-example losses`` as a reference-based paired objective
    with the shared modifiers (see module docstring). ``f_divergence=False`` for losses TRL does not allow it on."""

    def deco(core: Callable[..., Tensor]) -> Objective:
        core_defaults = {
            p.name: p.default
            for p in inspect.signature(core).parameters.values()
            if p.kind == inspect.Parameter.KEYWORD_ONLY
        }
        modifiers: dict[str, object] = {"ld_alpha": None, "use_weighting": False}
        if f_divergence:
            modifiers.update(f_divergence_type="reverse_kl", f_alpha_divergence_coef=0.5)

        def run(batch: PreferenceBatch, **hp: object) -> LossOutput:
            t = pair_terms(
                batch,
                ld_alpha=hp["ld_alpha"],
                f_divergence_type=hp.get("f_divergence_type", "reverse_kl"),
                f_alpha_divergence_coef=hp.get("f_alpha_divergence_coef", 0.5),
                why=f"objective {name!r}",
            )
            losses = core(t, **{k: hp[k] for k in core_defaults})
            if hp["use_weighting"]:
                losses = losses * wpo_weights(batch)
            beta = hp["beta"]
            metrics = preference_metrics(beta * t.chosen_logratios, beta * t.rejected_logratios, t)
            return LossOutput(loss=losses.mean(), losses=losses, metrics=metrics)

        run.__name__ = core.__name__
        run.__qualname__ = core.__qualname__
        run.__module__ = core.__module__
        run.__doc__ = (
            (inspect.getdoc(core) or "") + "\n" + _MODIFIER_DOC + (_FDIV_DOC if f_divergence else "")
        )
        run.core = core  # type: ignore[attr-defined]
        return register_objective(
            name=name,
            paper=paper,
            arxiv=arxiv,
            family="preference",
            aliases=aliases,
            tags=("paired", "reference", *taxonomy, *tags),
            needs_reference=True,
            aggregation=aggregation,
            batch_type=PreferenceBatch,
            defaults={**core_defaults, **modifiers},
            requires_when={"use_weighting": ("log_sum_sq_probs",)},
            verification=verification,
        )(run)

    return deco
