"""Harmful-fine-tuning defences and safety measurements (issue #7). Importing this package registers them.

Trainer hooks (``ak.train(..., hooks=[...])``): ``BoosterHook`` (alignment stage), ``LisaHook``,
``AlignGuardHook``, ``ALPSHook`` (fine-tuning stage). Post-hoc: ``restore_alignment_weights``. Data:
``ptst_rows``. Losses: ``gradient_collision_loss``. Inference: ``steering``. Measurements: ``elasticity_curve``,
``corpus_spans``, ``belief_conflict_index`` (+ ``trace_shield``, ``unigram_probs``), ``compliance_gap``, ``finetuning_degradation``, ``harmful_score_by_group``,
``opinion_similarity``.
"""

from alignkit.safety.alignguard import AlignGuardHook, alignguard_regularizer, fisher_diagonal
from alignkit.safety.alps import ALPSHook, head_scores, select_heads, wasserstein_1d
from alignkit.safety.belief_conflict import (
    SuffixArray,
    belief_conflict_index,
    corpus_spans,
    trace_shield,
    unigram_probs,
)
from alignkit.safety.booster import BoosterHook
from alignkit.safety.compliance_gap import compliance_gap
from alignkit.safety.elasticity import (
    compression_rate,
    compression_rate_curve,
    elasticity_curve,
    rebound_ratio,
)
from alignkit.safety.gradient_collision import gradient_collision_loss
from alignkit.safety.group_harm import harmful_score_by_group
from alignkit.safety.lisa import LisaHook
from alignkit.safety.opinion import js_distance, opinion_similarity, option_probs_from_nll
from alignkit.safety.overtraining import finetuning_degradation, perturbation_sensitivity
from alignkit.safety.ptst import LLAMA2_SAFETY_PROMPT, ptst_messages, ptst_rows
from alignkit.safety.restore import RestoreResult, last_token_hidden, restore_alignment_weights
from alignkit.safety.steering import fit_tradeoff, steering, steering_tradeoff

__all__ = [
    "LLAMA2_SAFETY_PROMPT",
    "ALPSHook",
    "AlignGuardHook",
    "BoosterHook",
    "LisaHook",
    "RestoreResult",
    "SuffixArray",
    "alignguard_regularizer",
    "belief_conflict_index",
    "compression_rate",
    "compression_rate_curve",
    "corpus_spans",
    "compliance_gap",
    "elasticity_curve",
    "finetuning_degradation",
    "fisher_diagonal",
    "fit_tradeoff",
    "gradient_collision_loss",
    "harmful_score_by_group",
    "head_scores",
    "js_distance",
    "last_token_hidden",
    "opinion_similarity",
    "option_probs_from_nll",
    "perturbation_sensitivity",
    "ptst_messages",
    "ptst_rows",
    "rebound_ratio",
    "restore_alignment_weights",
    "select_heads",
    "steering",
    "steering_tradeoff",
    "trace_shield",
    "unigram_probs",
    "wasserstein_1d",
]
