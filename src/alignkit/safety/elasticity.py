"""Elasticity: how fast an aligned model's behaviour snaps back under perturbing fine-tuning."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from alignkit.registry import register


def elasticity_curve(
    model: nn.Module,
    perturb_step: Callable[[nn.Module, int], None],
    probes: Mapping[str, Callable[[nn.Module], float]],
    steps: int,
) -> dict[str, list[float]]:
    """Language Models Resist Alignment: Evidence From Data Compression (Ji et al., ACL 2025; arXiv:2406.06144) —
    the elasticity measurement: fine-tune an aligned model on a perturbing set and track probe losses.

    Formula:
        curve[probe][t] = probe(model after t perturbing steps),  t = 0..steps
        the paper's measure: probe = the compression rate of a dataset under the model,
            gamma(D; theta_t) = sum_{x in D} -log2 p_theta_t(x) / (8 * bytes(D))      (``compression_rate``)
            elasticity: along perturbing fine-tuning, gamma of the alignment data changes much faster than
            gamma of the pre-training data (changes inversely proportional to dataset size)
        ours (a summary, not the paper's): rebound = (|curve[k] - curve[0]| / k) / (|curve[T] - curve[k]| /
            (T - k))   (``rebound_ratio``; > 1: fast change first, then slow)

    Hyper-parameters:
        perturb_step: ``perturb_step(model, t)`` does one fine-tuning step on the perturbing data.
        probes: ``{"pretrain": f, "aligned": g, ...}``, each ``f(model) -> float``; for the paper's measure
            each returns its dataset's compression rate (:func:`compression_rate` of the model's log-probs),
            or its total NLL in nats, turned into rates by :func:`compression_rate_curve`.
        steps: number of perturbing steps T (no default: the protocol's).

    Source: the paper's abstract and summaries (elasticity = resistance + rebound; aligned models return
    towards the pre-training distribution fast at first, then slowly; formalised with normalised compression
    rates whose change is inversely proportional to dataset size). Reconstruction: the compression rate is the
    standard arithmetic-coding code length over raw bits; the paper's exact normalisation across datasets and its
    protocol details were not re-read.
    """
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not probes:
        raise ValueError("probes: needs at least one probe")
    curve = {k: [float(f(model))] for k, f in probes.items()}
    for t in range(steps):
        perturb_step(model, t)
        for k, f in probes.items():
            curve[k].append(float(f(model)))
    return curve


def compression_rate(token_logps: Tensor, raw_bytes: Tensor | Sequence[int]) -> Tensor:
    """The compression rate of a dataset under a language model (the paper's measure of how well p_theta
    "compresses" a dataset, used to compare pre-training and alignment data along perturbing fine-tuning).

    With arithmetic coding, a model p_theta codes a text x in -log2 p_theta(x) bits (up to 2 bits); the
    compression rate is that code length over the raw size of the text in bits:

        gamma(D; theta) = sum_{x in D} -log2 p_theta(x) / sum_{x in D} 8 |x|_bytes

    ``token_logps`` (N,) or (N, T): natural-log probabilities of each text (summed over its tokens when 2-D;
    pad with 0); ``raw_bytes`` (N,): the UTF-8 byte length of each text. Lower = better compressed. Source:
    the paper's summary (compression-rate view of elasticity; "Language Modeling Is Compression" for the
    code-length identity). Reconstruction: the paper's normalisation of gamma across datasets of different
    sizes (gamma^{D_i / D}) was not re-read; compare each dataset's gamma with itself over the perturbation.
    """
    lp = torch.as_tensor(token_logps)
    if lp.dim() == 2:
        lp = lp.sum(-1)
    if lp.dim() != 1:
        raise ValueError(f"token_logps must be (N,) or (N, T); got {tuple(lp.shape)}")
    nb = torch.as_tensor(raw_bytes, dtype=lp.dtype)
    if nb.shape != lp.shape:
        raise ValueError(f"raw_bytes must be (N,) = {tuple(lp.shape)}; got {tuple(nb.shape)}")
    if (nb <= 0).any():
        raise ValueError("raw_bytes: every text needs a positive byte length")
    if (lp > 0).any():
        raise ValueError("token_logps: log-probabilities must be <= 0")
    return (-lp.sum() / math.log(2)) / (8 * nb.sum())


def compression_rate_curve(
    curve: Mapping[str, Sequence[float]], raw_bits: Mapping[str, float]
) -> dict[str, list[float]]:
    """Turn an :func:`elasticity_curve` whose probes return a dataset's total NLL (nats) into compression
    rates: gamma = nll / ln 2 / raw_bits, per probe and step (``raw_bits``: each probe dataset's 8 x bytes)."""
    missing = sorted(set(curve) - set(raw_bits))
    if missing:
        raise ValueError(f"raw_bits: no size for probe(s) {missing}")
    return {k: [v / math.log(2) / raw_bits[k] for v in vals] for k, vals in curve.items()}


def rebound_ratio(values: Sequence[float], early: int) -> float:
    """OURS, not the paper's: mean absolute change per step over the first ``early`` steps divided by that over
    the rest (> 1: fast change first, then slow — a one-number summary of the paper's "rebound" curves)."""
    n = len(values) - 1
    if not 0 < early < n:
        raise ValueError(f"early must be in (0, {n}), got {early}")
    fast = abs(values[early] - values[0]) / early
    slow = abs(values[-1] - values[early]) / (n - early)
    return fast / slow if slow > 0 else float("inf") if fast > 0 else 1.0


register(
    name="elasticity",
    kind="diagnostic",
    family="harmful_finetuning",
    paper="Language Models Resist Alignment: Evidence From Data Compression",
    arxiv="2406.06144",
    tags=("safety",),
    summary="compression rates of pre-training vs alignment data along perturbing fine-tuning",
    verification="reconstruction",
)(elasticity_curve)
