"""ComPO: preference alignment from comparison oracles — a zeroth-order update built only from yes/no answers
to "is the perturbed model better on this pair?"."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from alignkit.registry import register

PAPER = "ComPO: Preference Alignment via Comparison Oracles"
ARXIV = "2505.05465"


def comparison_oracle(
    logp_w_old: Tensor, logp_l_old: Tensor, logp_w_new: Tensor, logp_l_new: Tensor
) -> Tensor:
    """True where the new parameters are better on the pair: log pi(y_w) went up AND log pi(y_l) went down
    (elementwise; the official code calls a perturbation improving when any pair of its batch improves — use
    ``.any()`` for that)."""
    return (logp_w_new > logp_w_old) & (logp_l_new < logp_l_old)


def compo_direction(directions: Tensor, improved: Tensor, threshold: float = 0.0) -> Tensor:
    """The normalised, sparsified descent direction from m oracle answers.

    ``directions`` (m, P) are the perturbations z_i, ``improved`` (m,) the oracle's answers. With the official
    code's sign convention y_i = -1 if z_i improved else +1, u = sum_i y_i z_i, g = u / ||u||, and entries with
    |g_j| < threshold are zeroed; the update is theta <- theta - lr * (n_improve / m) * g."""
    if directions.dim() != 2 or improved.shape != (directions.shape[0],):
        raise ValueError(
            f"directions must be (m, P) and improved (m,); got {tuple(directions.shape)}, {tuple(improved.shape)}"
        )
    y = torch.where(improved.bool(), -1.0, 1.0).to(directions.dtype)
    u = (y.unsqueeze(-1) * directions).sum(0)
    norm = u.norm()
    if norm == 0:
        return torch.zeros_like(u)
    g = u / norm
    return torch.where(g.abs() >= threshold, g, torch.zeros_like(g))


@register(
    name="compo",
    verification="paper-formula",
    kind="optimizer",
    family="preference",
    paper=PAPER,
    arxiv=ARXIV,
    tags=("paired", "zeroth-order", "algorithm:pairwise", "feedback:comparison-oracle", "data:off-policy"),
)
def compo_step(
    theta: Tensor,
    pair_logps: Callable[[Tensor], tuple[Tensor, Tensor]],
    *,
    num_perturbations: int = 1800,
    radius: float = 5e-4,
    step_size: float = 0.035,
    threshold: float = 2.2e-4,
    min_improve: int = 330,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """ComPO: Preference Alignment via Comparison Oracles (arXiv:2505.05465): one zeroth-order update of the
    parameter vector ``theta`` from comparison-oracle answers on perturbed copies.

    ``pair_logps(theta) -> (logp_w, logp_l)`` scores the (noisy) preference pair(s) under parameters theta —
    only forward passes are needed. Each of m Gaussian directions z_i is tested at theta + r z_i; the oracle
    says whether the chosen log-prob rose and the rejected fell (for any pair). The update moves against the
    sign-weighted sum of directions.

    Formula:
        y_i = -1 if C(theta, theta + r z_i) (improved) else +1,   z_i ~ N(0, I)
        g = u / ||u||,  u = sum_i y_i z_i;   g_j <- 0 where |g_j| < thr
        theta <- theta - eta * (n_improve / m) * g      (skipped when n_improve < min_improve)

    Hyper-parameters:
        num_perturbations: 1800 — m (official code ``--num_perturbation``).
        radius: 5e-4 — r, perturbation size (ours: the official value could not be read here).
        step_size: 0.035 — eta (official ``--step_size``).
        threshold: 2.2e-4 — sparsification threshold on the unit direction g (official code's value for
            Mistral-7B; 8e-5 for Llama-3-8B; 0 keeps every entry). With few parameters |g_j| ~ 1/sqrt(P) is far
            above it, so it only bites on large P.
        min_improve: 330 — skip the update unless at least this many perturbations improved (ours: the
            official value could not be read here).
        generator: None — torch generator for the directions.

    Returns the new theta and info {n_improve, updated}. Source: official code PeterLauLukChen/ComparisonPO
    (``compute_gradients.py``) as summarised in the project catalogue. Not implemented here: the probe step that
    re-checks the update, perturbing only ``lm_head``, and the noisy-pair selection (margin in (0, 3)); the
    paper's l1/l2-constrained form of g was not checked (the code's normalise-and-threshold is used).
    """
    if theta.dim() != 1:
        raise ValueError(f"theta must be a flat parameter vector (P,); got {tuple(theta.shape)}")
    with torch.no_grad():
        w0, l0 = pair_logps(theta)
        z = torch.randn(num_perturbations, theta.numel(), generator=generator, dtype=theta.dtype)
        improved = torch.zeros(num_perturbations, dtype=torch.bool)
        for i in range(num_perturbations):
            w1, l1 = pair_logps(theta + radius * z[i])
            improved[i] = comparison_oracle(w0, l0, w1, l1).any()
        n_improve = int(improved.sum())
        if n_improve < min_improve:
            return theta.clone(), {"n_improve": float(n_improve), "updated": 0.0}
        g = compo_direction(z, improved, threshold)
        new = theta - step_size * (n_improve / num_perturbations) * g
    return new, {"n_improve": float(n_improve), "updated": 1.0}
