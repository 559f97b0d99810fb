"""Preference data with known truth: pairs of sampled completions labelled by Bradley–Terry draws from the gold
reward, so each pair's true preference probability is known.

For a pair (a, b) with gold rewards r_a, r_b the true probability that a is preferred is
``P(a > b) = sigmoid((r_a - r_b) / temperature)``; with label-flip noise eps the label is drawn with probability
``(1 - eps) P + eps (1 - P)``. Rows are ordinary JSONL that ``alignkit train`` reads: text fields ``prompt``,
``chosen``, ``rejected`` (TRL's standard format), pre-tokenised ``prompt_ids``/``chosen_ids``/``rejected_ids``,
and the truth: ``chosen_reward``, ``rejected_reward``, ``p_chosen`` (true P(chosen > rejected)).
:func:`unpaired_view` turns pairs into KTO rows ``{prompt, completion, label, prompt_ids, completion_ids}``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from alignkit.testbed.tasks import Prompt

Strategy = Literal["best_worst", "random"]


def bradley_terry_probability(
    r_a: float | np.ndarray, r_b: float | np.ndarray, temperature: float
) -> float | np.ndarray:
    """P(a preferred over b) = sigmoid((r_a - r_b) / temperature)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive; got {temperature}")
    z = (np.asarray(r_a, dtype=np.float64) - np.asarray(r_b, dtype=np.float64)) / temperature
    p = 0.5 * (1.0 + np.tanh(0.5 * z))  # = sigmoid(z), without overflow
    return float(p) if np.ndim(p) == 0 else p


def label_probability(
    r_a: float | np.ndarray, r_b: float | np.ndarray, temperature: float, label_noise: float = 0.0
) -> float | np.ndarray:
    """Probability that the *label* says a > b: the Bradley–Terry probability, flipped with probability
    ``label_noise``."""
    if not 0 <= label_noise <= 1:
        raise ValueError(f"label_noise must be in [0, 1]; got {label_noise}")
    p = bradley_terry_probability(r_a, r_b, temperature)
    return (1 - label_noise) * p + label_noise * (1 - p)


def draw_labels(
    r_a: Sequence[float] | np.ndarray,
    r_b: Sequence[float] | np.ndarray,
    *,
    temperature: float,
    label_noise: float = 0.0,
    rng: np.random.Generator,
) -> np.ndarray:
    """Boolean labels, True where a is labelled preferred, drawn with :func:`label_probability`."""
    q = np.atleast_1d(label_probability(r_a, r_b, temperature, label_noise))
    return rng.random(q.shape) < q


def build_pairs(
    prompts: Sequence[Prompt],
    completions: Sequence[Sequence[Sequence[int]]],
    rewards: Sequence[Sequence[float]],
    tokenizer: Any,
    *,
    strategy: Strategy = "best_worst",
    temperature: float = 0.1,
    label_noise: float = 0.0,
    min_margin: float = 1e-6,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """One labelled pair per prompt from its K sampled completions.

    ``strategy="best_worst"`` pairs the highest- and lowest-reward samples (the strongest signal);
    ``"random"`` pairs two distinct random samples. Pairs whose gold margin is below ``min_margin`` (e.g. all
    samples scored 0) carry no preference and are dropped. Which side becomes ``chosen`` is a Bradley–Terry draw.
    """
    if strategy not in ("best_worst", "random"):
        raise ValueError(f"strategy must be 'best_worst' or 'random'; got {strategy!r}")
    if not (len(prompts) == len(completions) == len(rewards)):
        raise ValueError(
            f"prompts ({len(prompts)}), completions ({len(completions)}) and rewards ({len(rewards)}) differ in length"
        )
    rng = np.random.default_rng(seed)
    picked: list[tuple[int, int, int]] = []
    for i, rs in enumerate(rewards):
        if len(rs) != len(completions[i]):
            raise ValueError(f"prompt {i}: {len(completions[i])} completions but {len(rs)} rewards")
        if len(rs) < 2:
            raise ValueError(f"prompt {i}: pairs need >= 2 completions per prompt; got {len(rs)}")
        if strategy == "best_worst":
            a, b = int(np.argmax(rs)), int(np.argmin(rs))
        else:
            a, b = (int(x) for x in rng.choice(len(rs), size=2, replace=False))
        if abs(rs[a] - rs[b]) >= min_margin:
            picked.append((i, a, b))
    if not picked:
        return []
    ra = np.array([rewards[i][a] for i, a, _ in picked])
    rb = np.array([rewards[i][b] for i, _, b in picked])
    a_wins = draw_labels(ra, rb, temperature=temperature, label_noise=label_noise, rng=rng)
    rows = []
    for (i, a, b), win in zip(picked, a_wins, strict=True):
        c, r = (a, b) if win else (b, a)
        c_ids, r_ids = list(completions[i][c]), list(completions[i][r])
        rows.append(
            {
                "prompt": prompts[i].text,
                "chosen": tokenizer.decode(c_ids, skip_special_tokens=True),
                "rejected": tokenizer.decode(r_ids, skip_special_tokens=True),
                "prompt_ids": list(prompts[i].ids),
                "chosen_ids": c_ids,
                "rejected_ids": r_ids,
                "chosen_reward": float(rewards[i][c]),
                "rejected_reward": float(rewards[i][r]),
                "p_chosen": float(bradley_terry_probability(rewards[i][c], rewards[i][r], temperature)),
            }
        )
    return rows


def unpaired_view(pairs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """KTO rows: each pair's chosen completion labelled desirable (True), its rejected one undesirable (False)."""
    rows = []
    for p in pairs:
        for side, label in (("chosen", True), ("rejected", False)):
            rows.append(
                {
                    "prompt": p["prompt"],
                    "completion": p[side],
                    "label": label,
                    "prompt_ids": p["prompt_ids"],
                    "completion_ids": p[f"{side}_ids"],
                    "gold_reward": p[f"{side}_reward"],
                }
            )
    return rows


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write rows as JSON lines (atomically: a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a JSONL file; a malformed line raises ``ValueError`` naming the file and line."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
    return rows


def pair_summary(pairs: Sequence[dict[str, Any]]) -> dict[str, float]:
    """How much signal the pairs carry: count, mean gold margin, share whose label agrees with the gold order."""
    if not pairs:
        return {"pairs": 0, "mean_margin": math.nan, "agree_with_gold": math.nan}
    margins = [p["chosen_reward"] - p["rejected_reward"] for p in pairs]
    return {
        "pairs": len(pairs),
        "mean_margin": float(np.mean(margins)),
        "agree_with_gold": float(np.mean([m > 0 for m in margins])),
    }
