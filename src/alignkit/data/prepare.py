"""Validate and tokenise rows into token-id examples for one training mode.

Formats (TRL's):

* paired: ``prompt``/``chosen``/``rejected`` (strings or lists of ``{"role", "content"}`` messages; without
  ``prompt`` the shared prefix of chosen and rejected is the prompt), or pre-tokenised
  ``prompt_ids``/``chosen_ids``/``rejected_ids``;
* unpaired: ``prompt``/``completion``/``label`` or ``prompt_ids``/``completion_ids``/``label`` (paired rows are
  also accepted: chosen becomes a desirable and rejected an undesirable example, as TRL does);
* sft: ``text``, ``messages`` (last message is the completion), ``prompt``/``completion``, pre-tokenised
  ``prompt_ids``/``completion_ids``, or paired rows (prompt + chosen);
* online: ``prompt`` or ``prompt_ids``.

Prompt and completion are tokenised as TRL 1.16 does (``prompt`` alone and ``prompt + completion`` jointly, cut
where they diverge). Truncation follows TRL 1.16 too, per sequence: each ``prompt + completion`` longer than
``max_length`` keeps its first (``keep_start``) or last (``keep_end``) ``max_length`` tokens, so under ``keep_end``
the chosen and rejected sequences of a pair may keep different amounts of the prompt
(``Example.rejected_prompt_ids``). Under ``keep_start`` a prompt that fills ``max_length`` leaves no completion
token: TRL drops such rows, alignkit reports them as bad rows (``--skip-bad-rows`` skips them, as TRL does).
``max_prompt_length`` / ``max_completion_length`` (off by default; TRL 1.16's DPO has neither) cut the prompt
(its start under ``keep_end``, else its end) and the completion (its end) first, as TRL < 0.20 did. Every cut is
counted in ``DataReport`` (data_report.json).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from alignkit.data.loading import Record, load_records
from alignkit.errors import UserError

MODES = ("sft", "paired", "unpaired", "online")


class DataError(UserError, ValueError):
    """Bad rows, each named by file, row number and field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        shown = "\n  ".join(problems[:10])
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        super().__init__(
            f"{len(problems)} bad row(s) in the training data (pass skip_bad_rows / --skip-bad-rows to skip "
            f"them with a warning):\n  {shown}{more}"
        )


class _Bad(Exception):
    def __init__(self, field_name: str, msg: str) -> None:
        super().__init__(f"field {field_name!r}: {msg}")


@dataclass
class Example:
    """One training example as token ids. ``where`` names the input row."""

    prompt_ids: list[int]
    chosen_ids: list[int] | None = None
    rejected_ids: list[int] | None = None
    completion_ids: list[int] | None = None
    label: bool | None = None
    where: str = ""
    kl_completion_ids: list[int] | None = None  # unpaired: a mismatched completion (KTO's KL estimate)
    extras: dict[str, Any] = field(default_factory=dict)  # per-row data columns an objective declares
    target_mask: list[int] | None = None  # SFT: 1 on the completion tokens to train on (None: all of them)
    # paired, truncation_mode="keep_end": the rejected sequence's prompt when it kept a different part of the
    # prompt than the chosen one (TRL truncates each sequence on its own); None: the same as ``prompt_ids``
    rejected_prompt_ids: list[int] | None = None

    @property
    def rejected_prompt(self) -> list[int]:
        """The prompt the rejected completion follows (``prompt_ids`` unless truncation cut it differently)."""
        return self.prompt_ids if self.rejected_prompt_ids is None else self.rejected_prompt_ids

    def n_targets(self) -> int:
        """Tokens this example's loss is averaged over (its completion, or the chosen one)."""
        if self.target_mask is not None:
            return int(sum(self.target_mask))
        return len(self.completion_ids or self.chosen_ids or [])


_COUNTS = (
    "rows", "examples", "truncated", "truncated_tokens", "truncated_sequences", "truncated_prompts",
    "truncated_completions", "implicit_prompts", "split_pairs", "prompt_token_cuts",
)  # fmt: skip


@dataclass
class DataReport:
    """What preparation did. ``truncated``: examples with any token cut (``truncated_tokens`` in all);
    ``truncated_sequences``: prompt+completion sequences cut to ``max_length``; ``truncated_prompts`` /
    ``truncated_completions``: sequences whose prompt / completion lost tokens (to ``max_length``,
    ``max_prompt_length`` or ``max_completion_length``)."""

    rows: int = 0
    examples: int = 0
    skipped: list[str] = field(default_factory=list)
    truncated: int = 0
    truncated_tokens: int = 0
    truncated_sequences: int = 0
    truncated_prompts: int = 0
    truncated_completions: int = 0
    implicit_prompts: int = 0
    split_pairs: int = 0
    prompt_token_cuts: int = 0  # rows whose prompt tokens were not a prefix of prompt+completion (TRL's rule)
    identical_pairs: list[str] = field(default_factory=list)  # rows whose chosen and rejected tokenise alike

    def add(self, other: DataReport) -> None:
        """Add ``other``'s counts and rows to this report (one row's report into the whole data's)."""
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.skipped += other.skipped
        self.identical_pairs += other.identical_pairs

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "examples": self.examples,
            "skipped": len(self.skipped),
            "skipped_reasons": self.skipped,
            "truncated": self.truncated,
            "truncated_tokens": self.truncated_tokens,
            "truncated_sequences": self.truncated_sequences,
            "truncated_prompts": self.truncated_prompts,
            "truncated_completions": self.truncated_completions,
            "implicit_prompts": self.implicit_prompts,
            "split_pairs": self.split_pairs,
            "prompt_token_cuts": self.prompt_token_cuts,
            "identical_pairs": len(self.identical_pairs),
            "identical_pair_rows": self.identical_pairs[:100],
        }

    def summary(self) -> str:
        s = f"{self.rows} rows -> {self.examples} examples"
        if self.skipped:
            s += f"; {len(self.skipped)} bad rows skipped"
        if self.truncated:
            s += f"; {self.truncated} truncated ({self.truncated_tokens} tokens cut)"
        if self.identical_pairs:
            s += f"; {len(self.identical_pairs)} pairs with chosen == rejected"
        return s


@dataclass
class Prepared:
    mode: str
    examples: list[Example]
    report: DataReport


# --- field readers ------------------------------------------------------------------------------------------------


def _get(rec: Record, name: str) -> Any:
    if name not in rec.fields:
        raise _Bad(name, "is missing")
    v = rec.fields[name]
    if v is None or (isinstance(v, (str, list)) and len(v) == 0):
        raise _Bad(name, "is empty")
    return v


def _is_messages(v: Any) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(isinstance(m, dict) for m in v)


def _check_messages(name: str, v: list) -> None:
    for i, m in enumerate(v):
        if not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise _Bad(name, f"message {i} needs string 'role' and 'content'")


def _ids(name: str, v: Any, vocab: int | None) -> list[int]:
    if not isinstance(v, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in v):
        raise _Bad(name, f"must be a list of int token ids; got {type(v).__name__}")
    if len(v) == 0:
        raise _Bad(name, "is empty")
    if vocab is not None:
        bad = [t for t in v if t < 0 or t >= vocab]
        if bad:
            raise _Bad(name, f"token id {bad[0]} is outside the vocabulary [0, {vocab})")
    return list(v)


def _label(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0"):
        return v.strip().lower() in ("true", "1")
    raise _Bad("label", f"must be a boolean (or 0/1); got {v!r}")


class _Tok:
    def __init__(self, tokenizer: Any, vocab: int | None) -> None:
        self.t = tokenizer
        self.vocab = vocab
        self.eos = getattr(tokenizer, "eos_token_id", None) if tokenizer is not None else None

    def need(self, name: str) -> Any:
        if self.t is None:
            raise _Bad(
                name, "is text but no tokenizer was given (pass tokenizer=, or pre-tokenised *_ids fields)"
            )
        return self.t

    def prompt(self, name: str, v: Any) -> list[int]:
        if isinstance(v, str):
            return list(self.need(name)(v, add_special_tokens=True)["input_ids"])
        if _is_messages(v):
            _check_messages(name, v)
            text = self.need(name).apply_chat_template(v, tokenize=False, add_generation_prompt=True)
            return list(self.t(text, add_special_tokens=False)["input_ids"])
        raise _Bad(name, f"must be a string or a list of role/content messages; got {type(v).__name__}")


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _joint(
    tk: _Tok, prompt: Any, completions: list[Any], names: list[str], report: DataReport
) -> tuple[list[int], list[list[int]]]:
    """Prompt and completions tokenised as TRL 1.16 does: ``prompt`` alone and ``prompt + completion`` jointly,
    cut where the token sequences diverge (so no token straddles the boundary: a prompt ending mid-word or in a
    space gives its last piece to the completion). Rows where the cut falls inside the prompt are counted in
    ``prompt_token_cuts`` and warned about once. Strings get EOS appended; messages go through the chat template
    (prompt with the generation prompt, prompt + completion without)."""
    if isinstance(prompt, str):
        for name, c in zip(names, completions, strict=True):
            if not isinstance(c, str):
                raise _Bad(name, "is a list of messages but the prompt is a string")
        t = tk.need(names[0])
        p_ids = list(t(prompt, add_special_tokens=True)["input_ids"])
        fulls = [list(t(prompt + c, add_special_tokens=True)["input_ids"]) for c in completions]
    elif _is_messages(prompt):
        _check_messages("prompt", prompt)
        t = tk.need(names[0])
        for name, c in zip(names, completions, strict=True):
            if not _is_messages(c):
                raise _Bad(name, "is not a list of messages but the prompt is")
            _check_messages(name, c)
        head = t.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        for name, c in zip(names, completions, strict=True):
            full = t.apply_chat_template(list(prompt) + list(c), tokenize=False)
            if not full.startswith(head):
                roles = [m["role"] for m in prompt] + [m["role"] for m in c]
                hint = (
                    f"; the completion's role is {c[0]['role']!r}: a completion is the reply to the prompt "
                    "(usually role 'assistant')"
                    if c[0]["role"] == prompt[-1]["role"] or c[0]["role"] in ("user", "system")
                    else ""
                )
                raise _Bad(
                    name,
                    "the chat template does not render the prompt as a prefix of prompt+completion "
                    f"(roles {roles}){hint}",
                )
        p_ids = list(t(head, add_special_tokens=False)["input_ids"])
        fulls = [
            list(
                t(t.apply_chat_template(list(prompt) + list(c), tokenize=False), add_special_tokens=False)[
                    "input_ids"
                ]
            )
            for c in completions
        ]
    else:
        raise _Bad(
            "prompt", f"must be a string or a list of role/content messages; got {type(prompt).__name__}"
        )
    k = min(_common_prefix(p_ids, f) for f in fulls)
    if k < len(p_ids):
        report.prompt_token_cuts += 1
    if k == 0:
        raise _Bad(
            "prompt", "shares no token with prompt + completion (is the tokenizer or template unusual?)"
        )
    comps = []
    for name, f in zip(names, fulls, strict=True):
        c = f[k:]
        if isinstance(prompt, str) and tk.eos is not None and (not c or c[-1] != tk.eos):
            c.append(tk.eos)
        if not c:
            raise _Bad(name, "renders to no tokens")
        comps.append(c)
    return p_ids[:k], comps


def _implicit_prompt(chosen: Any, rejected: Any) -> tuple[Any, Any, Any]:
    """Split the shared prefix off chosen/rejected (TRL's ``extract_prompt``)."""
    if _is_messages(chosen) and _is_messages(rejected):
        k = 0
        while k < min(len(chosen), len(rejected)) and chosen[k] == rejected[k]:
            k += 1
        if k == 0:
            raise _Bad("prompt", "is missing and chosen/rejected share no leading messages")
        return chosen[:k], chosen[k:], rejected[k:]
    if isinstance(chosen, str) and isinstance(rejected, str):
        k = 0
        while k < min(len(chosen), len(rejected)) and chosen[k] == rejected[k]:
            k += 1
        if k > 0 and k < len(chosen) and chosen[k - 1] == " ":
            k -= 1
        if k == 0:
            raise _Bad("prompt", "is missing and chosen/rejected share no common prefix")
        return chosen[:k], chosen[k:], rejected[k:]
    raise _Bad("chosen", "chosen and rejected must both be strings or both lists of messages")


# --- per-mode parsing ---------------------------------------------------------------------------------------------


def _paired(rec: Record, tk: _Tok, report: DataReport) -> tuple[list[int], list[int], list[int]]:
    f = rec.fields
    if "chosen_ids" in f or "rejected_ids" in f:
        p = _ids("prompt_ids", _get(rec, "prompt_ids"), tk.vocab)
        return (
            p,
            _ids("chosen_ids", _get(rec, "chosen_ids"), tk.vocab),
            _ids("rejected_ids", _get(rec, "rejected_ids"), tk.vocab),
        )
    chosen, rejected = _get(rec, "chosen"), _get(rec, "rejected")
    if "prompt" in f:
        prompt = _get(rec, "prompt")
    else:
        prompt, chosen, rejected = _implicit_prompt(chosen, rejected)
        report.implicit_prompts += 1
        if not chosen or not rejected:
            raise _Bad("chosen" if not chosen else "rejected", "is empty after removing the shared prompt")
    p, (c, r) = _joint(tk, prompt, [chosen, rejected], ["chosen", "rejected"], report)
    return p, c, r


def _single(rec: Record, tk: _Tok, report: DataReport) -> tuple[list[int], list[int]]:
    f = rec.fields
    if "completion_ids" in f or "prompt_ids" in f:
        return _ids("prompt_ids", _get(rec, "prompt_ids"), tk.vocab), _ids(
            "completion_ids", _get(rec, "completion_ids"), tk.vocab
        )
    p, (c,) = _joint(tk, _get(rec, "prompt"), [_get(rec, "completion")], ["completion"], report)
    return p, c


def _assistant_turns(
    tk: _Tok, msgs: list[dict[str, Any]], report: DataReport
) -> tuple[list[int], list[int], list[int]]:
    """A conversation for SFT on every assistant turn: the prompt is everything before the first assistant
    message (with the generation prompt), the completion the rest of the conversation, and the mask 1 on the
    tokens of assistant turns (content and end-of-turn as the chat template renders them), 0 on later user or
    system turns. Spans come from rendering each prefix of the conversation; tokens are assigned by their
    character offsets in the one tokenisation of the whole conversation."""
    t = tk.need("messages")
    roles = [m["role"] for m in msgs]
    if "assistant" not in roles:
        raise _Bad("messages", "has no assistant message to train on")
    first = roles.index("assistant")
    if first == 0:
        raise _Bad("messages", "starts with an assistant message: the first assistant turn needs a prompt")
    full = t.apply_chat_template(msgs, tokenize=False)
    spans = []
    for j, role in enumerate(roles):
        if role != "assistant":
            continue
        start = t.apply_chat_template(msgs[:j], tokenize=False, add_generation_prompt=True)
        end = t.apply_chat_template(msgs[: j + 1], tokenize=False)
        if not full.startswith(start) or not full.startswith(end):
            raise _Bad(
                "messages",
                f"the chat template does not render messages 0..{j} as a prefix of the conversation",
            )
        spans.append((len(start), len(end)))
    enc = t(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), list(enc["offset_mapping"])
    head = list(t(t.apply_chat_template(msgs[:first], tokenize=False, add_generation_prompt=True),
                  add_special_tokens=False)["input_ids"])  # fmt: skip
    k = _common_prefix(head, ids)
    if k < len(head):
        report.prompt_token_cuts += 1
    mask = [int(any(s <= off[0] < e for s, e in spans)) for off in offsets[k:]]
    if not any(mask):
        raise _Bad("messages", "no assistant token is left after the prompt")
    return ids[:k], ids[k:], mask


def _sft(
    rec: Record, tk: _Tok, report: DataReport, assistant_turns: str = "all"
) -> tuple[list[int], list[int], list[int] | None]:
    f = rec.fields
    if "text" in f:
        v = _get(rec, "text")
        if not isinstance(v, str):
            raise _Bad("text", f"must be a string; got {type(v).__name__}")
        t = tk.need("text")
        ids = list(t(v, add_special_tokens=True)["input_ids"])
        if tk.eos is not None:
            ids.append(tk.eos)
        if len(ids) < 2:
            raise _Bad("text", "is too short: needs at least two tokens")
        return ids[:1], ids[1:], None
    if "messages" in f:
        msgs = _get(rec, "messages")
        if not _is_messages(msgs):
            raise _Bad("messages", f"must be a list of role/content messages; got {type(msgs).__name__}")
        _check_messages("messages", msgs)
        if len(msgs) < 2:
            raise _Bad("messages", "needs at least a prompt message and a final (completion) message")
        if assistant_turns == "all":
            return _assistant_turns(tk, msgs, report)
        p, (c,) = _joint(tk, msgs[:-1], [msgs[-1:]], ["messages"], report)
        return p, c, None
    if "chosen" in f or "chosen_ids" in f:
        p, c, _ = _paired(rec, tk, DataReport())
        return p, c, None
    return (*_single(rec, tk, report), None)


@dataclass(frozen=True)
class _Limits:
    max_length: int | None
    max_prompt_length: int | None
    max_completion_length: int | None
    mode: str  # truncation_mode


def _fit(
    prompt: list[int], comp: list[int], mask: list[int] | None, lim: _Limits, report: DataReport
) -> tuple[list[int], list[int], list[int] | None, int]:
    """One ``prompt + completion`` sequence cut as TRL 1.16 cuts it (``DataCollatorForPreference`` /
    ``SFTTrainer``: ``seq[:max_length]`` under ``keep_start``, ``seq[-max_length:]`` under ``keep_end``), after the
    optional ``max_prompt_length`` / ``max_completion_length`` cuts. Returns the kept prompt, completion, mask and
    the number of tokens removed, and counts them in ``report``. Under ``keep_end`` a cut past the prompt's end
    leaves the window's first token as the prompt: it is never predicted, in TRL's batch either (the loss scores
    tokens 1.. of a sequence), so the scored tokens are TRL's."""
    cut = cut_p = cut_c = 0
    if lim.max_prompt_length is not None and len(prompt) > lim.max_prompt_length:
        n = len(prompt) - lim.max_prompt_length
        prompt = prompt[n:] if lim.mode == "keep_end" else prompt[: lim.max_prompt_length]
        cut_p += n
    if lim.max_completion_length is not None and len(comp) > lim.max_completion_length:
        cut_c += len(comp) - lim.max_completion_length
        comp = comp[: lim.max_completion_length]
        mask = mask[: lim.max_completion_length] if mask is not None else None
    L = lim.max_length
    over = len(prompt) + len(comp) - L if L is not None else 0
    if over > 0:
        report.truncated_sequences += 1
        if lim.mode == "keep_start":
            if len(prompt) >= L:
                raise _Bad(
                    "prompt",
                    f"is {len(prompt)} tokens, filling max_length={L}: with truncation_mode keep_start no "
                    "completion token is left to train on (TRL drops such rows; --skip-bad-rows skips them, or "
                    "raise --max-length, or pass --max-prompt-length to cut prompts)",
                )
            room = L - len(prompt)
            comp, mask = comp[:room], (mask[:room] if mask is not None else None)
            cut_c += over
        elif over < len(prompt):
            prompt = prompt[over:]
            cut_p += over
        else:  # the whole prompt and the completion's start go; the window's first token stands as the prompt
            k = over - len(prompt)
            cut_p += len(prompt)
            cut_c += k
            prompt, comp = comp[k : k + 1], comp[k + 1 :]
            mask = mask[k + 1 :] if mask is not None else None
    report.truncated_prompts += cut_p > 0
    report.truncated_completions += cut_c > 0
    cut = cut_p + cut_c
    report.truncated_tokens += cut
    return prompt, comp, mask, cut


def _fit_prompt(prompt: list[int], lim: _Limits, report: DataReport) -> list[int]:
    """An online prompt: ``max_prompt_length`` as for the others; it must leave room for one generated token
    within ``max_length`` (``keep_end`` keeps its last ``max_length - 1`` tokens, ``keep_start`` refuses it)."""
    n0 = len(prompt)
    if lim.max_prompt_length is not None and len(prompt) > lim.max_prompt_length:
        n = len(prompt) - lim.max_prompt_length
        prompt = prompt[n:] if lim.mode == "keep_end" else prompt[: lim.max_prompt_length]
    if lim.max_length is not None and len(prompt) >= lim.max_length:
        if lim.mode == "keep_start":
            raise _Bad(
                "prompt",
                f"is {len(prompt)} tokens, filling max_length={lim.max_length}: no room to generate a completion",
            )
        prompt = prompt[len(prompt) - lim.max_length + 1 :]
    if len(prompt) < n0:
        report.truncated_prompts += 1
        report.truncated_tokens += n0 - len(prompt)
        report.truncated += 1
    return prompt


@dataclass(frozen=True)
class _Settings:
    mode: str
    lim: _Limits
    assistant_turns: str
    extra_columns: Callable[[dict[str, Any]], dict[str, Any]] | None


def _row(
    rec: Record, tk: _Tok, st: _Settings
) -> tuple[list[Example], list[list[int]], DataReport, str | None]:
    """One row -> its examples, the untruncated completions of unpaired examples (KTO's KL pairs them with other
    prompts and truncates afresh, as TRL does), the row's report, and its problem (``None`` when good)."""
    report = DataReport()
    mode, lim = st.mode, st.lim
    out: list[Example] = []
    full: list[list[int]] = []
    try:
        extras = {}
        if st.extra_columns is not None:
            try:
                extras = st.extra_columns(rec.fields)
            except ValueError as exc:
                name = str(exc).split("'")[1] if str(exc).startswith("field '") else "?"
                raise _Bad(name, str(exc).split(": ", 1)[-1]) from None
        cut = 0
        if mode == "paired":
            p, c, r = _paired(rec, tk, report)
            pc, c, _, n1 = _fit(p, c, None, lim, report)
            pr, r, _, n2 = _fit(p, r, None, lim, report)
            cut = n1 + n2
            if c == r and pc == pr:  # no preference to learn: the pair's loss gradient is zero
                report.identical_pairs.append(rec.where)
            out.append(
                Example(
                    pc,
                    chosen_ids=c,
                    rejected_ids=r,
                    where=rec.where,
                    rejected_prompt_ids=pr if pr != pc else None,
                )
            )
        elif mode == "unpaired":
            if "label" not in rec.fields and ("chosen" in rec.fields or "chosen_ids" in rec.fields):
                p, c, r = _paired(rec, tk, report)
                report.split_pairs += 1
                items = [(c, True), (r, False)]
            else:
                p, c = _single(rec, tk, report)
                lab = _label(_get(rec, "label")) if "label" in rec.fields or not extras else None
                items = [(c, lab)]
            for comp, lab in items:
                pp, cc, _, n = _fit(p, comp, None, lim, report)
                cut += n
                full.append(comp)
                out.append(Example(pp, completion_ids=cc, label=lab, where=rec.where))
        elif mode == "sft":
            p, c, m = _sft(rec, tk, report, st.assistant_turns)
            p, c, m, cut = _fit(p, c, m, lim, report)
            if m is not None and not any(m):
                raise _Bad("messages", "no assistant token is left after truncation to max_length")
            out.append(Example(p, completion_ids=c, where=rec.where, target_mask=m))
        else:  # online
            if "prompt_ids" in rec.fields:
                p = _ids("prompt_ids", _get(rec, "prompt_ids"), tk.vocab)
            else:
                p = tk.prompt("prompt", _get(rec, "prompt"))
            out.append(Example(_fit_prompt(p, lim, report), where=rec.where))
        report.truncated += cut > 0
    except _Bad as exc:
        return [], [], DataReport(), f"{rec.where}: {exc}"
    for ex in out:
        ex.extras = dict(extras)
    return out, full, report, None


def _run_rows(
    records: list[Record], tk: _Tok, st: _Settings, num_proc: int | None
) -> list[tuple[list[Example], list[list[int]], DataReport, str | None]]:
    """``_row`` over every record: in this process, or through ``datasets.Dataset.map(num_proc=...)`` (the same
    function on shards of the row indices in worker processes; results come back in row order)."""
    if not num_proc or num_proc < 2 or len(records) < 2:
        return [_row(rec, tk, st) for rec in records]
    import pickle

    import datasets

    def work(batch: dict[str, list[int]]) -> dict[str, list[bytes]]:
        # our own in-memory results between this process and its workers (never read from a user's file)
        return {"r": [pickle.dumps(_row(records[i], tk, st)) for i in batch["i"]]}

    ds = datasets.Dataset.from_dict({"i": list(range(len(records)))})
    done = ds.map(
        work,
        batched=True,
        batch_size=max(1, min(1000, len(records) // num_proc)),
        num_proc=min(num_proc, len(records)),
        remove_columns=["i"],
        desc="Tokenizing",
        load_from_cache_file=False,
    )
    return [pickle.loads(b) for b in done["r"]]  # noqa: S301 - written by _row above, in this run


def prepare(
    data: Any,
    *,
    mode: str,
    tokenizer: Any = None,
    max_length: int | None = 1024,
    max_prompt_length: int | None = None,
    max_completion_length: int | None = None,
    truncation_mode: str = "keep_start",
    skip_bad_rows: bool = False,
    vocab_size: int | None = None,
    with_kl: bool = False,
    extra_columns: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    kl_group: int | None = None,
    assistant_turns: str = "all",
    num_proc: int | None = None,
) -> Prepared:
    """Read, validate and tokenise ``data`` for ``mode`` (``sft``, ``paired``, ``unpaired``, ``online``).

    Every bad row raises :class:`DataError` (all problems listed) unless ``skip_bad_rows``, which warns with the
    count and reasons (also in ``report.skipped``). Sequences longer than ``max_length`` are truncated as TRL 1.16
    does (see the module docstring) and counted. ``with_kl`` gives each unpaired example a mismatched KL
    completion as TRL's KTOTrainer does: the completions of each chunk of ``kl_group`` rows (data order) rotated
    by one, so example i gets example i-1's completion (the first of a chunk gets its last), truncated with the
    example's prompt to ``max_length`` (TRL's KTO collator cuts the KL sequence on its own).
    ``assistant_turns`` (SFT ``messages``): ``"all"`` trains every assistant turn of the conversation (the
    prompt is what precedes the first one; later user turns are context, masked out of the loss — TRL's
    ``assistant_only_loss``), ``"last"`` only the final message. ``extra_columns(fields)`` reads
    a row's extra columns (an objective's declared fields, ``alignkit.train.fields``) into ``Example.extras``;
    it raises ``ValueError("field 'x': ...")`` on a bad value, reported with the file and row. ``num_proc`` > 1
    tokenises through ``datasets.Dataset.map(num_proc=...)`` (TRL's ``dataset_num_proc``): the same token ids as
    the serial path. ``data`` may also be the ``Record`` list :func:`alignkit.data.loading.load_records` returned.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    if assistant_turns not in ("all", "last"):
        raise ValueError(f"assistant_turns must be 'all' or 'last'; got {assistant_turns!r}")
    if truncation_mode not in ("keep_start", "keep_end"):
        raise ValueError(f"truncation_mode must be 'keep_start' or 'keep_end'; got {truncation_mode!r}")
    if max_length is not None and max_length < 2:
        raise ValueError(f"max_length must be >= 2; got {max_length}")
    for name, v in (
        ("max_prompt_length", max_prompt_length),
        ("max_completion_length", max_completion_length),
    ):
        if v is not None and v < 1:
            raise ValueError(f"{name} must be >= 1; got {v}")
    if isinstance(data, list) and data and all(isinstance(r, Record) for r in data):
        records = data
    else:
        records = load_records(data)
    report = DataReport(rows=len(records))
    if vocab_size is None and tokenizer is not None:
        vocab_size = len(tokenizer)
    tk = _Tok(tokenizer, vocab_size)
    lim = _Limits(max_length, max_prompt_length, max_completion_length, truncation_mode)
    st = _Settings(mode, lim, assistant_turns, extra_columns)
    examples: list[Example] = []
    fulls: list[list[int]] = []
    problems: list[str] = []
    for exs, full, rep, problem in _run_rows(records, tk, st, num_proc):
        if problem is not None:
            problems.append(problem)
            continue
        examples += exs
        fulls += full
        report.add(rep)
    report.rows = len(records)
    if problems and not skip_bad_rows:
        raise DataError(problems)
    if problems:
        report.skipped = problems
        warnings.warn(
            f"skipped {len(problems)} bad row(s) of {len(records)}: "
            + "; ".join(problems[:5])
            + (" ..." if len(problems) > 5 else ""),
            stacklevel=2,
        )
    source = records[0].source if records else (str(data) if isinstance(data, (str, os.PathLike)) else "data")
    if not records:
        raise UserError(f"{source}: no rows (the data is empty)")
    if not examples:
        raise UserError(f"{source}: no usable training examples in {len(records)} row(s)")
    if report.identical_pairs:
        n = len(report.identical_pairs)
        if n == len(examples):
            raise UserError(
                f"{source}: every pair ({n}) has chosen == rejected after tokenisation: there is no preference "
                "to learn (the loss gradient is zero)"
            )
        warnings.warn(
            f"{n} of {len(examples)} pair(s) have chosen == rejected after tokenisation (no preference to learn; "
            f"counted in data_report.json): {', '.join(report.identical_pairs[:5])}"
            + (" ..." if n > 5 else ""),
            stacklevel=2,
        )
    if with_kl and mode == "unpaired":
        # TRL's KTO: completions rotated by +1 within each chunk of ``kl_group`` rows (its per-device batch size),
        # in data order: (x_1, y_n), (x_2, y_1), ..., (x_n, y_{n-1}); one chunk = the whole data without a group.
        # The KL sequence is the example's prompt + the other's whole completion, cut to max_length on its own.
        n = len(examples)
        group = kl_group or n
        for start in range(0, n, group):
            chunk = examples[start : start + group]
            comps = fulls[start : start + group]
            for j, ex in enumerate(chunk):
                kl = comps[j - 1]
                if max_completion_length is not None:
                    kl = kl[:max_completion_length]
                room = max_length - len(ex.prompt_ids) if max_length is not None else len(kl)
                if len(kl) > room:
                    kl = kl[-room:] if truncation_mode == "keep_end" else kl[:room]
                ex.kl_completion_ids = kl
    if report.prompt_token_cuts:
        warnings.warn(
            f"{report.prompt_token_cuts} row(s): the tokenised prompt is not a prefix of the tokenised prompt + "
            "completion (a prompt ending mid-word or in a space, or a chat template rendering the prompt differently);"
            " as TRL does, the completion starts where they diverge and that end of the prompt is left out",
            stacklevel=2,
        )
    if report.truncated:
        warnings.warn(
            f"truncated {report.truncated} example(s) to max_length={max_length} ({truncation_mode}): "
            f"{report.truncated_sequences} sequence(s), {report.truncated_prompts} prompt(s), "
            f"{report.truncated_completions} completion(s), {report.truncated_tokens} tokens cut "
            "(counted in data_report.json)",
            stacklevel=2,
        )
    report.examples = len(examples)
    return Prepared(mode=mode, examples=examples, report=report)
