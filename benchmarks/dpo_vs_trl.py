"""DPO step time, tokens/s, peak RSS and MFU: alignkit's ``train`` against TRL's ``DPOTrainer``, interleaved.

    python benchmarks/dpo_vs_trl.py            # configs A, B, C, 3 repeats, then the sweeps and the plots
    python benchmarks/dpo_vs_trl.py --quick    # smoke run: tiny steps, 1 repeat, no sweeps
    python benchmarks/dpo_vs_trl.py --configs A,B,C --no-sweeps --json run.json   # the table only
    python benchmarks/dpo_vs_trl.py --configs '' --json sweeps.json               # the sweeps only
    python benchmarks/dpo_vs_trl.py --plot-from run.json sweeps.json              # plots from saved runs

Every run is its own process (``--worker``), alternating alignkit / TRL, so machine noise hits both. Both load
the same saved model (Llama-style, 4 layers, d=256, vocab 32k unless swept) and the same rows (one token per
word through a ``tokenizers`` WordLevel tokenizer; prompts 64-256 words, completions 16-128, drawn per row),
8 pairs per step, AdamW lr 1e-5 (no weight decay, grad-clip 1.0), fp32, sigmoid DPO beta 0.1, 2 threads.

Configs: A = reference model run each step; B = reference log-probs cached (alignkit ``reference="cache"``) /
precomputed (TRL ``precompute_ref_log_probs``), the one-off precompute is reported but not in s/step;
C = as A with 1024-token prompts.

Metrics: s/step = median over timed steps (after 1 warm-up step) of one process, then median over repeats.
Real tokens = non-pad tokens of prompt+chosen and prompt+rejected (the prompt counted twice, as TRL's
``num_tokens``). Peak RSS = ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the worker process.
MFU = model FLOPs / step time / matmul peak. Model FLOPs of a step are the FLOPs the DPO step needs at minimum:
policy forward+backward = 3 x forward, reference forward = 1 x forward (configs A, C), where one forward costs
2 x (non-embedding backbone matmul weights) per computed token (prompt once per pair) + 2 x d x V per scored
completion token (the LM head) + 4 x d per attended (query, key) pair per layer. Embedding lookups, norms and
the optimizer are not counted. The peak is the best fp32 ``torch.mm`` GFLOP/s measured in this run (2 threads).
All processes run with ``OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE`` (see RESULTS.md for why).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIGS = {
    "A": dict(prompt=(64, 256), ref="model"),
    "B": dict(prompt=(64, 256), ref="cache"),
    "C": dict(prompt=(1024, 1024), ref="model"),
}
D_MODEL, LAYERS, HEADS, FFN = 256, 4, 4, 1024
PAIRS = 8


# --------------------------------------------------------------------------------------------- model and data
def build_tokenizer(vocab: int):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<eos>", "<unk>"] + [f"w{i}" for i in range(vocab - 3)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def build_model_dir(path: Path, vocab: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=D_MODEL,
        intermediate_size=FFN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=HEADS,
        max_position_embeddings=4096,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=1,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(path)
    build_tokenizer(vocab).save_pretrained(path)


def build_rows(n: int, vocab: int, prompt: tuple[int, int], seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)

    def text(k: int) -> str:
        return " ".join(f"w{rng.randrange(vocab - 3)}" for _ in range(k))

    return [
        {
            "prompt": text(rng.randint(*prompt)),
            "chosen": text(rng.randint(16, 128)),
            "rejected": text(rng.randint(16, 128)),
        }
        for _ in range(n)
    ]


def step_flops(
    lengths: list[tuple[int, int, int]], vocab: int, ref_each_step: bool, shape: dict | None = None
) -> float:
    """Model FLOPs of one DPO step over pairs ``(prompt, chosen, rejected)`` token counts (see module doc).

    ``shape``: ``{"d": hidden, "layers": n, "ffn": intermediate, "kv": key/value width (GQA: kv heads x head
    dim)}``; default this script's model (``kv = d``). Per layer the matmul weights are q, o (d x d), k, v (d x kv)
    and the gated MLP (3 x d x ffn)."""
    sh = shape or dict(d=D_MODEL, layers=LAYERS, ffn=FFN, kv=D_MODEL)
    d, layers = sh["d"], sh["layers"]
    backbone = layers * (2 * d * d + 2 * d * sh["kv"] + 3 * d * sh["ffn"])
    tokens = scored = attended = 0
    for p, c, r in lengths:
        tokens += p + c + r
        scored += c + r
        n = p + c
        attended += n * (n + 1) // 2 + r * p + r * (r + 1) // 2
    fwd = 2 * backbone * tokens + 2 * d * vocab * scored + 4 * d * layers * attended
    return fwd * (4 if ref_each_step else 3)


def matmul_peak(device: str = "cpu") -> float:
    """Best GFLOP/s of ``torch.mm``: fp32 on 2 CPU threads, or bf16 on CUDA (square and LM-head-like shapes)."""
    import torch

    if device == "cuda":
        best = 0.0
        for n in (4096, 8192):
            a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
            b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
            for _ in range(3):
                a @ b
            torch.cuda.synchronize()
            t = time.perf_counter()
            for _ in range(10):
                a @ b
            torch.cuda.synchronize()
            best = max(best, 10 * 2 * n**3 / (time.perf_counter() - t) / 1e9)
        return best
    torch.set_num_threads(2)
    best = 0.0
    for m, k, n in ((2048, 2048, 2048), (1024, 256, 32000), (4096, 256, 1024), (1536, 1536, 1536)):
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.mm(a, b)
        for _ in range(3):
            t = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2 * m * k * n / (time.perf_counter() - t) / 1e9)
    return best


# --------------------------------------------------------------------------------------------------- workers
def build_policy(args: argparse.Namespace):
    """The policy a worker trains: ``--arch`` (a JSON model config) builds random weights in-process on the device
    (seed 0, fp32, SDPA attention), so the large shapes need no checkpoint on disk; else the saved ``--model``."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    if not args.arch:
        return AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    spec = json.loads(Path(args.arch).read_text())
    cfg = AutoConfig.for_model(**spec)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device("cuda" if args.device == "cuda" else "cpu"):
        return AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)


class PhaseTimer:
    """Where one DPO step's time goes, measured alike for every system: the decoder backbone's forward with
    gradients (policy) and without (reference), and the optimizer step; ``rest`` (LM head, loss, backward,
    clipping, data) is the step time minus these. Global forward hooks find the backbone (a module with
    ``embed_tokens`` and ``layers``) whoever calls it; the device is synchronised at every boundary, so a worker
    times one extra step with these on (``--breakdown``) and leaves it out of its s/step."""

    def __init__(self, cuda: bool) -> None:
        self.cuda, self.active, self.depth = cuda, False, 0
        self.acc: dict[str, float] = {}
        self.t0 = 0.0
        self.handles: list = []

    def _now(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()

    @staticmethod
    def _is_backbone(m) -> bool:
        return hasattr(m, "embed_tokens") and hasattr(m, "layers")

    def _pre(self, m, *a) -> None:
        if self.active and self._is_backbone(m):
            self.depth += 1
            if self.depth == 1:
                self.t_fwd = self._now()

    def _post(self, m, *a) -> None:
        if self.active and self._is_backbone(m):
            self.depth -= 1
            if self.depth == 0:
                import torch

                key = "policy_forward" if torch.is_grad_enabled() else "reference_forward"
                self.acc[key] = self.acc.get(key, 0.0) + self._now() - self.t_fwd

    def _opt_pre(self, *a) -> None:
        if self.active:
            self.t_opt = self._now()

    def _opt_post(self, *a) -> None:
        if self.active:
            self.acc["optimizer"] = self.acc.get("optimizer", 0.0) + self._now() - self.t_opt

    def begin(self) -> None:
        """Install the hooks (global, so only for the timed step) and start the step's clock."""
        import torch
        from torch.optim.optimizer import (
            register_optimizer_step_post_hook,
            register_optimizer_step_pre_hook,
        )

        mod = torch.nn.modules.module
        self.handles = [
            mod.register_module_forward_pre_hook(self._pre),
            mod.register_module_forward_hook(self._post),
            register_optimizer_step_pre_hook(self._opt_pre),
            register_optimizer_step_post_hook(self._opt_post),
        ]
        self.acc, self.active, self.depth = {}, True, 0
        self.t0 = self._now()

    def end(self) -> dict[str, float]:
        total = self._now() - self.t0
        self.active = False
        for h in self.handles:
            h.remove()
        self.handles = []
        out = {k: self.acc.get(k, 0.0) for k in ("policy_forward", "reference_forward", "optimizer")}
        out["rest"] = total - sum(out.values())
        out["step"] = total
        return out


def worker_alignkit(args: argparse.Namespace) -> dict:
    import torch

    # ``alignkit.train.train``: after ``from alignkit.train import ...`` the name ``ak.train`` is the subpackage
    from alignkit.train import Hook, train

    cuda = args.device == "cuda"
    if not cuda:
        torch.set_num_threads(2)
    rows = json.loads(Path(args.data).read_text())
    times: list[float] = []
    toks: list[int] = []
    lens: list[list[tuple[int, int, int]]] = []
    marks = {"first": None}
    phases = PhaseTimer(cuda) if args.breakdown else None
    breakdown: list[dict[str, float]] = []

    class Timer(Hook):
        def on_step_begin(self, ctx):
            if marks["first"] is None:
                marks["first"] = time.perf_counter()
            self.t = time.perf_counter()
            self.n = 0
            self.lens = []
            if phases is not None and len(times) == args.steps:  # the extra last step: timed by phase
                phases.begin()

        def extra_loss(self, ctx, micro, out):
            for e in micro.examples:
                p, c, r = len(e.prompt_ids), len(e.chosen_ids), len(e.rejected_ids)
                self.n += 2 * p + c + r
                self.lens.append((p, c, r))
            return None

        def on_step_end(self, ctx, record):
            if phases is not None and phases.active:
                breakdown.append(phases.end())
                return
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - self.t)
            toks.append(self.n)
            lens.append(self.lens)

    # --arch: random weights built before the clock starts (setup_s is the trainer's own setup, as for TRL below)
    built = build_policy(args) if args.arch else None
    t0 = time.perf_counter()
    cache = tempfile.mkdtemp(prefix="ak-bench-cache-")
    if built is not None:  # in-memory random weights; reference="model" then runs a frozen copy of the policy
        model, tok = built, args.model
        kw = dict(reference=args.ref)
    else:
        model, tok = args.model, None
        kw = dict(reference="model", ref_model=args.model) if args.ref == "model" else dict(reference="cache")
    res = train(
        objective="dpo",
        model=model,
        tokenizer=tok,
        data=rows,
        batch_size=args.pairs,
        max_steps=args.steps + (1 if phases is not None else 0),
        learning_rate=1e-5,
        weight_decay=0.0,
        max_grad_norm=1.0,
        lr_scheduler="linear",
        max_length=args.max_length,
        max_prompt_length=args.max_length,
        hyper_parameters={"beta": 0.1},
        progress=False,
        tensorboard=False,
        cache_dir=cache,
        seed=0,
        hooks=[Timer()],
        bf16=cuda,  # CUDA: bf16 autocast (fp32 master weights), as TRL's bf16=True
        gradient_checkpointing=args.grad_ckpt,
        **kw,
    )
    setup = marks["first"] - t0
    out = dict(times=times, tokens=toks, lengths=lens, setup_s=setup, fast_paths=res.fast_paths)
    if phases is not None:
        out["breakdown"] = breakdown
    return out | _cuda_mem(cuda)


def worker_trl(args: argparse.Namespace) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    cuda = args.device == "cuda"
    if not cuda:
        torch.set_num_threads(2)
    rows = json.loads(Path(args.data).read_text())
    times: list[float] = []
    toks: list[float] = []
    state = {"t": 0.0, "seen": 0.0, "first": None}
    phases = PhaseTimer(cuda) if args.breakdown else None
    breakdown: list[dict[str, float]] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, a, s, c, **kw):
            if state["first"] is None:
                state["first"] = time.perf_counter()
            state["t"] = time.perf_counter()
            if phases is not None and len(times) == args.steps:  # the extra last step: timed by phase
                phases.begin()

        def on_step_end(self, a, s, c, **kw):
            if phases is not None and phases.active:
                breakdown.append(phases.end())
                return
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - state["t"])

        def on_log(self, a, s, c, logs=None, **kw):
            if logs and "num_tokens" in logs and len(toks) < args.steps:
                toks.append(logs["num_tokens"] - state["seen"])
                state["seen"] = logs["num_tokens"]

    built = build_policy(args) if args.arch else None  # before the clock, as in the alignkit worker
    t0 = time.perf_counter()
    out = tempfile.mkdtemp(prefix="trl-bench-")
    cfg = DPOConfig(
        output_dir=out,
        per_device_train_batch_size=args.pairs,
        max_steps=args.steps + (1 if phases is not None else 0),
        learning_rate=1e-5,
        weight_decay=0.0,
        max_grad_norm=1.0,
        lr_scheduler_type="linear",
        optim="adamw_torch",
        beta=0.1,
        loss_type=["sigmoid"],
        max_length=args.max_length,
        use_cpu=not cuda,
        bf16=cuda,
        fp16=False,
        use_liger_kernel=args.liger,
        padding_free=args.padding_free,
        # off by default: faster on this CPU than TRL's default True (memory is not the limit); --grad-ckpt for both
        gradient_checkpointing=args.grad_ckpt,
        precompute_ref_log_probs=args.ref == "cache",
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        dataloader_num_workers=0,
        seed=0,
        disable_tqdm=True,
    )
    model = (
        built if built is not None else AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    )
    ref_model = None
    if built is not None and args.ref == "model":
        # TRL would reload the reference from the config's path (there is none): give it a frozen copy
        import copy

        ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    tok = AutoTokenizer.from_pretrained(args.model)
    trainer = DPOTrainer(
        model=model,
        ref_model=ref_model,
        args=cfg,
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
        callbacks=[Timer()],
    )
    trainer.train()
    out = dict(times=times, tokens=toks, setup_s=state["first"] - t0, padding_free=trainer.padding_free)
    liger = getattr(trainer.args, "use_liger_kernel", False)
    out["liger"] = bool(liger)
    if phases is not None:
        out["breakdown"] = breakdown
    return out | _cuda_mem(cuda)


def _cuda_mem(cuda: bool) -> dict:
    if not cuda:
        return {}
    import torch

    return dict(cuda_peak_gb=torch.cuda.max_memory_allocated() / 1e9)


# ---------------------------------------------------------------------------------------------------- driver
def run_worker(
    system: str,
    model: Path,
    data: Path,
    steps: int,
    ref: str,
    device: str = "cpu",
    extra: tuple[str, ...] = (),
    timeout_s: float | None = None,
) -> dict:
    """One worker process; ``extra``: more worker flags (``--arch``, ``--pairs``, ``--max-length``,
    ``--grad-ckpt``, ``--padding-free``, ``--breakdown``). A worker that ran out of GPU memory returns
    ``{"oom": True, ...}`` instead of raising."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    worker, liger = ("trl", True) if system == "trl-liger" else (system, False)
    cmd = [sys.executable, __file__, "--worker", worker, "--model", str(model), "--data", str(data)]
    cmd += ["--steps", str(steps), "--ref", ref, "--out", out, "--device", device]
    cmd += ["--liger"] if liger else []
    cmd += list(extra)
    env = dict(os.environ, OMP_NUM_THREADS="2", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"{system} worker failed:\n{proc.stderr[-4000:]}")
    res = json.loads(Path(out).read_text())
    res["wall_s"] = time.perf_counter() - t
    return res


def summarise(res: dict, warmup: int) -> dict:
    times, toks = res["times"][warmup:], res["tokens"][warmup:]
    return dict(
        s_step=statistics.median(times),
        tok_s=sum(toks) / sum(times),
        # CUDA: peak allocated GPU memory (the figure that limits a GPU run); CPU: peak RSS
        rss_gb=res.get("cuda_peak_gb", res["rss_kb"] / 1e6),
        setup_s=res["setup_s"],
    )


def bench(
    name: str,
    prompt: tuple[int, int],
    ref: str,
    vocab: int,
    repeats: int,
    steps: int,
    work: Path,
    peak: list[float],
    progress,
    task,
    device: str = "cpu",
    systems: tuple[str, ...] = ("alignkit", "trl"),
) -> dict:
    model = work / f"model-v{vocab}"
    if not model.exists():
        build_model_dir(model, vocab)
    rows = build_rows(PAIRS * steps, vocab, prompt, seed=1)
    data = work / f"rows-{name}.json"
    data.write_text(json.dumps(rows))
    warmup = 1 if device == "cpu" else 3  # CUDA: the first steps include kernel selection / autotuning
    runs: dict[str, list[dict]] = {s: [] for s in systems}
    flops = []
    for rep in range(repeats):
        order = systems if rep % 2 == 0 else tuple(reversed(systems))
        for system in order:
            peak.append(matmul_peak(device))
            progress.update(task, description=f"{name} rep {rep + 1}/{repeats}: {system}")
            r = run_worker(system, model, data, steps, ref, device)
            runs[system].append(summarise(r, warmup))
            if system == "alignkit":
                fl = [step_flops(ls, vocab, ref == "model") for ls in r["lengths"][warmup:]]
                flops.append(statistics.median([f / t for f, t in zip(fl, r["times"][warmup:], strict=True)]))
                runs[system][-1]["fast_paths"] = r["fast_paths"]
            progress.advance(task)
    med = {
        s: {k: statistics.median(x[k] for x in runs[s]) for k in ("s_step", "tok_s", "rss_gb", "setup_s")}
        for s in runs
    }
    p = max(peak)
    extra = {
        f"{s.replace('-', '_')}_tok_ratio": med["alignkit"]["tok_s"] / med[s]["tok_s"] for s in systems[2:]
    }
    return dict(
        name=name,
        prompt=list(prompt),
        ref=ref,
        vocab=vocab,
        device=device,
        repeats=repeats,
        steps=steps,
        **{s.replace("-", "_"): med[s] for s in systems},
        **extra,
        runs=runs,
        tok_ratio=med["alignkit"]["tok_s"] / med["trl"]["tok_s"],
        rss_ratio=med["alignkit"]["rss_gb"] / med["trl"]["rss_gb"],
        achieved_gflops=statistics.median(flops) / 1e9,
        peak_gflops=p,
        mfu=statistics.median(flops) / 1e9 / p,
    )


def line(r: dict) -> str:
    a, t = r["alignkit"], r["trl"]
    mem = "GPU GB" if r.get("device") == "cuda" else "GB"
    liger = ""
    if "trl_liger" in r:
        g = r["trl_liger"]
        liger = (
            f"TRL+Liger {g['s_step']:.3f} s/step {g['tok_s']:.0f} tok/s {g['rss_gb']:.2f} {mem} "
            f"(x{r['trl_liger_tok_ratio']:.2f}) | "
        )
    return (
        f"{r['name']:>10}: alignkit {a['s_step']:.3f} s/step {a['tok_s']:.0f} tok/s {a['rss_gb']:.2f} {mem} | "
        f"TRL {t['s_step']:.3f} s/step {t['tok_s']:.0f} tok/s {t['rss_gb']:.2f} {mem} | {liger}"
        f"x{r['tok_ratio']:.2f} tok/s, mem x{r['rss_ratio']:.2f} | MFU {100 * r['mfu']:.1f}% "
        f"({r['achieved_gflops']:.0f}/{r['peak_gflops']:.0f} GFLOP/s)"
    )


def plots(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for key, xlabel, fname in (
        ("prompt", "prompt length (tokens, mean of the drawn range)", "plot_prompt_length.png"),
        ("vocab", "vocabulary size", "plot_vocab_size.png"),
    ):
        pts = [r for r in results if r.get("sweep") in (key, "both")]
        if len(pts) < 2:
            continue
        xs = [sum(r["prompt"]) / 2 if key == "prompt" else r["vocab"] for r in pts]
        order = sorted(range(len(xs)), key=xs.__getitem__)
        xs = [xs[i] for i in order]
        pts = [pts[i] for i in order]
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for sysname, style in (("alignkit", "o-"), ("trl", "s--")):
            axes[0].plot(xs, [r[sysname]["s_step"] for r in pts], style, label=sysname)
            axes[1].plot(xs, [r[sysname]["rss_gb"] for r in pts], style, label=sysname)
        axes[0].set_ylabel("s / step (8 pairs, ref model each step)")
        axes[1].set_ylabel("peak RSS (GB)")
        for ax in axes:
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
            ax.legend()
        fig.suptitle(f"DPO step on 2 CPU cores: alignkit vs TRL 1.16 ({key} sweep)")
        fig.tight_layout()
        fig.savefig(path / fname, dpi=110)
        plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 repeat, 2 steps, config A only")
    ap.add_argument("--configs", default="A,B,C", help="comma-separated; '' runs only the sweeps")
    ap.add_argument("--plot-from", nargs="+", metavar="JSON", help="only redraw the plots from saved results")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="steps per run (the first is a warm-up)")
    ap.add_argument("--sweeps", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--json", default=str(HERE / "results.json"))
    ap.add_argument("--worker", choices=["alignkit", "trl"])
    ap.add_argument("--model")
    ap.add_argument("--data")
    ap.add_argument("--ref", default="model")
    ap.add_argument("--out")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: bf16 autocast on one GPU")
    ap.add_argument("--liger", action="store_true", help="(TRL worker) use_liger_kernel=True")
    ap.add_argument("--padding-free", action="store_true", help="(TRL worker) padding_free=True")
    ap.add_argument("--pairs", type=int, default=PAIRS, help="(worker) pairs per step")
    ap.add_argument("--max-length", type=int, default=4096, help="(worker) max tokens of prompt + completion")
    ap.add_argument("--grad-ckpt", action="store_true", help="(worker) gradient checkpointing")
    ap.add_argument(
        "--arch", help="(worker) JSON model config: random weights built in-process on the device"
    )
    ap.add_argument("--breakdown", action="store_true", help="(worker) one extra step timed by phase")
    ap.add_argument(
        "--trl-liger",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also run TRL with Liger kernels (default: on CUDA when liger_kernel is installed)",
    )
    args = ap.parse_args()
    # Spinning OpenMP threads collapse when the 2 cores are shared (4x slower steps at load 3-4); passive
    # waiting costs nothing when the machine is idle. Set for both systems alike (and this process's peak).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args.worker:
        import torch

        try:
            res = (worker_alignkit if args.worker == "alignkit" else worker_trl)(args)
        except torch.OutOfMemoryError as exc:  # a result too: the longest sequence that fits is measured
            res = dict(oom=True, error=str(exc).splitlines()[0][:300]) | _cuda_mem(args.device == "cuda")
        res["rss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        Path(args.out).write_text(json.dumps(res))
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if args.quick:
        args.repeats, args.steps, args.configs, args.sweeps = 1, 2, "A", False
    if args.plot_from:  # redraw the plots from saved runs (e.g. the configs and the sweeps run separately)
        saved = [r for f in args.plot_from for r in json.loads(Path(f).read_text())["results"]]
        plots(saved, HERE)
        print(f"plots from {len(saved)} results written to {HERE}")
        return
    names = [c for c in args.configs.split(",") if c]
    unknown = sorted(set(names) - set(CONFIGS))
    if unknown:
        ap.error(f"--configs: unknown {unknown}; choose from {sorted(CONFIGS)} (or '' for the sweeps only)")
    plan = [(c, CONFIGS[c]["prompt"], CONFIGS[c]["ref"], 32000, None) for c in names]
    if args.sweeps:
        plan += [("P512", (512, 512), "model", 32000, "prompt")]
        plan += [("V8k", (64, 256), "model", 8000, "vocab"), ("V64k", (64, 256), "model", 64000, "vocab")]
    systems: tuple[str, ...] = ("alignkit", "trl")
    use_liger = args.trl_liger
    if use_liger is None:
        import importlib.util

        use_liger = args.device == "cuda" and importlib.util.find_spec("liger_kernel") is not None
    if use_liger:
        systems += ("trl-liger",)
    load = os.getloadavg()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; cpus: {os.cpu_count()}")
    results = []
    peak: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="dpo-bench-") as tmp,
        Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
        ) as progress,
    ):
        total = sum((args.repeats if sweep is None else 1) * len(systems) for *_, sweep in plan)
        task = progress.add_task("benchmark", total=total)
        for name, prompt, ref, vocab, sweep in plan:
            reps = args.repeats if sweep is None else 1
            r = bench(
                name,
                prompt,
                ref,
                vocab,
                reps,
                args.steps,
                Path(tmp),
                peak,
                progress,
                task,
                args.device,
                systems,
            )
            r["sweep"] = sweep
            if name == "A":
                r["sweep"] = "both"
            if name == "C":
                r["sweep"] = "prompt"
            r["load_avg"] = os.getloadavg()[0]
            results.append(r)
            progress.console.print(line(r))
    end_load = os.getloadavg()
    print(f"load average at end: {end_load[0]:.2f} {end_load[1]:.2f} {end_load[2]:.2f}")
    for r in results:
        print(line(r))
    meta = dict(load_start=load, load_end=end_load, peak_gflops=max(peak), argv=sys.argv[1:])
    Path(args.json).write_text(json.dumps(dict(meta=meta, results=results), indent=1))
    # the plots need A, C and the sweeps
    if not args.quick and args.device == "cpu" and args.sweeps and names:
        plots(results, HERE)


if __name__ == "__main__":
    main()
