"""SPPO with hard (0/1) win probabilities."""

from __future__ import annotations

from torch import Tensor

from alignkit.objectives.preference._pairwise import PairTerms, pairwise_objective


@pairwise_objective(
    name="sppo_hard",
    verification="trl-parity",
    aliases=("sppo",),
    paper="Self-Play Preference Optimization for Language Model Alignment",
    arxiv="2405.00675",
    f_divergence=False,
)
def sppo_hard(t: PairTerms, *, beta: float = 0.1) -> Tensor:
    """Self-Play Preference Optimization for Language Model Alignment (SPPO, arXiv:2405.00675), hard-label form.

    Eq. 4.7 with the estimated win probability P set to 1 for the winner and 0 for the loser: each log-ratio is
    regressed onto eta (P - 1/2) with eta = 1/beta.

    Formula:
        L = (log pi(y_w)/ref(y_w) - 1/(2 beta))^2 + (log pi(y_l)/ref(y_l) + 1/(2 beta))^2

    Hyper-parameters:
        beta: 0.1 — 1/eta (SPPO's eta is the step size of the multiplicative-weights update). TRL's
            ``DPOConfig.beta`` default: ``sppo_hard`` is a TRL ``loss_type`` and equals TRL's code
            (tests/objectives/test_trl_parity.py).

    The authors' settings differ (official code uclaml/SPPO, ``sppo/trainer.py`` ``sppo_loss`` and
    ``scripts/pipeline.sh``, read):
        * the loss is halved: (loss_w + loss_l) / 2 (TRL, and this function, sum the two squares);
        * beta = 0.001 (``BETA="0.001"`` in ``pipeline.sh``; the trainer's comment: "usually chosen around
          1e-3");
        * the official ``sppo`` loss uses *estimated* win probabilities P(y_w > y_l) from a preference model
          (``chosen_probs_win`` / ``chosen_probs_lose``), not the hard 1/0 labels of this form.
        To get the authors' hard-label scale: ``0.5 * ak.get("sppo_hard")(batch, beta=0.001).loss``
        (``--hp beta=0.001`` and a loss weight of 0.5, e.g. ``ak.combine([("sppo_hard", 0.5)])``). With
        beta = 0.001 the targets are +-500 nats: keep the learning rate small (the authors use 5e-7).
    """
    return (t.chosen_logratios - 0.5 / beta) ** 2 + (t.rejected_logratios + 0.5 / beta) ** 2
