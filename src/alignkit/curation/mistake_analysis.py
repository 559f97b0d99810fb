"""Mistake analysis: turn harmful (instruction, response) pairs into SFT data in which the model analyses why the
response is harmful, mixed with ordinary helpful/safe SFT rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alignkit.curation._common import field_str
from alignkit.registry import register

#: The instruction of a mistake-analysis sample (ours: the paper's exact template was not read).
DEFAULT_ANALYSIS_TEMPLATE = (
    "Below is a question and a response to it. Analyse whether the response is harmful, unethical or "
    "offensive, and explain why.\n\nQuestion: {prompt}\n\nResponse: {response}\n\nAnalysis:"
)
#: The hint used only when *generating* the analysis (guided analysis); it is removed from the training sample.
DEFAULT_GUIDANCE_HINT = "The following response is harmful. "


def mistake_analysis_rows(
    rows: Sequence[dict[str, Any]],
    *,
    template: str = DEFAULT_ANALYSIS_TEMPLATE,
    stage: str = "train",
    guidance_hint: str = DEFAULT_GUIDANCE_HINT,
    helpful_rows: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """Gaining Wisdom from Setbacks: Aligning Large Language Models via Mistake Analysis (Chen et al., ICLR 2024;
    arXiv:2310.10477) — the data construction: harmful responses y- (induced from an unaligned model) are
    turned into mistake-analysis samples whose target is the model's own critique a of y-; SFT on the union
    of these and ordinary (x, y+) rows.

    Formula:
        stage="generate":  prompt = hint + template(x, y-)           (guided: the model writes the analysis a)
        stage="train":     prompt = template(x, y-),  completion = a  (unguided: the hint is dropped)
        L = -log pi(y+ | x) - log pi(a | template(x, y-))             (plain SFT NLL over completions only)

    Hyper-parameters:
        template: DEFAULT_ANALYSIS_TEMPLATE — needs ``{prompt}`` and ``{response}`` (ours).
        stage: "train" (ours: the stage a training run needs) — "generate" builds the guided prompts that ask
            the model for the analysis; "train" builds the SFT rows (needs ``analysis``).
        guidance_hint: DEFAULT_GUIDANCE_HINT — prefixed at the generate stage only (ours; the paper's wording
            was not available).
        helpful_rows: () — ordinary ``prompt``/``completion`` SFT rows appended unchanged at the train stage
            (ours: none unless given).

    Input rows: ``prompt`` (x), ``response`` (harmful y-), and at the train stage ``analysis`` (a). Output rows
    are ``prompt``/``completion`` (the engine's SFT format: the loss covers the completion only).
    Unverified: the paper's exact templates and mixing ratio (no official code found); the "guided generation,
    unguided fine-tuning" split is the catalog's reading of the paper.
    """
    if stage not in ("train", "generate"):
        raise ValueError(f"stage must be 'train' or 'generate', got {stage!r}")
    if "{prompt}" not in template or "{response}" not in template:
        raise ValueError("template must contain '{prompt}' and '{response}'")
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        x, y = field_str(row, i, "prompt"), field_str(row, i, "response")
        body = template.replace("{prompt}", x).replace("{response}", y)
        if stage == "generate":
            out.append({"prompt": guidance_hint + body, "source": "mistake_analysis", "row": i})
        else:
            out.append(
                {"prompt": body, "completion": field_str(row, i, "analysis"), "source": "mistake_analysis"}
            )
    if stage == "train":
        for i, row in enumerate(helpful_rows):
            out.append(
                {
                    "prompt": field_str(row, i, "prompt"),
                    "completion": field_str(row, i, "completion"),
                    "source": "helpful",
                }
            )
    return out


register(
    name="mistake_analysis",
    verification="reconstruction",
    kind="data_rule",
    family="curation",
    paper="Gaining Wisdom from Setbacks: Aligning Large Language Models via Mistake Analysis",
    arxiv="2310.10477",
    tags=("sft", "safety", "data-construction", "self-critique"),
    summary="SFT rows in which the model analyses why a harmful response is harmful",
)(mistake_analysis_rows)
