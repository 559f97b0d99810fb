"""Aligners: a small model, decoupled from the base LLM, that rewrites the base model's answer into an aligned
one (optionally only where an inspector flags mis-alignment); its training examples and training loss."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.decoding._common import DecodeContext, sample_text
from alignkit.registry import register
from alignkit.types import LossOutput

PAPER = "Aligners: Decoupling LLMs and Alignment"

TEMPLATE = "Question: {query}\nAnswer: {answer}\nAligned answer:"
Inspector = Callable[[str, str], float]


def aligner_input(query: str, answer: str, template: str = TEMPLATE) -> str:
    """The aligner's prompt for one (query, base answer) pair; the corrected answer follows it."""
    return template.format(query=query, answer=answer)


def build_aligner_examples(
    rows: Sequence[Mapping[str, Any]],
    *,
    template: str = TEMPLATE,
    identity_copies: bool = False,
    source: str = "rows",
) -> list[dict[str, str]]:
    """Aligner training examples from triples ``{"query", "misaligned", "aligned"}``: ``prompt`` =
    ``aligner_input(query, misaligned)``, ``completion`` = `` " " + aligned``. With ``identity_copies``, each row
    also gives ``(query, aligned) -> aligned`` (an already-aligned answer is left as is; the "identity"
    warm-up of Ji et al.'s Aligner, arXiv:2402.02416). Bad rows raise ``ValueError`` naming ``source``, the row
    and the field."""
    out: list[dict[str, str]] = []
    for i, row in enumerate(rows):
        for key in ("query", "misaligned", "aligned"):
            v = row.get(key) if isinstance(row, Mapping) else None
            if not isinstance(v, str) or not v.strip():
                raise ValueError(f"{source} row {i}: field {key!r} must be a non-empty string; got {v!r}")
        q, bad, good = row["query"], row["misaligned"], row["aligned"]
        out.append({"prompt": aligner_input(q, bad, template), "completion": " " + good})
        if identity_copies:
            out.append({"prompt": aligner_input(q, good, template), "completion": " " + good})
    return out


def tokenize_aligner_examples(tokenizer: Any, examples: Sequence[Mapping[str, str]]) -> dict[str, Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``completion_mask`` (1 on the corrected answer's tokens
    and the EOS appended after it) for :func:`aligner_loss`."""
    seqs, comp = [], []
    for ex in examples:
        p = tokenizer(ex["prompt"], add_special_tokens=True)["input_ids"]
        c = tokenizer(ex["completion"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        seqs.append(p + c)
        comp.append([0] * len(p) + [1] * len(c))
    n = max(map(len, seqs))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(seqs), n), pad, dtype=torch.long)
    att = torch.zeros((len(seqs), n), dtype=torch.long)
    cm = torch.zeros((len(seqs), n), dtype=torch.long)
    for i, (s, c) in enumerate(zip(seqs, comp, strict=True)):
        ids[i, : len(s)] = torch.tensor(s)
        att[i, : len(s)] = 1
        cm[i, : len(c)] = torch.tensor(c)
    return {"input_ids": ids, "attention_mask": att, "completion_mask": cm}


def aligner_loss(logits: Tensor, input_ids: Tensor, completion_mask: Tensor) -> LossOutput:
    """Supervised loss of the aligner: mean NLL of the corrected-answer tokens given query + base answer.

        L = - sum_{b,t} m_{b,t+1} log p_theta(y_{b,t+1} | y_{b,<=t}) / sum_{b,t} m_{b,t+1}

    ``logits`` ``[B, T, V]`` from the aligner on ``input_ids`` ``[B, T]``; ``completion_mask`` ``[B, T]`` marks the
    target tokens. ``losses`` holds the per-example mean NLL."""
    if logits.dim() != 3 or logits.shape[:2] != input_ids.shape:
        raise ValueError(f"logits must be [B, T, V] with [B, T] = input_ids {tuple(input_ids.shape)}")
    if completion_mask.shape != input_ids.shape:
        raise ValueError(
            f"completion_mask must be {tuple(input_ids.shape)}; got {tuple(completion_mask.shape)}"
        )
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    tgt = input_ids[:, 1:]
    m = completion_mask[:, 1:].to(logp.dtype)
    if float(m.sum()) == 0:
        raise ValueError("completion_mask selects no target token")
    nll = -logp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1) * m
    losses = nll.sum(-1) / m.sum(-1).clamp(min=1.0)
    loss = nll.sum() / m.sum()
    return LossOutput(loss=loss, losses=losses, metrics={"aligner/nll": float(loss.detach())})


def order_squad(
    squad: Sequence[tuple[nn.Module, Inspector | None]],
    prompts: Sequence[str],
    answers: Sequence[Sequence[str]],
) -> list[tuple[nn.Module, Inspector | None]]:
    """The squad sorted by ascending mean inspector score over this batch's (prompt, answer) pairs (stable;
    members without an inspector first, in their given order)."""

    def mean_score(member: tuple[nn.Module, Inspector | None]) -> float:
        inspector = member[1]
        if inspector is None:
            return float("-inf")
        scores = [float(inspector(prompts[i], y)) for i, per in enumerate(answers) for y in per]
        return sum(scores) / len(scores)

    return sorted(squad, key=mean_score)


@register(
    name="aligners",
    verification="reconstruction",
    kind="decoder",
    family="rewriting",
    aliases=("aligner_rewrite",),
    paper=PAPER,
    arxiv="2403.04224",
    tags=("decoding", "needs:aligner_model"),
    summary="a small aligner model rewrites the base model's answer (where an optional inspector flags it)",
)
def aligners(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    context: DecodeContext,
    *,
    tau: float = 0.5,
    aligner_temperature: float = 0.0,
    aligner_max_new_tokens: int = 0,
    squad_order: str = "inspector",
) -> list[list[str]]:
    """Aligners: Decoupling LLMs and Alignment (Ngweta, Agarwal, Maity, Gittens, Sun, Yurochkin; Findings of
    EMNLP 2024; arXiv:2403.04224).

    The base model answers; an aligner a(y' | x, y), trained separately on synthetic (x, y_misaligned,
    y_aligned) triples, rewrites the answer. An inspector q(x, y) (a binary mis-alignment classifier trained on
    the same data) decides whether to apply the aligner at all; a "squad" chains several (aligner, inspector)
    pairs, one per alignment criterion.

    Formula:
        y ~ pi_base(. | x);   y_final = a(x, y) if q(x, y) > tau else y     (no inspector: always a(x, y))
        a(x, y) ~ pi_aligner(. | template(x, y))
        training: L = - mean_{corrected tokens} log pi_aligner(y'_t | template(x, y), y'_<t)

    Hyper-parameters:
        tau: inspector threshold (default 0.5, ours: a probability's midpoint; UNVERIFIED). Ignored without an
            inspector.
        aligner_temperature: the aligner's sampling temperature (default 0.0, ours: greedy rewriting).
        aligner_max_new_tokens: length limit of a rewrite (default 0 = ``context.sampling['max_new_tokens']``,
            ours).
        squad_order: "inspector" (default; the official squad, as found by the review in issue #14: before
            each batch the (aligner, inspector) pairs are sorted by ascending mean inspector score over the
            batch's answers, so the criterion least violated is fixed first and the most violated last;
            members without an inspector keep the front, in their given order) or "fixed" (the given order).

    ``model`` is the base LLM, sampled with ``context.sampling``; ``context.aligner_model`` the aligner
    (tokenizer ``context.extra['aligner_tokenizer']``, default the base tokenizer); optional
    ``context.extra['inspector']`` = ``fn(query, answer) -> P(misaligned)``; optional
    ``context.extra['aligner_squad']`` = a list of ``(aligner_model, inspector)`` applied with the main one in
    ``squad_order``. Training: :func:`build_aligner_examples` + :func:`tokenize_aligner_examples` +
    :func:`aligner_loss`. Source: the paper's abstract (arXiv html v4, read via search) and catalogue entry
    #43. UNVERIFIED: the official prompt template (``TEMPLATE`` here is ours), tau and the squad order.
    """
    aligner = context.need("aligner_model", "aligners")
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be in [0, 1]; got {tau}")
    atok = context.extra.get("aligner_tokenizer", tokenizer)
    squad: list[tuple[nn.Module, Inspector | None]] = [(aligner, context.extra.get("inspector"))]
    squad += list(context.extra.get("aligner_squad", []))
    if squad_order not in ("inspector", "fixed"):
        raise ValueError(f"squad_order must be 'inspector' or 'fixed'; got {squad_order!r}")
    answers = sample_text(model, tokenizer, prompts, **context.sampling)
    if squad_order == "inspector":
        squad = order_squad(squad, prompts, answers)
    akw = {k: v for k, v in context.sampling.items() if k not in ("num_samples", "temperature")}
    akw.update(num_samples=1, temperature=aligner_temperature)
    if aligner_max_new_tokens < 0:
        raise ValueError(f"aligner_max_new_tokens must be >= 0; got {aligner_max_new_tokens}")
    if aligner_max_new_tokens:
        akw["max_new_tokens"] = aligner_max_new_tokens
    for a_model, inspector in squad:
        jobs = [
            (i, j)
            for i, per in enumerate(answers)
            for j, y in enumerate(per)
            if inspector is None or float(inspector(prompts[i], y)) > tau
        ]
        if not jobs:
            continue
        texts = [aligner_input(prompts[i], answers[i][j]) for i, j in jobs]
        rewrites = sample_text(a_model, atok, texts, **akw)
        for (i, j), (r,) in zip(jobs, rewrites, strict=True):
            answers[i][j] = r.strip()
    return answers
