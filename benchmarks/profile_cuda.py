"""Where a DPO step's time goes on a GPU: config A of ``dpo_vs_trl.py`` through alignkit's ``train``, per variant.

    python benchmarks/profile_cuda.py [--steps 6] [--profile]

Variants: packed with the per-segment SDPA calls restricted to flash / memory-efficient attention (the default,
``alignkit.engine.packing.CUDA_SDPA_BACKENDS``); packed with torch's own backend choice; the padded path with the
completion-only head (``packing=False``). Prints the median step time of each (after 2 warm-up steps) and, with
``--profile``, the torch profiler's top operators of the torch's-choice variant.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dpo_vs_trl as bench  # noqa: E402

from alignkit.engine import packing  # noqa: E402
from alignkit.train import Hook  # noqa: E402
from alignkit.train import train as ak_train  # noqa: E402  (ak.train is the subpackage once it is imported)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run(model: str, rows: list[dict], steps: int, packing_on: bool, profile: bool = False) -> float:
    times: list[float] = []

    class Timer(Hook):
        def on_step_begin(self, ctx):
            _sync()
            self.t = time.perf_counter()

        def on_step_end(self, ctx, record):
            _sync()
            times.append(time.perf_counter() - self.t)

    kw = dict(
        objective="dpo",
        model=model,
        ref_model=model,
        reference="model",
        data=rows,
        batch_size=bench.PAIRS,
        max_steps=steps,
        learning_rate=1e-5,
        max_length=4096,
        max_prompt_length=4096,
        progress=False,
        tensorboard=False,
        cache_dir=tempfile.mkdtemp(),
        hooks=[Timer()],
        packing=packing_on,
        bf16=torch.cuda.is_available(),
    )
    if profile:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as prof

        with prof(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as p:
            ak_train(**kw)
        print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=60))
    else:
        ak_train(**kw)
    return statistics.median(times[2:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp())
    bench.build_model_dir(work / "m", 32000)
    rows = bench.build_rows(bench.PAIRS * args.steps, 32000, (64, 256), seed=1)
    model = str(work / "m")
    default = packing.CUDA_SDPA_BACKENDS
    print(f"packed, SDPA backends {default}: {run(model, rows, args.steps, True):.3f} s/step", flush=True)
    packing.CUDA_SDPA_BACKENDS = None
    t = run(model, rows, args.steps, True, profile=args.profile)
    print(f"packed, torch's SDPA backend choice: {t:.3f} s/step", flush=True)
    packing.CUDA_SDPA_BACKENDS = default
    print(f"padded, completion-only head: {run(model, rows, args.steps, False):.3f} s/step", flush=True)


if __name__ == "__main__":
    main()
