"""PTST — Pure Tuning, Safe Testing: fine-tune without a safety system prompt, add it at test time."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from alignkit.registry import register

#: Llama-2-chat's default system prompt (the safety prompt of the paper's ``chat:llama`` test template).
LLAMA2_SAFETY_PROMPT = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being "
    "safe. Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal "
    "content. Please ensure that your responses are socially unbiased and positive in nature.\n\n"
    "If a question does not make any sense, or is not factually coherent, explain why instead of answering "
    "something not correct. If you don't know the answer to a question, please don't share false information."
)


def ptst_messages(
    prompt: str,
    completion: str | None = None,
    *,
    stage: Literal["train", "test"],
    safety_prompt: str = LLAMA2_SAFETY_PROMPT,
    train_system_prompt: str | None = None,
) -> list[dict[str, str]]:
    """One PTST chat (see ``ptst_rows``): a training chat carries no safety prompt, a test chat always does."""
    if stage not in ("train", "test"):
        raise ValueError(f"stage must be 'train' or 'test', got {stage!r}")
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("prompt: must be a non-empty string")
    msgs: list[dict[str, str]] = []
    if stage == "test":
        if not safety_prompt:
            raise ValueError("safety_prompt: must be non-empty at test time (that is the point of PTST)")
        msgs.append({"role": "system", "content": safety_prompt})
    elif train_system_prompt:
        if safety_prompt and safety_prompt in train_system_prompt:
            raise ValueError("train_system_prompt: contains the safety prompt; PTST trains without it")
        msgs.append({"role": "system", "content": train_system_prompt})
    msgs.append({"role": "user", "content": prompt})
    if completion is not None:
        msgs.append({"role": "assistant", "content": completion})
    return msgs


def ptst_rows(
    rows: Iterable[dict[str, Any]],
    *,
    stage: Literal["train", "test"] = "train",
    safety_prompt: str = LLAMA2_SAFETY_PROMPT,
    train_system_prompt: str | None = None,
) -> list[dict[str, Any]]:
    """Keeping LLMs Aligned After Fine-tuning: The Crucial Role of Prompt Templates (Lyu et al., NeurIPS 2024;
    arXiv:2402.18540) — PTST, "Pure Tuning, Safe Testing", as a data rule.

    Not a loss: a template policy. Fine-tune with a chat template *without* the safety system prompt, and run
    inference with it. ``stage="train"`` turns ``prompt``/``completion`` rows (strings, or ``messages``) into
    ``messages`` rows with no system prompt (or ``train_system_prompt``, which must not contain the safety
    prompt) for ``alignkit train``; ``stage="test"`` turns ``prompt`` rows into ``messages`` that start with the
    safety system prompt (no assistant turn) for generation. An existing system message is dropped at train time
    and replaced at test time.

    Formula:
        train:  chat(user=x, assistant=y)                      (no safety system prompt)
        test:   chat(system=safety_prompt, user=x) -> generate

    Hyper-parameters:
        stage: "train" or "test" (default "train", ours: training data is the common use).
        safety_prompt: the test-time system prompt (default Llama-2-chat's default system prompt, the paper's
            ``chat:llama`` template).
        train_system_prompt: optional non-safety system prompt at train time (default None; the paper's
            ``chat:vanilla``/``alpaca`` training templates carry no safety prompt).

    Source: arXiv 2402.18540 abstract and Fig. 1 caption (as summarised in the catalog; train without the safety
    prompt, test with it; shown on Llama-2-7B-chat, Mistral-7B-Instruct-v0.2, GPT-3.5 Turbo). Unverified: the
    paper's exact template strings (``chat:vanilla``, ``chat:alpaca``) — the official code vfleaking/PTST was
    not read; the safety effect cannot be shown on a tiny model.
    """
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        if "messages" in row:
            turns = [m for m in row["messages"] if m.get("role") != "system"]
            users = [m for m in turns if m.get("role") == "user"]
            if not users:
                raise ValueError(f"row {i}: field 'messages' has no user turn")
            if stage == "test":
                turns = turns[: max(j for j, m in enumerate(turns) if m.get("role") == "user") + 1]
            sys_msgs = ptst_messages(
                "x", stage=stage, safety_prompt=safety_prompt, train_system_prompt=train_system_prompt
            )[:-1]
            out.append({**{k: v for k, v in row.items() if k != "messages"}, "messages": sys_msgs + turns})
            continue
        if "prompt" not in row:
            raise ValueError(f"row {i}: needs field 'prompt' (or 'messages')")
        completion = row.get("completion") if stage == "train" else None
        if stage == "train" and completion is None:
            raise ValueError(f"row {i}: field 'completion' is required at train time")
        rest = {k: v for k, v in row.items() if k not in ("prompt", "completion")}
        out.append(
            {
                **rest,
                "messages": ptst_messages(
                    row["prompt"],
                    completion,
                    stage=stage,
                    safety_prompt=safety_prompt,
                    train_system_prompt=train_system_prompt,
                ),
            }
        )
    return out


register(
    name="ptst",
    verification="reconstruction",
    kind="data_rule",
    family="harmful_finetuning",
    paper="Keeping LLMs Aligned After Fine-tuning: The Crucial Role of Prompt Templates",
    arxiv="2402.18540",
    aliases=("pure_tuning_safe_testing",),
    tags=("safety", "template"),
    summary="fine-tune without the safety system prompt, add it at test time",
)(ptst_rows)
