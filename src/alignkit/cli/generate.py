"""``alignkit generate``: sample completions, plainly or through a registered decoding-time alignment method.

    alignkit generate --model PATH --prompt "Hello" --max-new-tokens 32
    alignkit generate --model ALIGNED --ref-model SFT --decoder dera --hp lam=0.5 --prompts prompts.txt
    alignkit generate --model SFT --decoder alignment_resampling --reward sentiment --hp n=4 --prompt "O, my"
    alignkit generate --model M --decoder lexical_shortlist --lex-table lex.tsv --hp k=20 --num-samples 4

Prompts come from ``--prompt`` (repeatable) and/or ``--prompts FILE`` (one per line, or JSON lines with a
``prompt`` field). ``--reward NAME`` sets the reward ``r(prompt, completion)`` of decoders that need one
(alignment_resampling, darwin, ...): ``sentiment`` (the testbed task's gold reward: VADER compound score of the
completion, in [-1, 1]), ``arith`` (1.0 if the completion is the answer of an ``A+B=`` / ``A-B=`` prompt, else
0.0), or ``module:function`` (any importable callable ``(prompt: str, completion: str) -> float``).
``--lex-table PATH`` gives lexical_shortlist its table p(target | source): a ``.json`` file
``{"source": {"target": p, ...}, ...}`` (or a list of ``{"source", "target", "prob"}`` objects), or a TSV file
of ``source<TAB>target<TAB>prob`` rows (blank lines, ``#`` comments and a ``source target prob`` header are
skipped); a source/target is a token id (an integer, or a string of digits) or a token of the model's
tokenizer vocabulary. Output: one JSON line per prompt, ``{"prompt": ..., "completions": [...], "decoder": NAME,
"hyper_parameters": {...}, "sampling": {...}}`` plus ``"rewards"`` (one per completion, with ``--reward``) and
``"watermark_z"`` (alignment_resampling), on stdout or ``--output``. ``alignkit list --kind decoder`` lists the decoders; ``alignkit explain NAME`` their parameters.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import re
import sys
from collections.abc import Callable
from typing import Any

from alignkit.cli import import_callable

RewardFn = Callable[[str, str], float]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="sample completions, optionally through a decoding-time alignment method (--decoder)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", required=True, help="HF model folder or hub id (the aligned model for dera)")
    p.add_argument("--ref-model", help="reference / unaligned model (dera, clm, inra)")
    p.add_argument("--decoder", help="registered decoder name (default: plain sampling)")
    p.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE", help="decoder hyper-parameter")
    p.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    p.add_argument("--prompts", help="file: one prompt per line, or JSON lines with a 'prompt' field")
    p.add_argument("--max-new-tokens", type=int, default=64, help="tokens sampled per completion")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature; 0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1.0 = off)")
    p.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest tokens (0 = off)")
    p.add_argument("--num-samples", type=int, default=1, help="completions per prompt")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument(
        "--reward",
        help="reward for decoders that need one: sentiment | arith | module:function (see above)",
    )
    p.add_argument("--lex-table", help="lexical_shortlist table p(target | source): .json or TSV (see above)")
    p.add_argument(
        "--prompt-file", help="urial: the in-context preamble (text file), e.g. the paper's prompt"
    )
    p.add_argument(
        "--chat",
        action="store_true",
        help="render each prompt as a user turn through the tokenizer's chat template",
    )
    p.add_argument("--system-prompt", help="system message for --chat (implies --chat)")
    p.add_argument(
        "--aligner-model", help="aligners: the rewriting model's folder (its tokenizer is used for it)"
    )
    p.add_argument(
        "--aligner-prefix", help="aligner_prefix: a trained prefix (.safetensors, save_aligner_prefix)"
    )
    p.add_argument(
        "--ptst",
        action="store_true",
        help="PTST (arXiv:2402.18540): --chat with the safety system prompt (Llama-2-chat's unless --system-prompt)",
    )
    p.add_argument("--output", help="write JSON lines here instead of stdout")
    p.set_defaults(func=run)


def render_chat(prompts: list[str], tokenizer: Any, system_prompt: str | None, ptst: bool) -> list[str]:
    """Prompts as chat turns (``--chat``/``--system-prompt``/``--ptst``), rendered with a generation prompt."""
    from alignkit.safety.ptst import LLAMA2_SAFETY_PROMPT, ptst_messages

    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "--chat/--system-prompt/--ptst need a tokenizer with a chat template; this one has none"
        )
    out = []
    for p in prompts:
        if ptst:
            msgs = ptst_messages(p, stage="test", safety_prompt=system_prompt or LLAMA2_SAFETY_PROMPT)
        else:
            msgs = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
                {"role": "user", "content": p}
            ]
        out.append(tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))
    return out


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_hp(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--hp {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        out[k.strip().replace("-", "_")] = _value(v)
    return out


def read_prompts(args: argparse.Namespace) -> list[str]:
    """``--prompt`` texts, then ``--prompts FILE`` lines (plain text, or JSON rows with a string ``prompt``); a bad
    line is an error naming the file, the line and what is wrong (never a prompt made from a number or a list)."""
    from alignkit.errors import InputFileError

    prompts = list(args.prompt)
    if args.prompts:
        path = pathlib.Path(args.prompts)
        if not path.is_file():
            raise FileNotFoundError(f"--prompts: no file {path}")
        for i, raw in enumerate(path.read_bytes().splitlines(), start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputFileError(
                    f"--prompts {path} line {i}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
                ) from None
            if not line.strip():
                continue
            if line.lstrip().startswith("{"):
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    why = exc.msg.removesuffix(" at")
                    raise InputFileError(
                        f"--prompts {path} line {i}: not valid JSON ({why} at column {exc.colno})"
                    ) from None
                if "prompt" not in row:
                    raise InputFileError(f"--prompts {path} line {i}: JSON row has no 'prompt' field")
                if not isinstance(row["prompt"], str) or not row["prompt"].strip():
                    raise InputFileError(
                        f"--prompts {path} line {i}: field 'prompt' must be a non-empty string; got {row['prompt']!r}"
                    )
                prompts.append(row["prompt"])
            else:
                prompts.append(line)
    if not prompts:
        where = f"--prompts {args.prompts} holds no prompts" if args.prompts else "no prompts"
        raise ValueError(f"{where}: give --prompt TEXT or --prompts FILE")
    return prompts


def _sentiment_reward(prompt: str, completion: str) -> float:
    from alignkit.testbed.tasks import vader_compound

    return vader_compound(completion)


_ARITH = re.compile(r"(\d+)\s*([+-])\s*(\d+)\s*=\s*$")


def _arith_reward(prompt: str, completion: str) -> float:
    m = _ARITH.search(prompt)
    if m is None:
        raise ValueError(f"--reward arith: prompt {prompt!r} does not end in 'A+B=' or 'A-B='")
    from alignkit.testbed.tasks import ArithTask, Prompt

    answer = ArithTask.answer(int(m.group(1)), m.group(2), int(m.group(3)))
    return ArithTask().gold_reward(Prompt(prompt, [], {"answer": answer}), completion)


#: the named rewards of ``--reward`` (testbed tasks whose gold reward needs only the prompt text)
REWARDS: dict[str, RewardFn] = {"sentiment": _sentiment_reward, "arith": _arith_reward}


def resolve_reward(name: str) -> RewardFn:
    """The reward function ``(prompt, completion) -> float`` named by ``--reward``: a key of :data:`REWARDS`
    or ``module:function``."""
    if name in REWARDS:
        return REWARDS[name]
    if ":" not in name:
        raise ValueError(
            f"--reward {name!r}: unknown reward; use one of {', '.join(sorted(REWARDS))} or module:function"
        )
    return import_callable(name, "--reward")


def _token_id(value: Any, tokenizer: Any, where: str, field: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{where}: field {field!r} must be a token id or token; got {value!r}")
    if isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        tid = int(value)
        size = len(tokenizer) if tokenizer is not None else None
        if tid < 0 or (size is not None and tid >= size):
            raise ValueError(f"{where}: field {field!r} token id {tid} is outside the vocabulary [0, {size})")
        return tid
    if isinstance(value, str) and value:
        vocab = tokenizer.get_vocab() if tokenizer is not None else {}
        if value not in vocab:
            raise ValueError(f"{where}: field {field!r} token {value!r} is not in the tokenizer's vocabulary")
        return int(vocab[value])
    raise ValueError(f"{where}: field {field!r} must be a token id or token; got {value!r}")


def _prob(value: Any, where: str) -> float:
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: field 'prob' must be a number; got {value!r}") from None
    if not math.isfinite(p) or p < 0:
        raise ValueError(f"{where}: field 'prob' must be a finite number >= 0; got {value!r}")
    return p


def read_lex_table(path: str | pathlib.Path, tokenizer: Any = None) -> dict[int, dict[int, float]]:
    """Read a lexical table ``{source id: {target id: p(target | source)}}`` for ``lexical_shortlist``.

    ``.json``: ``{"source": {"target": p}}`` or ``[{"source": s, "target": t, "prob": p}, ...]``; anything
    else: TSV rows ``source<TAB>target<TAB>prob``. A source/target is a token id or a token of ``tokenizer``'s
    vocabulary. Errors name the file, row and field.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--lex-table: no file {path}")
    table: dict[int, dict[int, float]] = {}

    def add(s: Any, t: Any, p: Any, where: str) -> None:
        sid = _token_id(s, tokenizer, where, "source")
        tid = _token_id(t, tokenizer, where, "target")
        table.setdefault(sid, {})[tid] = _prob(p, where)

    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"--lex-table {path}: not valid JSON ({exc})") from None
        if isinstance(data, dict):
            for s, row in data.items():
                if not isinstance(row, dict):
                    raise ValueError(
                        f"--lex-table {path} source {s!r}: expected an object {{target: prob}}; got {row!r}"
                    )
                for t, p in row.items():
                    add(s, t, p, f"--lex-table {path} source {s!r} target {t!r}")
        elif isinstance(data, list):
            for i, row in enumerate(data):
                where = f"--lex-table {path} row {i + 1}"
                if not isinstance(row, dict):
                    raise ValueError(f"{where}: expected an object with source, target, prob; got {row!r}")
                for f in ("source", "target", "prob"):
                    if f not in row:
                        raise ValueError(f"{where}: missing field {f!r}")
                add(row["source"], row["target"], row["prob"], where)
        else:
            raise ValueError(f"--lex-table {path}: expected a JSON object or list; got {type(data).__name__}")
    else:
        for i, line in enumerate(path.read_text().splitlines()):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            cols = line.split("\t")
            if i == 0 and [c.strip().lower() for c in cols] == ["source", "target", "prob"]:
                continue
            where = f"--lex-table {path} line {i + 1}"
            if len(cols) != 3:
                raise ValueError(
                    f"{where}: expected 3 tab-separated fields source, target, prob; got {len(cols)}"
                )
            add(cols[0].strip(), cols[1].strip(), cols[2].strip(), where)
    if not table:
        raise ValueError(f"--lex-table {path}: the table is empty")
    return table


#: what a decoder's ``needs:...`` tag asks for, and the flag that supplies it
NEEDS_FLAG = {
    "ref_model": "--ref-model",
    "reward_fn": "--reward",
    "aligner_model": "--aligner-model",
    "lex_table": "--lex-table",
    "trained_prefix": "--aligner-prefix",
}


def check_decoder_flags(decoder: Any, args: argparse.Namespace) -> None:
    """A decoder that needs a reference model, reward, ... without its flag: an error naming the flag (before
    any model is loaded)."""
    for tag in decoder.tags:
        if not tag.startswith("needs:"):
            continue
        need = tag.split(":", 1)[1]
        flag = NEEDS_FLAG.get(need)
        if flag is not None and not getattr(args, flag[2:].replace("-", "_"), None):
            raise ValueError(f"--decoder {decoder.name} needs {flag} (see `alignkit explain {decoder.name}`)")


def scores(
    decoder: Any,
    hp: dict[str, Any],
    reward_fn: RewardFn | None,
    model: Any,
    tokenizer: Any,
    text: str,
    outs: list,
) -> dict[str, Any]:
    """The figures a decoder optimised, per completion: ``rewards`` (``--reward``, scored against the text the
    decoder saw) and, for alignment_resampling, the watermark detection ``watermark_z``."""
    out: dict[str, Any] = {}
    if reward_fn is not None:
        out["rewards"] = [float(reward_fn(text, y)) for y in outs]
    if decoder is not None and decoder.name == "alignment_resampling":
        from alignkit.decoding.watermark_resampling import watermark_z

        settings = decoder.defaults | hp
        vocab = int(model.get_output_embeddings().weight.shape[0])
        out["watermark_z"] = [
            watermark_z(tokenizer, text, y, vocab_size=vocab, gamma=settings["gamma"], key=settings["key"])
            for y in outs
        ]
    return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return repr(v)


def _load(path: str) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).eval()


def run(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    from alignkit.cli._quiet import quiet_transformers
    from alignkit.decoding import DecodeContext, sample_text
    from alignkit.registry import get

    quiet_transformers()

    prompts = read_prompts(args)
    hp = parse_hp(args.hp)
    sampling = dict(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        num_samples=args.num_samples,
        seed=args.seed,
    )
    decoder = None
    if args.decoder:
        decoder = get(args.decoder)
        if decoder.kind != "decoder":
            raise ValueError(f"--decoder {args.decoder!r} is a {decoder.kind}, not a decoder")
        unknown = sorted(set(hp) - set(decoder.defaults))
        if unknown:
            raise ValueError(
                f"decoder {decoder.name!r} has no hyper-parameter {', '.join(map(repr, unknown))}; "
                f"it takes: {', '.join(sorted(decoder.defaults)) or '(none)'}"
            )
    else:
        for flag, value in (
            ("--hp", hp),
            ("--reward", args.reward),
            ("--lex-table", args.lex_table),
            ("--aligner-model", args.aligner_model),
            ("--aligner-prefix", args.aligner_prefix),
            ("--prompt-file", args.prompt_file),
        ):
            if value:
                raise ValueError(f"{flag} given without --decoder")
    if decoder is not None:
        check_decoder_flags(decoder, args)
    reward_fn = resolve_reward(args.reward) if args.reward else None
    model = _load(args.model)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    inputs = prompts
    if args.chat or args.system_prompt or args.ptst:
        inputs = render_chat(prompts, tokenizer, args.system_prompt, args.ptst)
    if decoder is None:
        outs = sample_text(model, tokenizer, inputs, **sampling)
    else:
        extra: dict[str, Any] = {}
        if args.lex_table:
            extra["lex_table"] = read_lex_table(args.lex_table, tokenizer)
        if args.prompt_file:
            extra["prompt_text"] = pathlib.Path(args.prompt_file).read_text()
        if args.aligner_prefix:
            from alignkit.decoding.aligner_prefix import read_aligner_prefix

            extra["aligner_prefix"] = read_aligner_prefix(args.aligner_prefix)
        aligner_model = None
        if args.aligner_model:
            aligner_model = _load(args.aligner_model)
            extra["aligner_tokenizer"] = AutoTokenizer.from_pretrained(args.aligner_model)
        ctx = DecodeContext(
            aligner_model=aligner_model,
            ref_model=_load(args.ref_model) if args.ref_model else None,
            reward_fn=reward_fn,
            sampling=sampling,
            extra=extra,
        )
        outs = decoder(model, tokenizer, inputs, ctx, **hp)
    settings = {
        "decoder": decoder.name if decoder is not None else None,
        "hyper_parameters": decoder.defaults | hp if decoder is not None else {},
        "sampling": sampling,
    }
    lines = []
    for p, x, c in zip(prompts, inputs, outs, strict=True):
        row: dict[str, Any] = {"prompt": p, "completions": c, **settings}
        row.update(scores(decoder, hp, reward_fn, model, tokenizer, x, c))
        lines.append(json.dumps(_jsonable(row), ensure_ascii=False))
    text = "\n".join(lines) + "\n"
    if args.output:
        pathlib.Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0
