"""Decoding-time alignment at real lengths: DeRa (two models per token) against plain sampling of one model.

    python benchmarks/decode_speed.py                          # 256 and 1024 new tokens, 3 repeats, 1 thread
    python benchmarks/decode_speed.py --new-tokens 64 --repeats 1 --uncached   # smoke run, with the old path
    python benchmarks/decode_speed.py --device cuda --json benchmarks/cuda/decode_speed.json

Both models have the testbed base model's shape (``alignkit.testbed.model.BaseModelConfig`` defaults: Llama, 4
layers, d=128, 4 heads, FFN 352, vocabulary 2048) with random weights (seeds 1 and 2) and room for 2048
positions; prompts are ``--prompt-tokens`` words of ``dpo_vs_trl.build_tokenizer``'s one-token-per-word
vocabulary. Decoding is greedy and the pad, EOS and unk rows of each LM head are zeroed, so no completion stops
early or holds a token that decodes to nothing (checked: every completion has exactly ``--new-tokens`` tokens)
and every system decodes the same number of tokens.

Systems, each through alignkit's Python API with the same prompts and sampling settings:
  plain      ``alignkit.engine.generation.generate(model, ...)``: one model, ``model.generate`` with its KV cache
  dera       ``ak.get("dera")(model, tok, prompts, DecodeContext(ref_model=ref, ...), lam=0.5)``: the aligned
             model samples through ``generate``; the reference runs with its own KV cache (the default)
  dera-nocache (``--uncached``) the same with ``DeRaProcessor(use_cache=False)``: the reference re-runs the whole
             prefix every token (the code before issue #21)

Timing: wall-clock and CPU time (``time.process_time``) of the whole call (tokenisation to decoded text), after
one short warm-up call of each system; the systems alternate within every repeat and each figure is the median
over repeats. ``ratio`` = DeRa / plain wall-clock time in the same run, ``ratio_cpu`` the same in CPU time (with
one thread on a shared CPU, the steadier figure). The issue's target is <= 2.2 (two forwards per token).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def build_models(vocab: int, device: str):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from alignkit.testbed.model import BaseModelConfig

    base = BaseModelConfig()
    out = []
    for seed in (1, 2):
        cfg = LlamaConfig(
            vocab_size=vocab,
            hidden_size=base.hidden_size,
            intermediate_size=base.intermediate_size,
            num_hidden_layers=base.num_layers,
            num_attention_heads=base.num_heads,
            num_key_value_heads=base.num_heads,
            max_position_embeddings=2048,
            tie_word_embeddings=False,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=1,
        )
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
        with torch.no_grad():  # pad, EOS, unk logits 0: greedy never picks them over ~2k random logits
            model.lm_head.weight[:3].zero_()
        out.append(model.to(device).eval())
    return out


def prompts_of(n: int, length: int, vocab: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(f"w{rng.randrange(vocab - 3)}" for _ in range(length)) for _ in range(n)]


def timed(fn) -> tuple[float, float, object]:
    """Wall-clock and CPU seconds of ``fn()`` (CPU time: this process's; on a shared machine it leaves out the
    time spent waiting for a core, so with one thread it is the steadier figure)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t, time.process_time() - c, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new-tokens", default="256,1024", help="comma-separated completion lengths")
    ap.add_argument("--prompts", type=int, default=1, help="prompts decoded together (one batch)")
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--uncached", action="store_true", help="also time DeRa with the reference uncached")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args()

    import torch
    from dpo_vs_trl import build_tokenizer

    import alignkit as ak
    from alignkit.decoding import DecodeContext
    from alignkit.decoding._common import sample_text
    from alignkit.decoding.dera import DeRaProcessor
    from alignkit.engine.generation import generate

    torch.set_num_threads(args.threads)
    vocab = 2048
    tok = build_tokenizer(vocab)
    aligned, ref = build_models(vocab, args.device)
    prompts = prompts_of(args.prompts, args.prompt_tokens, vocab)
    lam = 0.5
    dera = ak.get("dera")

    def systems(n: int) -> dict:
        s = dict(max_new_tokens=n, temperature=0.0, batch_size=max(1, args.prompts))
        ctx = DecodeContext(ref_model=ref, sampling=s)
        out = {
            "plain": lambda: generate(aligned, tok, prompts, progress=False, **s),
            "dera": lambda: dera(aligned, tok, prompts, ctx, lam=lam),
        }
        if args.uncached:
            out["dera-nocache"] = lambda: sample_text(
                aligned, tok, prompts, logits_processor=DeRaProcessor(ref, lam, 0, use_cache=False), **s
            )
        return out

    for fn in systems(8).values():  # warm-up: allocator, kernels, lazy imports
        fn()
    lengths = [int(x) for x in args.new_tokens.split(",") if x]
    results = []
    for n in lengths:
        fns = systems(n)
        times: dict[str, list[float]] = {k: [] for k in fns}
        cpu: dict[str, list[float]] = {k: [] for k in fns}
        for rep in range(args.repeats):
            order = list(fns) if rep % 2 == 0 else list(reversed(fns))
            for name in order:
                t, c, out = timed(fns[name])
                got = [len(tok(y, add_special_tokens=False)["input_ids"]) for per in out for y in per]
                if got != [n] * len(got):
                    raise RuntimeError(f"{name}: completions of {got} tokens, expected {n} each")
                times[name].append(t)
                cpu[name].append(c)
        med = {k: statistics.median(v) for k, v in times.items()}
        med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
        row = dict(
            new_tokens=n,
            prompts=args.prompts,
            prompt_tokens=args.prompt_tokens,
            seconds=med,
            cpu_seconds=med_cpu,
            tokens_per_s={k: args.prompts * n / v for k, v in med.items()},
            runs=times,
            cpu_runs=cpu,
            ratio=med["dera"] / med["plain"],
            ratio_cpu=med_cpu["dera"] / med_cpu["plain"],
        )
        extra = ""
        if "dera-nocache" in med:
            row["ratio_nocache"] = med["dera-nocache"] / med["plain"]
            row["ratio_nocache_cpu"] = med_cpu["dera-nocache"] / med_cpu["plain"]
            extra = (
                f", uncached DeRa {med['dera-nocache']:.2f} s (x{row['ratio_nocache']:.2f}; "
                f"CPU time x{row['ratio_nocache_cpu']:.2f})"
            )
        results.append(row)
        print(
            f"{n:>5} new tokens x {args.prompts} prompt(s): plain {med['plain']:.2f} s "
            f"({row['tokens_per_s']['plain']:.0f} tok/s), DeRa {med['dera']:.2f} s "
            f"({row['tokens_per_s']['dera']:.0f} tok/s) = x{row['ratio']:.2f} one model's time "
            f"(CPU time: plain {med_cpu['plain']:.2f} s, DeRa {med_cpu['dera']:.2f} s, x{row['ratio_cpu']:.2f})"
            f"{extra}",
            flush=True,
        )
    meta = dict(
        device=args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        threads=args.threads,
        torch=torch.__version__,
        platform=platform.platform(),
        load_avg=os.getloadavg(),
        argv=sys.argv[1:],
        model="Llama 4 layers d=128 heads=4 FFN 352 vocab 2048 (testbed BaseModelConfig shape), random weights",
    )
    if args.json:
        Path(args.json).write_text(json.dumps(dict(meta=meta, results=results), indent=1))


if __name__ == "__main__":
    main()
