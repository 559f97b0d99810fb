"""``alignkit generate``: sample completions, plainly or through a registered decoding-time alignment method.

    alignkit generate --model PATH --prompt "Hello" --max-new-tokens 32
    alignkit generate --model ALIGNED --ref-model SFT --decoder dera --hp lam=0.5 --prompts prompts.txt

Prompts come from ``--prompt`` (repeatable) and/or ``--prompts FILE`` (one per line, or JSON lines with a
``prompt`` field). Output: one JSON line per prompt, ``{"prompt": ..., "completions": [...]}``, on stdout or
``--output``. ``alignkit list --kind decoder`` lists the decoders; ``alignkit explain NAME`` their parameters.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any


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
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--num-samples", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", help="write JSON lines here instead of stdout")
    p.set_defaults(func=run)


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
    prompts = list(args.prompt)
    if args.prompts:
        path = pathlib.Path(args.prompts)
        if not path.exists():
            raise FileNotFoundError(f"--prompts: no file {path}")
        for i, line in enumerate(path.read_text().splitlines()):
            if not line.strip():
                continue
            if line.lstrip().startswith("{"):
                row = json.loads(line)
                if "prompt" not in row:
                    raise ValueError(f"--prompts {path} line {i + 1}: JSON row has no 'prompt' field")
                prompts.append(str(row["prompt"]))
            else:
                prompts.append(line)
    if not prompts:
        raise ValueError("no prompts: give --prompt TEXT or --prompts FILE")
    return prompts


def _load(path: str) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).eval()


def run(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    from alignkit.decoding import DecodeContext, sample_text
    from alignkit.registry import get

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
    elif hp:
        raise ValueError("--hp given without --decoder")
    model = _load(args.model)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if decoder is None:
        outs = sample_text(model, tokenizer, prompts, **sampling)
    else:
        ctx = DecodeContext(ref_model=_load(args.ref_model) if args.ref_model else None, sampling=sampling)
        outs = decoder(model, tokenizer, prompts, ctx, **hp)
    lines = [
        json.dumps({"prompt": p, "completions": c}, ensure_ascii=False)
        for p, c in zip(prompts, outs, strict=True)
    ]
    text = "\n".join(lines) + "\n"
    if args.output:
        pathlib.Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0
