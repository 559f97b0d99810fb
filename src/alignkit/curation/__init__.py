"""Data curation: rules that select, filter or construct training rows (registered with kind="data_rule",
family="curation"). Pure functions over rows (dicts) or tensors; importing this package registers them."""

from alignkit.curation.ches import ches_filter, ches_scores, pair_ches_scores, pair_hidden_states
from alignkit.curation.data_sampling import fit_exp_plateau, isa_entropy_change, isa_select
from alignkit.curation.fine_grained_alignment import statement_align_pairs
from alignkit.curation.judge_pairs import judge_pairs
from alignkit.curation.long_output import filter_long_output, output_length, required_length
from alignkit.curation.mistake_analysis import mistake_analysis_rows
from alignkit.curation.refusal_filter import DEFAULT_REFUSAL_PATTERNS, filter_refusals, is_refusal
from alignkit.curation.selective_dpo import (
    cross_fit_splits,
    heldout_dpo_losses,
    heldout_loss_matrix,
    selective_dpo_difficulty,
    selective_dpo_select,
)
from alignkit.curation.self_align import retrieve_neighbours, self_align_round
from alignkit.curation.translation import translation_sft_rows

__all__ = [
    "DEFAULT_REFUSAL_PATTERNS",
    "ches_filter",
    "ches_scores",
    "cross_fit_splits",
    "filter_long_output",
    "filter_refusals",
    "fit_exp_plateau",
    "heldout_dpo_losses",
    "heldout_loss_matrix",
    "is_refusal",
    "isa_entropy_change",
    "isa_select",
    "judge_pairs",
    "mistake_analysis_rows",
    "output_length",
    "pair_ches_scores",
    "pair_hidden_states",
    "required_length",
    "retrieve_neighbours",
    "selective_dpo_difficulty",
    "selective_dpo_select",
    "self_align_round",
    "statement_align_pairs",
    "translation_sft_rows",
]
