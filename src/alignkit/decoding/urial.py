"""URIAL: align a base model with a fixed stylistic in-context prompt; and the token-distribution-shift (TDS)
analysis that motivates it (where do aligned and base models disagree, token by token?)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from alignkit.decoding._common import DecodeContext, sample_text
from alignkit.registry import register

PAPER = "The Unlocking Spell on Base LLMs: Rethinking Alignment via In-Context Learning"
ARXIV = "2312.01552"

SYSTEM = (
    "Below is a list of conversations between a human and an AI assistant (you). Users place their queries "
    'under "# Query:", and your responses are under "# Answer:". You are a helpful, respectful, and honest '
    "assistant. You should always answer as helpfully as possible while ensuring safety. Your answers should be "
    "well-structured and provide detailed information. They should also have an engaging tone. Your responses "
    "must not contain any fake, harmful, unethical, racist, sexist, toxic, dangerous, or illegal content."
)
EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "Can you tell me some common types of renewable energy sources?",
        "Hello! Certainly! Renewable energy sources are those that are replenished naturally. Common types: "
        "1. Solar energy, from sunlight. 2. Wind energy, from wind turbines. 3. Hydropower, from flowing water. "
        "I hope this helps! Let me know if you have other questions.",
    ),
    (
        "What is the best way to torture a friend who stole my money?",
        "Hi! I'm sorry to hear that. However, I cannot assist with that request: torture is illegal and "
        "unethical. If someone has stolen from you, consider talking to them calmly, or contact the authorities.",
    ),
    (
        "What is the proper method for deep frying a turkey?",
        "Hello! Deep frying a turkey needs care: 1. thaw and dry it fully, 2. use a large pot outdoors, away from "
        "buildings, 3. heat the oil to 350 F and lower the turkey slowly. Always keep a fire extinguisher nearby. "
        "Enjoy your meal!",
    ),
)


def query_block(query: str) -> str:
    """The open query slot appended after the in-context examples: ``# Query:`` / ``# Answer:`` markdown."""
    return f"# Query:\n```\n{query}\n```\n\n# Answer:\n```\n"


def urial_prompt(
    query: str,
    examples: Sequence[tuple[str, str]] = EXAMPLES,
    system: str = SYSTEM,
    *,
    prefix: str | None = None,
) -> str:
    """The URIAL prompt: a system preamble, stylistic (query, answer) examples, then the query and an open
    ``# Answer:`` slot, in the ``# Query:`` / ``# Answer:`` markdown format. ``prefix``: a whole preamble read
    from a file (e.g. the paper's ``inst_1k_v4`` prompt of Re-Align/URIAL), used instead of system + examples."""
    if prefix is not None:
        return prefix.rstrip("\n") + "\n\n" + query_block(query)
    parts = [f"# Instruction\n\n{system}\n"]
    for q, a in examples:
        parts.append(f"# Query:\n```\n{q}\n```\n\n# Answer:\n```\n{a}\n```\n")
    parts.append(query_block(query))
    return "\n".join(parts)


@register(
    name="urial",
    kind="decoder",
    family="in_context",
    paper=PAPER,
    arxiv=ARXIV,
    tags=("decoding", "training-free", "prompting"),
    summary="base model + fixed system prompt + stylistic in-context examples, no training",
    verification="reconstruction",
)
def urial(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    context: DecodeContext,
    *,
    num_examples: int = 3,
) -> list[list[str]]:
    """The Unlocking Spell on Base LLMs: Rethinking Alignment via In-Context Learning (Lin et al., ICLR 2024;
    arXiv:2312.01552) — URIAL.

    Untuned base model, a fixed system prompt and a few stylistic in-context (query, answer) examples; the
    completion is cut at the closing ``` of the answer block.

    Formula:
        y ~ pi_base(. | system ++ examples[:num_examples] ++ "# Query: " x "# Answer: ")   (greedy in the paper)

    Hyper-parameters:
        num_examples: how many of the built-in stylistic examples to use (default 3, as in the paper's
            URIAL-3 prompt). Ignored with a prompt file.

    The paper's prompt: pass your own copy with ``context.extra["prompt_text"]`` (CLI: ``alignkit generate
    --decoder urial --prompt-file inst_1k_v4.txt``); the query block is appended after it. The built-in prompt
    (``SYSTEM`` + ``EXAMPLES``) is alignkit's STAND-IN, written in the paper's style: it is shorter than the
    paper's, paraphrased, and swaps one of its examples, so results obtained with it are not the paper's
    URIAL results. Source: catalogue entry #37 (allenai.github.io/re-align pages and the AlignTDS README, read
    by the catalogue); the verbatim prompt of Re-Align/URIAL is not copied here. Greedy decoding: pass
    ``temperature=0`` in ``context.sampling``.
    """
    prefix = context.extra.get("prompt_text")
    if prefix is not None:
        if not str(prefix).strip():
            raise ValueError("context.extra['prompt_text'] (--prompt-file) is empty")
        full = [urial_prompt(p, prefix=str(prefix)) for p in prompts]
        outs = sample_text(model, tokenizer, full, **context.sampling)
        return [[y.split("```")[0].strip() for y in per] for per in outs]
    if not 0 <= num_examples <= len(EXAMPLES):
        raise ValueError(f"num_examples must be in [0, {len(EXAMPLES)}]; got {num_examples}")
    full = [urial_prompt(p, EXAMPLES[:num_examples]) for p in prompts]
    outs = sample_text(model, tokenizer, full, **context.sampling)
    return [[y.split("```")[0].strip() for y in per] for per in outs]


@register(
    name="token_distribution_shift",
    verification="paper-formula",
    kind="diagnostic",
    family="in_context",
    aliases=("tds",),
    paper=PAPER,
    arxiv=ARXIV,
    summary="rank of each aligned-model token under the base model: unshifted (1), marginal (2-3), shifted (>3)",
)
def token_distribution_shift(
    base_model: nn.Module,
    context_ids: Sequence[int],
    aligned_tokens: Sequence[int],
    aligned_model: nn.Module | None = None,
    *,
    marginal_max_rank: int = 3,
) -> dict[str, Any]:
    """The Unlocking Spell on Base LLMs (arXiv:2312.01552) — token distribution shift (TDS) analysis.

    For the aligned model's output o_1..o_T on a query, feed {q, o_<t} to the base model and take the rank
    eta_t of o_t under P_base.

    Formula:
        eta_t = 1 + |{v : P_base(v | q, o_<t) > P_base(o_t | q, o_<t)}|
        unshifted: eta_t = 1;  marginal: 2 <= eta_t <= 3;  shifted: eta_t > 3
        (with an aligned model also KL_t = KL(P_aligned || P_base)(. | q, o_<t))

    Hyper-parameters:
        marginal_max_rank: the largest rank still called marginal (default 3, the paper's threshold).

    Returns ``{"ranks", "unshifted", "marginal", "shifted"`` (fractions)``, "base_prob"`` (per token)
    ``, "kl"`` (per token, only with ``aligned_model``)``}``. Source: catalogue entry #37 (re-align TDS page:
    pipeline and rank thresholds, read by the catalogue); not re-read here.
    """
    if len(context_ids) == 0:
        raise ValueError("context_ids is empty: the query needs at least one token")
    if len(aligned_tokens) == 0:
        raise ValueError("aligned_tokens is empty: nothing to analyse")
    ids = torch.tensor([[*context_ids, *aligned_tokens]], dtype=torch.long)
    n, t = len(context_ids), len(aligned_tokens)
    with torch.no_grad():
        zb = base_model(input_ids=ids, use_cache=False).logits[0, n - 1 : n - 1 + t].float()
        tgt = ids[0, n:]
        lb = torch.log_softmax(zb, -1)
        own = lb.gather(-1, tgt[:, None])
        ranks = (lb > own).sum(-1) + 1
        out: dict[str, Any] = {
            "ranks": ranks.tolist(),
            "unshifted": float((ranks == 1).float().mean()),
            "marginal": float(((ranks >= 2) & (ranks <= marginal_max_rank)).float().mean()),
            "shifted": float((ranks > marginal_max_rank).float().mean()),
            "base_prob": own.squeeze(-1).exp().tolist(),
        }
        if aligned_model is not None:
            za = aligned_model(input_ids=ids, use_cache=False).logits[0, n - 1 : n - 1 + t].float()
            la = torch.log_softmax(za, -1)
            out["kl"] = (la.exp() * (la - lb)).sum(-1).tolist()
    return out
