"""DPO at the sizes users train: Qwen2.5-shaped models, long sequences, alignkit against TRL 1.16 (+ Liger).

    python benchmarks/gpu_scale.py --device cuda --out benchmarks/cuda     # the GPU run (see run_gpu_scale.sh)
    python benchmarks/gpu_scale.py --toy --out /tmp/gpu_scale               # CPU toy mode (the test runs this)

Every measurement is a worker process of ``dpo_vs_trl.py`` (the same harness: ``ak.train`` with a timing hook
against ``trl.DPOTrainer`` with a timing callback), here with random weights built in-process on the device in the
shapes of Qwen2.5-0.5B / 1.5B / 3B (``SHAPES``; GQA, tied embeddings, vocabulary 151 936), fp32 master weights with
bf16 autocast on CUDA (alignkit ``bf16=True``, TRL ``bf16=True``), AdamW lr 1e-5, sigmoid DPO beta 0.1.

Data: each prompt is shared by its pair's chosen and rejected completion (alignkit's shared-prompt path runs it
once per pair; TRL runs it in both sequences). Table rows draw prompts log-uniformly from 256-2048 tokens and each
completion from 128-1024 (one token per word); the curve uses one pair per step of fixed length ``L`` = prompt
``L/2`` + completion ``L/2`` (chosen and rejected alike), L = 512 ... 16 384.

Systems: ``alignkit`` (defaults: completion-only head, packing, shared prompt), ``trl-liger`` (TRL 1.16 with
``use_liger_kernel=True`` when ``liger_kernel`` is importable and ``padding_free=True``: TRL 1.16 turns the latter
off with a warning, the JSON records what it used), ``trl`` (plain). Reference: ``model`` (run every step) or
``cache`` (alignkit ``reference="cache"``, TRL ``precompute_ref_log_probs=True``; the precompute is in the setup
time, not in s/step).

Reported per run: s/step (median of the timed steps after the warm-up), real tokens/s (non-pad tokens of
prompt+chosen and prompt+rejected, TRL's ``num_tokens``), peak GPU memory (``max_memory_allocated``; CPU: peak
RSS), MFU = model FLOPs / s / the device's dense bf16 peak (``DENSE_BF16_TFLOPS`` by device name; the best measured
``torch.mm`` rate is reported beside it; CPU: the measured fp32 rate), model FLOPs as in ``dpo_vs_trl.step_flops``
(no recompute counted under gradient checkpointing), and one extra step timed by phase (``PhaseTimer``: policy
backbone forward, reference backbone forward, optimizer, rest = LM head + loss + backward). A worker that runs out
of GPU memory is a result (``oom``): the curve stops that system there, which gives the longest sequence that fits.

Outputs in ``--out``: ``gpu_scale.json`` (rewritten after every worker, so a run cut short keeps what it measured),
``gpu_scale_table.png`` (tokens/s, memory and the step breakdown per run) and ``gpu_scale_curve.png`` (tokens/s
and memory against L). ``--deadline-s`` starts no new worker after that many seconds; the plan runs the
measurements the issue's targets need first.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import dpo_vs_trl as harness  # noqa: E402

QWEN_VOCAB = 151936
_QWEN = dict(
    model_type="qwen2",
    vocab_size=QWEN_VOCAB,
    tie_word_embeddings=True,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
    max_position_embeddings=32768,
    use_sliding_window=False,
    hidden_act="silu",
    pad_token_id=0,
    eos_token_id=1,
    bos_token_id=1,
)
#: Model shapes (Qwen2.5 config.json values: hidden, intermediate, layers, heads, kv heads) and the pairs per step.
#: The model cards give 0.49B / 1.54B / 3.09B parameters (0.36B / 1.31B / 2.77B without embeddings);
#: tests/benchmarks/test_gpu_scale.py checks these shapes against them.
SHAPES: dict[str, dict] = {
    "qwen2.5-0.5b": dict(
        config=dict(
            _QWEN, hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
            num_key_value_heads=2,
        ),
        pairs=8,
        grad_ckpt=False,
    ),
    "qwen2.5-1.5b": dict(
        config=dict(
            _QWEN, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
            num_key_value_heads=2,
        ),
        pairs=8,
        grad_ckpt=False,
    ),
    "qwen2.5-3b": dict(
        config=dict(
            _QWEN, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
            num_key_value_heads=2,
        ),
        pairs=4,
        grad_ckpt=True,
    ),
    # CPU toy mode: the same architecture, tiny
    "toy": dict(
        config=dict(
            _QWEN, vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        ),
        pairs=2,
        grad_ckpt=False,
    ),
}  # fmt: skip

#: Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from NVIDIA's data sheets; matched against
#: ``torch.cuda.get_device_name()`` in this order (specific names first: "L40S" before "L4").
DENSE_BF16_TFLOPS: list[tuple[str, float]] = [
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H200 NVL", 835.0),
    ("GH200", 989.0),
    ("H200", 989.0),
    ("H100", 989.0),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10", 125.0),
    ("RTX 4090", 165.2),  # bf16 with fp32 accumulation
]

PROMPT_RANGE, COMPLETION_RANGE = (256, 2048), (128, 1024)
TOY_PROMPT_RANGE, TOY_COMPLETION_RANGE = (16, 64), (8, 32)
CURVE_LENGTHS = (512, 1024, 2048, 4096, 8192, 16384)
TOY_CURVE_LENGTHS = (64, 128)


def dense_bf16_peak(name: str) -> float | None:
    """TFLOP/s of ``DENSE_BF16_TFLOPS`` for a device name, or None when the device is not in the table."""
    for key, tflops in DENSE_BF16_TFLOPS:
        if key in name:
            return tflops
    return None


def flops_shape(config: dict) -> dict:
    """``dpo_vs_trl.step_flops``'s shape dict for a model config."""
    d = config["hidden_size"]
    kv = d // config["num_attention_heads"] * config["num_key_value_heads"]
    return dict(d=d, layers=config["num_hidden_layers"], ffn=config["intermediate_size"], kv=kv)


def _log_uniform(rng: random.Random, lo: int, hi: int) -> int:
    return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


def spread_rows(n: int, vocab: int, prompt: tuple[int, int], completion: tuple[int, int], seed: int = 1):
    """``n`` pairs with log-uniform prompt and completion lengths (tokens = words)."""
    rng = random.Random(seed)

    def text(k: int) -> str:
        return " ".join(f"w{rng.randrange(vocab - 3)}" for _ in range(k))

    return [
        {
            "prompt": text(_log_uniform(rng, *prompt)),
            "chosen": text(_log_uniform(rng, *completion)),
            "rejected": text(_log_uniform(rng, *completion)),
        }
        for _ in range(n)
    ]


def fixed_rows(n: int, vocab: int, length: int, seed: int = 2) -> list[dict[str, str]]:
    """``n`` pairs of sequence length ``length``: prompt ``length/2``, each completion ``length/2 - 1`` (+ EOS)."""
    rng = random.Random(seed)

    def text(k: int) -> str:
        return " ".join(f"w{rng.randrange(vocab - 3)}" for _ in range(k))

    half = length // 2
    return [{"prompt": text(half), "chosen": text(half - 1), "rejected": text(half - 1)} for _ in range(n)]


def summarise(res: dict, warmup: int, shape: dict, vocab: int, ref: str, peak_gflops: float) -> dict:
    """s/step, tok/s, memory, MFU (alignkit's exact lengths give the FLOPs; TRL gets the same rows' FLOPs per s)."""
    if res.get("failed"):
        return dict(oom=False, failed=True, error=res["error"])
    if res.get("oom"):
        return dict(oom=True, error=res.get("error", ""), mem_gb=res.get("cuda_peak_gb"))
    times, toks = res["times"][warmup:], res["tokens"][warmup:]
    out = dict(
        oom=False,
        s_step=statistics.median(times),
        tok_s=sum(toks) / sum(times),
        mem_gb=res.get("cuda_peak_gb", res["rss_kb"] / 1e6),
        setup_s=res["setup_s"],
        steps_timed=len(times),
    )
    for k in ("padding_free", "liger", "fast_paths"):
        if k in res:
            out[k] = res[k]
    if res.get("breakdown"):
        out["breakdown"] = res["breakdown"][-1]
    if "lengths" in res:
        fl = [harness.step_flops(ls, vocab, ref == "model", shape) for ls in res["lengths"][warmup:]]
        out["model_tflop_per_step"] = statistics.median(fl) / 1e12
    return out


def ok(row: dict) -> bool:
    """A run that finished (neither out of memory nor failed)."""
    return not row.get("oom") and not row.get("failed")


def add_mfu(row: dict, flops_per_step: float | None, peak_tflops: float, measured_tflops: float) -> None:
    if not ok(row) or not flops_per_step:
        return
    achieved = flops_per_step / row["s_step"] / 1e12
    row["achieved_tflops"] = achieved
    row["mfu"] = achieved / peak_tflops
    row["mfu_vs_measured_mm"] = achieved / measured_tflops


def plan(args: argparse.Namespace) -> list[dict]:
    """Jobs in the order the issue's targets need them (a deadline cuts the tail)."""
    shapes = [s for s in args.shapes.split(",") if s]
    systems = [s for s in args.systems.split(",") if s]
    refs = [r for r in args.refs.split(",") if r]
    curve_systems = [s for s in args.curve_systems.split(",") if s]
    main = [s for s in ("alignkit", "trl-liger") if s in systems]
    jobs: list[dict] = []

    def table(shape: str, ref: str, sysnames: list[str]) -> None:
        for s in sysnames:
            jobs.append(dict(part="table", shape=shape, ref=ref, system=s))

    small = [s for s in shapes if not SHAPES[s]["grad_ckpt"]]
    big = [s for s in shapes if SHAPES[s]["grad_ckpt"]]
    if "table" in args.parts and "model" in refs:
        for sh in sorted(small, key=lambda s: s != "qwen2.5-1.5b"):  # 1.5B first: the MFU target is set there
            table(sh, "model", main)
    if "curve" in args.parts:
        for length in args.curve_lengths:  # both systems at each L, so a deadline leaves comparable points
            for s in curve_systems:
                jobs.append(dict(part="curve", shape=args.curve_shape, ref="model", system=s, length=length))
    if "table" in args.parts:
        if "cache" in refs:
            for sh in small:
                table(sh, "cache", main)
        if "trl" in systems and "model" in refs:
            for sh in small:
                table(sh, "model", ["trl"])
        for sh in big:
            if "model" in refs:
                table(sh, "model", main)
        if "trl" in systems and "cache" in refs:
            for sh in small:
                table(sh, "cache", ["trl"])
    return jobs


def plots(result: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    dev = result["meta"]["device_name"]
    rows = [r for r in result["table"] if ok(r)]
    if rows:

        def label(r: dict) -> str:
            system = r["system"] + (
                " (no Liger)" if r["system"] == "trl-liger" and not r.get("liger") else ""
            )
            return f"{r['shape'].replace('qwen2.5-', '')}\n{r['ref']}\n{system}"

        labels = [label(r) for r in rows]
        fig, axes = plt.subplots(1, 3, figsize=(max(12, 1.2 * len(rows) * 3), 4.5))
        x = range(len(rows))
        axes[0].bar(x, [r["tok_s"] for r in rows], color="tab:blue")
        axes[0].set_ylabel("real tokens / s")
        axes[1].bar(x, [r["mem_gb"] for r in rows], color="tab:orange")
        axes[1].set_ylabel("peak memory (GB)")
        bottom = [0.0] * len(rows)
        for key, color in (
            ("policy_forward", "tab:green"),
            ("reference_forward", "tab:purple"),
            ("optimizer", "tab:gray"),
            ("rest", "tab:red"),
        ):
            vals = [r.get("breakdown", {}).get(key, 0.0) for r in rows]
            axes[2].bar(x, vals, bottom=bottom, color=color, label=key.replace("_", " "))
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        axes[2].set_ylabel("s in one phase-timed step")
        axes[2].legend(fontsize=7)
        for ax in axes:
            ax.set_xticks(list(x))
            ax.set_xticklabels(labels, fontsize=6)
            ax.grid(alpha=0.3, axis="y")
        fig.suptitle(f"DPO step, alignkit vs TRL 1.16, on {dev}")
        fig.tight_layout()
        p = out / "gpu_scale_table.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        made.append(p)
    curve = result["curve"]
    if curve:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for system in sorted({r["system"] for r in curve}):
            pts = sorted((r for r in curve if r["system"] == system), key=lambda r: r["length"])
            done = [r for r in pts if ok(r)]
            line = axes[0].plot([r["length"] for r in done], [r["tok_s"] for r in done], "o-", label=system)
            axes[1].plot([r["length"] for r in done], [r["mem_gb"] for r in done], "o-", label=system)
            for r in pts:
                if r.get("oom"):
                    for ax in axes:
                        ax.axvline(r["length"], color=line[0].get_color(), ls=":", alpha=0.7)
        axes[0].set_ylabel("real tokens / s")
        axes[1].set_ylabel("peak memory (GB)")
        for ax in axes:
            ax.set_xscale("log", base=2)
            ax.set_xlabel("L = prompt + completion tokens (1 pair / step)")
            ax.grid(alpha=0.3)
            ax.legend()
        fig.suptitle(
            f"{result['meta']['curve_shape']} DPO, reference each step, on {dev} (dotted: out of memory)"
        )
        fig.tight_layout()
        p = out / "gpu_scale_curve.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        made.append(p)
    return made


def line(r: dict) -> str:
    head = f"{r['part']:>5} {r['shape']:>12} ref={r['ref']:<5} {r['system']:<9}"
    if "length" in r:
        head += f" L={r['length']:<6}"
    if r.get("failed"):
        return f"{head} FAILED: {r['error'][-300:]}"
    if r["oom"]:
        return f"{head} OUT OF MEMORY ({r.get('error', '')[:80]})"
    mfu = f" MFU {100 * r['mfu']:.1f}%" if "mfu" in r else ""
    bd = r.get("breakdown")
    parts = ""
    if bd:
        parts = " | " + " ".join(
            f"{k.split('_')[0]} {100 * bd[k] / bd['step']:.0f}%"
            for k in ("policy_forward", "reference_forward", "optimizer", "rest")
        )
    return f"{head} {r['s_step']:.3f} s/step {r['tok_s']:.0f} tok/s {r['mem_gb']:.2f} GB{mfu}{parts}"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--toy", action="store_true", help="CPU toy mode: the toy shape, short rows, few steps")
    ap.add_argument("--out", default=str(HERE / "cuda"), help="folder for gpu_scale.json and the plots")
    ap.add_argument("--parts", default="table,curve")
    ap.add_argument("--shapes", default="qwen2.5-0.5b,qwen2.5-1.5b,qwen2.5-3b")
    ap.add_argument("--systems", default="alignkit,trl-liger,trl")
    ap.add_argument("--refs", default="model,cache")
    ap.add_argument("--curve-shape", default="qwen2.5-0.5b")
    ap.add_argument("--curve-systems", default="alignkit,trl-liger")
    ap.add_argument("--curve-lengths", default=None, help="comma-separated L (default 512 ... 16384)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per worker (default GPU 4, toy 1)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps (default GPU 2, toy 1)")
    ap.add_argument("--deadline-s", type=float, default=None, help="start no worker after this many seconds")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    if args.toy:
        if args.device != "cpu":
            ap.error("--toy is the CPU toy mode")
        args.shapes, args.curve_shape = "toy", "toy"
    lengths = args.curve_lengths or ",".join(map(str, TOY_CURVE_LENGTHS if args.toy else CURVE_LENGTHS))
    args.curve_lengths = [int(x) for x in lengths.split(",") if x]
    warmup = args.warmup if args.warmup is not None else (1 if args.toy else 2)
    steps = (args.steps if args.steps is not None else (1 if args.toy else 4)) + warmup
    for s in args.shapes.split(",") + [args.curve_shape]:
        if s and s not in SHAPES:
            ap.error(f"unknown shape {s!r}; choose from {sorted(SHAPES)}")
    has_liger = importlib.util.find_spec("liger_kernel") is not None
    systems = [s for s in args.systems.split(",") if s]
    if not has_liger and "trl-liger" in systems:
        # Liger needs Triton (CUDA): without it the "fastest TRL" is TRL with padding_free (which 1.16 ignores)
        print("liger_kernel is not importable: trl-liger runs TRL without Liger (recorded as liger=False)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import torch

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        ap.error("--device cuda but torch sees no GPU")
    name = torch.cuda.get_device_name() if cuda else "cpu"
    # TFLOP/s of torch.mm: CUDA bf16, CPU fp32 on 2 threads (toy mode: one small product, a rough figure)
    measured = _small_mm_tflops() if args.toy else harness.matmul_peak(args.device) / 1e3
    table_peak = dense_bf16_peak(name) if cuda else None
    peak = table_peak or measured
    meta = dict(
        device=args.device,
        device_name=name,
        peak_tflops=peak,
        peak_source="DENSE_BF16_TFLOPS" if table_peak else "measured torch.mm (device not in the table)",
        measured_mm_tflops=measured,
        torch=torch.__version__,
        liger_kernel=has_liger,
        warmup_steps=warmup,
        timed_steps=steps - warmup,
        curve_shape=args.curve_shape,
        argv=sys.argv[1:] if argv is None else argv,
        toy=args.toy,
    )
    for mod in ("transformers", "trl"):
        meta[mod] = __import__(mod).__version__
    result: dict = dict(meta=meta, table=[], curve=[], skipped=[])
    jobs = plan(args)
    work = Path(tempfile.mkdtemp(prefix="gpu-scale-"))
    tokdirs: dict[int, Path] = {}
    curve_oom: set[str] = set()
    print(
        f"{name}: peak {peak:.1f} TFLOP/s ({meta['peak_source']}), measured mm {measured:.1f}; {len(jobs)} jobs"
    )
    for i, job in enumerate(jobs):
        elapsed = time.perf_counter() - t_start
        if args.deadline_s is not None and elapsed > args.deadline_s:
            result["skipped"] = jobs[i:]
            print(
                f"deadline ({args.deadline_s:.0f} s) reached after {elapsed:.0f} s: {len(jobs) - i} jobs skipped"
            )
            break
        if job["part"] == "curve" and job["system"] in curve_oom:
            result["curve"].append(dict(job, oom=True, error="skipped: a shorter L ran out of memory"))
            continue
        shape = SHAPES[job["shape"]]
        config = shape["config"]
        vocab = config["vocab_size"]
        if vocab not in tokdirs:
            tokdirs[vocab] = work / f"tok-{vocab}"
            harness.build_tokenizer(vocab).save_pretrained(tokdirs[vocab])
        arch = work / f"{job['shape']}.json"
        arch.write_text(json.dumps(config))
        if job["part"] == "table":
            pairs = shape["pairs"]
            pr, cr = (
                (TOY_PROMPT_RANGE, TOY_COMPLETION_RANGE) if args.toy else (PROMPT_RANGE, COMPLETION_RANGE)
            )
            rows = spread_rows(pairs * (steps + 1), vocab, pr, cr)
            max_length = pr[1] + cr[1] + 8
        else:
            pairs = 1
            rows = fixed_rows(steps + 1, vocab, job["length"])
            max_length = job["length"] + 8
        data = work / f"rows-{i}.json"
        data.write_text(json.dumps(rows))
        extra = ["--arch", str(arch), "--pairs", str(pairs), "--max-length", str(max_length), "--breakdown"]
        if shape["grad_ckpt"]:
            extra.append("--grad-ckpt")
        if job["system"] == "trl-liger":
            extra.append("--padding-free")
        worker = job["system"]
        if worker == "trl-liger" and not has_liger:
            worker = (
                "trl"  # TRL's fastest settings without Liger: padding_free only (the row records liger=False)
            )
        # a worker that crashes or hangs is a row too (error), not the end of the run
        limit = None if args.deadline_s is None else max(120.0, args.deadline_s + 150.0 - elapsed)
        try:
            raw = harness.run_worker(
                worker, tokdirs[vocab], data, steps, job["ref"], args.device, tuple(extra), limit
            )
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            raw = dict(failed=True, error=str(exc)[-3000:])
        row = dict(job, **summarise(raw, warmup, flops_shape(config), vocab, job["ref"], peak))
        if job["part"] == "curve" and not ok(row):  # longer L would run out of memory / fail the same way
            curve_oom.add(job["system"])
        result[job["part"]].append(row)
        _fill_mfu(result, peak, measured)
        (out / "gpu_scale.json").write_text(json.dumps(result, indent=1))
        print(line(row), flush=True)
    _fill_mfu(result, peak, measured)
    result["targets"] = targets(result)
    result["meta"]["wall_s"] = time.perf_counter() - t_start
    (out / "gpu_scale.json").write_text(json.dumps(result, indent=1))
    made = plots(result, out)
    print("targets:", json.dumps(result["targets"], indent=1))
    print("wrote", out / "gpu_scale.json", *made)
    return result


def _small_mm_tflops() -> float:
    import torch

    a, b = torch.randn(512, 512), torch.randn(512, 512)
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * 512**3 / (time.perf_counter() - t) / 1e12)
    return best


def _fill_mfu(result: dict, peak: float, measured: float) -> None:
    """MFU of every run: the FLOPs of the same rows and reference mode, taken from alignkit's run of them (its
    hook records the exact per-pair lengths); TRL did the same model work on those rows."""
    for part in ("table", "curve"):
        rows = result[part]
        flops: dict[tuple, float] = {}
        for r in rows:
            if r["system"] == "alignkit" and ok(r) and "model_tflop_per_step" in r:
                flops[(r["shape"], r["ref"], r.get("length"))] = r["model_tflop_per_step"] * 1e12
        for r in rows:
            add_mfu(r, flops.get((r["shape"], r["ref"], r.get("length"))), peak, measured)


def targets(result: dict) -> dict:
    """The issue's GPU targets, read off the runs that exist (None where a run is missing)."""

    def get(part, shape, ref, system, length=None):
        for r in result[part]:
            if (r["shape"], r["ref"], r["system"], r.get("length")) == (shape, ref, system, length):
                return r
        return None

    out: dict = {}
    for sh in ("qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-3b", "toy"):
        for ref in ("model", "cache"):
            a, t = get("table", sh, ref, "alignkit"), get("table", sh, ref, "trl-liger")
            if a and t and ok(a) and ok(t):
                out[f"{sh}/{ref}"] = dict(
                    tok_s_ratio_vs_trl_liger=a["tok_s"] / t["tok_s"],
                    mem_ratio_vs_trl_liger=a["mem_gb"] / t["mem_gb"],
                    alignkit_mfu=a.get("mfu"),
                    held_tok_s_ge_1_5=a["tok_s"] / t["tok_s"] >= 1.5,
                    held_mem_le_0_7=a["mem_gb"] / t["mem_gb"] <= 0.7,
                )
    longest = {}
    for s in {r["system"] for r in result["curve"]}:
        fit = [r["length"] for r in result["curve"] if r["system"] == s and ok(r)]
        oom = [r["length"] for r in result["curve"] if r["system"] == s and r.get("oom")]
        longest[s] = dict(longest_fit=max(fit) if fit else None, first_oom=min(oom) if oom else None)
    out["curve_longest"] = longest
    return out


if __name__ == "__main__":
    main()
