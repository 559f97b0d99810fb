"""CHES (centered hidden embedding similarity): which preference pairs cause likelihood displacement under DPO,
and a filter that keeps the pairs least likely to (the lowest-CHES ones)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.curation._common import check_fraction, check_scores, field_ids, n_keep
from alignkit.engine.logprobs import pad_right
from alignkit.registry import register

PAPER = "Unintentional Unalignment: Likelihood Displacement in Direct Preference Optimization"
ARXIV = "2410.08847"


def _summed(hidden: Tensor, last_prompt: Tensor, lengths: Tensor, name: str) -> tuple[Tensor, Tensor]:
    if hidden.ndim != 3:
        raise ValueError(f"{name}_hidden must be (batch, time, dim), got shape {tuple(hidden.shape)}")
    b, t, _ = hidden.shape
    last_prompt = torch.as_tensor(last_prompt, device=hidden.device).long().reshape(-1)
    lengths = torch.as_tensor(lengths, device=hidden.device).long().reshape(-1)
    if last_prompt.numel() != b or lengths.numel() != b:
        raise ValueError(f"{name}: last_prompt_idx and lengths need one entry per row ({b})")
    bad = ((last_prompt < 0) | (lengths > t) | (lengths - 1 <= last_prompt)).nonzero().flatten()
    if bad.numel():
        i = int(bad[0])
        raise ValueError(
            f"row {i}: {name} needs 0 <= last_prompt_idx < length - 1 <= time - 1 (a non-empty response); got "
            f"last_prompt_idx={int(last_prompt[i])}, length={int(lengths[i])}, time={t}"
        )
    pos = torch.arange(t, device=hidden.device).unsqueeze(0)
    # The states that predict response tokens: last prompt token .. second-to-last token of the sequence.
    mask = (pos >= last_prompt.unsqueeze(1)) & (pos < (lengths - 1).unsqueeze(1))
    return (hidden * mask.unsqueeze(-1).to(hidden.dtype)).sum(1), (lengths - 1 - last_prompt).to(hidden.dtype)


def ches_scores(
    chosen_hidden: Tensor,
    rejected_hidden: Tensor,
    chosen_last_prompt_idx: Tensor,
    rejected_last_prompt_idx: Tensor,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    *,
    length_normalize: bool = False,
) -> Tensor:
    """Unintentional Unalignment: Likelihood Displacement in Direct Preference Optimization (Razin et al.,
    ICLR 2025; arXiv:2410.08847) — the CHES score of each preference pair (paper Definition 2).

    h_w / h_l: the last-layer hidden states of (x, y_w) / (x, y_l) at the positions that predict a response token
    (the last prompt token through the second-to-last token; the final token, usually EOS, predicts nothing).
    A high CHES means the preferred and dispreferred responses look alike to the model: DPO on such a pair tends
    to *lower* the preferred response's likelihood (likelihood displacement).

    Formula:
        hbar_w = sum_{k=1..|y_w|} h_{x, y_w,<k}        hbar_l = sum_{k=1..|y_l|} h_{x, y_l,<k}
        CHES(x, y_w, y_l)    = <hbar_w, hbar_l> - ||hbar_w||^2
        ln-CHES(x, y_w, y_l) = <hbar_w / |y_w|, hbar_l / |y_l|> - ||hbar_w / |y_w|||^2

    Hyper-parameters:
        length_normalize: False — the paper's CHES; True gives the length-normalised score the paper uses to
            filter data.

    Shapes: ``*_hidden`` (B, T, D) right-padded; ``*_last_prompt_idx`` (B,) index of the last prompt token;
    ``*_lengths`` (B,) number of real tokens of each sequence (default T: no padding, as in the official code,
    whose ``[:, :-1]`` drops the final tensor position). |y| = length - 1 - last_prompt_idx. Pure and
    differentiable. Source: official code princeton-nlp/unintentional-unalignment ``ches/ches.py``
    (``compute_ches_scores``; equal on unpadded inputs, see the parity test).
    """
    if (
        chosen_hidden.shape[0] != rejected_hidden.shape[0]
        or chosen_hidden.shape[2] != rejected_hidden.shape[2]
    ):
        raise ValueError(
            f"chosen_hidden {tuple(chosen_hidden.shape)} and rejected_hidden {tuple(rejected_hidden.shape)} "
            "must share batch and hidden sizes"
        )
    b = chosen_hidden.shape[0]
    if chosen_lengths is None:
        chosen_lengths = torch.full((b,), chosen_hidden.shape[1])
    if rejected_lengths is None:
        rejected_lengths = torch.full((b,), rejected_hidden.shape[1])
    hw, nw = _summed(chosen_hidden, chosen_last_prompt_idx, chosen_lengths, "chosen")
    hl, nl = _summed(rejected_hidden, rejected_last_prompt_idx, rejected_lengths, "rejected")
    if length_normalize:
        hw, hl = hw / nw.unsqueeze(1), hl / nl.unsqueeze(1)
    return (hw * hl).sum(-1) - (hw * hw).sum(-1)


def ches_filter(
    rows: Sequence[dict[str, Any]],
    scores: Sequence[float] | Tensor,
    *,
    keep_frac: float = 0.05,
) -> list[dict[str, Any]]:
    """Unintentional Unalignment: Likelihood Displacement in Direct Preference Optimization (arXiv:2410.08847) —
    CHES data filtering: drop the pairs most likely to cause likelihood displacement (the highest-CHES ones) and
    keep the ``keep_frac`` fraction with the *lowest* (length-normalised) CHES.

    Formula:
        hbar_w, hbar_l = summed last-layer hidden states that predict y_w / y_l tokens (see ches_scores)
        ln-CHES(x, y_w, y_l) = <hbar_w / |y_w|, hbar_l / |y_l|> - ||hbar_w / |y_w|||^2
        keep = argsort_ascending(ln-CHES)[: ceil(keep_frac * N)]        (input order preserved)

    Hyper-parameters:
        keep_frac: 0.05 — the paper's SORRY-Bench run kept the 5% lowest ln-CHES pairs (19 samples,
            ``--pref_similarity_measure ln_ches_scores --preference_num_samples 19`` in the official README).

    ``scores`` come from :func:`ches_scores` / :func:`pair_ches_scores` (length-normalised, as the paper filters);
    each kept row gets a ``ches`` field. Ties are broken by row order. On alignkit's sentiment testbed (see
    tests/curation/test_ches_effect.py) DPO on the 64 lowest-CHES pairs lowers the chosen log-prob far less than
    on the 64 highest-CHES pairs (-6.6 vs -24.5), but not less than on 64 random pairs (+0.0 to -3.3).
    """
    check_fraction("keep_frac", keep_frac)
    rows = list(rows)
    if isinstance(scores, Tensor):
        scores = scores.detach().cpu().tolist()
    s = check_scores(scores, len(rows))
    keep = sorted(sorted(range(len(rows)), key=lambda i: (s[i], i))[: n_keep(len(rows), keep_frac)])
    return [{**rows[i], "ches": s[i]} for i in keep]


@torch.no_grad()
def pair_hidden_states(
    model: nn.Module, rows: Sequence[dict[str, Any]], *, pad_token_id: int = 0
) -> dict[str, Tensor]:
    """Engine side of CHES: last-layer hidden states of (prompt + chosen) and (prompt + rejected) for rows with
    ``prompt_ids`` / ``chosen_ids`` / ``rejected_ids`` under a Hugging Face causal LM (right-padded, no grad).

    Returns the keyword arguments of :func:`ches_scores`: ``chosen_hidden``, ``rejected_hidden`` (B, T, D),
    ``chosen_last_prompt_idx``, ``rejected_last_prompt_idx``, ``chosen_lengths``, ``rejected_lengths`` (B,).
    """
    if not rows:
        raise ValueError("rows is empty")
    device = next(model.parameters()).device
    out: dict[str, Tensor] = {}
    prompts = [field_ids(r, i, "prompt_ids") for i, r in enumerate(rows)]
    for side in ("chosen", "rejected"):
        seqs = [
            p + field_ids(r, i, f"{side}_ids") for i, (p, r) in enumerate(zip(prompts, rows, strict=True))
        ]
        ids, att = pad_right(seqs, pad_token_id, device)
        res = model(input_ids=ids, attention_mask=att, output_hidden_states=True)
        out[f"{side}_hidden"] = res.hidden_states[-1].float()
        out[f"{side}_last_prompt_idx"] = torch.tensor([len(p) - 1 for p in prompts], device=device)
        out[f"{side}_lengths"] = att.sum(1)
    return out


def pair_ches_scores(
    model: nn.Module,
    rows: Sequence[dict[str, Any]],
    *,
    length_normalize: bool = True,
    batch_size: int = 64,
    pad_token_id: int = 0,
) -> Tensor:
    """(ln-)CHES of every pair row under ``model``, in batches (:func:`pair_hidden_states` + :func:`ches_scores`).
    Default length-normalised, the score the paper filters by."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    rows = list(rows)
    parts = []
    for s in range(0, len(rows), batch_size):
        try:
            hs = pair_hidden_states(model, rows[s : s + batch_size], pad_token_id=pad_token_id)
            parts.append(ches_scores(**hs, length_normalize=length_normalize).cpu())
        except ValueError as e:  # re-number rows to the full list
            msg = str(e)
            if msg.startswith("row "):
                head, _, rest = msg.partition(":")
                msg = f"row {int(head.split()[1]) + s}:{rest}"
            raise ValueError(msg) from None
    if not parts:
        raise ValueError("rows is empty")
    return torch.cat(parts)


register(
    name="ches",
    verification="official-code-parity",
    kind="data_rule",
    family="curation",
    paper=PAPER,
    arxiv=ARXIV,
    aliases=("ches_filter", "ln_ches"),
    tags=("preference", "data-selection", "likelihood-displacement"),
    summary="keep the pairs with the lowest (length-normalised) CHES: least likelihood displacement",
)(ches_filter)
