"""Evaluation against a known gold reward: mean gold reward, KL(pi || ref), win rate, ranking accuracy and its
idealized counterpart, likelihood displacement, pass@N and harmful score — each with a 95% bootstrap CI.

The figures are pure functions in :mod:`alignkit.eval.metrics`; :func:`evaluate_policy` samples a model and
computes them (``alignkit eval`` on the command line).
"""

from alignkit.eval.evaluate import EvalResult, Samples, evaluate_policy, pair_logps, sample_and_score
from alignkit.eval.metrics import (
    bootstrap_ci,
    bootstrap_p_value,
    holm,
    idealized_ranking_accuracy,
    likelihood_displacement,
    mean_ci,
    pass_at_k,
    ranking_accuracy,
    sequence_kl,
    win_rates,
)

__all__ = [
    "EvalResult",
    "Samples",
    "bootstrap_ci",
    "bootstrap_p_value",
    "evaluate_policy",
    "holm",
    "idealized_ranking_accuracy",
    "likelihood_displacement",
    "mean_ci",
    "pair_logps",
    "pass_at_k",
    "ranking_accuracy",
    "sample_and_score",
    "sequence_kl",
    "win_rates",
]
