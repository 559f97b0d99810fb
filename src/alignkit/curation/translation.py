"""Translation fine-tuning data: a small, direction-controlled (optionally noised) SFT set built from parallel
text, for the ablations of "few examples suffice / one direction generalises / noise hurts"."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from alignkit.curation._common import field_str
from alignkit.registry import register

DEFAULT_TEMPLATE = (
    "Translate the following text from {src_lang} to {tgt_lang}.\n{src_lang}: {src}\n{tgt_lang}:"
)


def translation_sft_rows(
    rows: Sequence[dict[str, Any]],
    directions: dict[tuple[str, str], int],
    *,
    n: int = 32,
    noise_fn: Callable[[str, random.Random], str] | None = None,
    noise_side: str = "target",
    noise_rate: float = 0.0,
    template: str = DEFAULT_TEMPLATE,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Fine-Tuning Large Language Models to Translate: Will a Touch of Noisy Data in Misaligned Languages
    Suffice? (Zhu et al., 2024; arXiv:2404.14122) — build the translation SFT sets the paper studies: a few
    examples (32 suffice), in chosen directions (one direction generalises to others; English-target data can make
    the model misread the task), optionally with noise on one side (target-side noise hurts more).

    Formula:
        for each direction (s -> t) with count c_st (sum c_st = n):
            draw c_st parallel rows without replacement; prompt = template(s, t, row[s]); completion = row[t]
            with probability noise_rate: side <- noise_fn(side)     (side = target or source)

    Hyper-parameters:
        n: 32 — the paper's smallest sufficient set size; must equal the sum of ``directions``' counts.
        noise_fn: None — ``(text, rng) -> noised text`` (ours: no noise; the paper's noise types are
            unverified).
        noise_side: "target" — which side ``noise_fn`` corrupts ("target" or "source"; ours).
        noise_rate: 0.0 — share of rows noised (ours: off; needs ``noise_fn``).
        template: DEFAULT_TEMPLATE (ours) with ``{src_lang}``, ``{tgt_lang}``, ``{src}``.
        seed: 0. Operational (alignkit's interface, not a paper hyper-parameter).

    ``rows``: parallel rows mapping language codes to sentences, e.g. ``{"en": ..., "de": ...}``;
    ``directions``: ``{("de", "en"): 16, ("en", "de"): 16}``. Output rows: ``prompt``, ``completion``,
    ``src_lang``, ``tgt_lang``, ``noised``. Unverified: the arXiv id / title (from the catalog, not confirmed
    by search), the paper's prompt template and noise types — this helper builds ablation data, it does not
    reproduce the paper's exact sets.
    """
    if noise_side not in ("target", "source"):
        raise ValueError(f"noise_side must be 'target' or 'source', got {noise_side!r}")
    if not 0 <= noise_rate <= 1:
        raise ValueError(f"noise_rate must be in [0, 1], got {noise_rate}")
    if noise_rate > 0 and noise_fn is None:
        raise ValueError("noise_rate > 0 needs a noise_fn")
    if not directions:
        raise ValueError("directions is empty")
    for d, c in directions.items():
        if not (isinstance(d, tuple) and len(d) == 2 and d[0] != d[1]):
            raise ValueError(f"directions: key {d!r} must be a (source, target) pair of different languages")
        if not isinstance(c, int) or c < 0:
            raise ValueError(f"directions[{d!r}] must be a non-negative int, got {c!r}")
    if sum(directions.values()) != n:
        raise ValueError(f"directions' counts sum to {sum(directions.values())}, but n is {n}")
    rows = list(rows)
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for (s, t), count in directions.items():
        usable = [i for i, r in enumerate(rows) if isinstance(r, dict) and s in r and t in r]
        if len(usable) < count:
            raise ValueError(
                f"direction {s}->{t}: needs {count} rows with fields {s!r} and {t!r}, found {len(usable)}"
            )
        for i in sorted(rng.sample(usable, count)):
            src, tgt = field_str(rows[i], i, s), field_str(rows[i], i, t)
            noised = noise_rate > 0 and rng.random() < noise_rate
            if noised:
                assert noise_fn is not None
                if noise_side == "target":
                    tgt = noise_fn(tgt, rng)
                else:
                    src = noise_fn(src, rng)
            prompt = template.replace("{src_lang}", s).replace("{tgt_lang}", t).replace("{src}", src)
            out.append({"prompt": prompt, "completion": tgt, "src_lang": s, "tgt_lang": t, "noised": noised})
    return out


register(
    name="translation_sft",
    verification="reconstruction",
    kind="data_rule",
    family="curation",
    paper="Fine-Tuning Large Language Models to Translate: Will a Touch of Noisy Data in Misaligned Languages Suffice?",
    arxiv="2404.14122",
    tags=("sft", "data-construction", "translation"),
    summary="a small direction-controlled, optionally noised translation SFT set",
)(translation_sft_rows)
