"""OpenMP wait policy on a small CPU: 40 DPO steps + sampling 512 completions of the default testbed base model,
each in a fresh process (libgomp reads its settings at start), idle and with two processes at once.

    python benchmarks/omp_wait_policy.py [--repeats 3]

Prints seconds per setting. It backs the ``OMP_WAIT_POLICY=PASSIVE`` default of the ``alignkit`` command
(docs/speed.md, "Shared CPUs"). Uses the shipped base model and the arena's preference data (built on first use).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

WORK = r"""
import copy, time
from alignkit.engine.generation import sample
from alignkit.testbed.arena import ArenaConfig, prepare_data
from alignkit.testbed.model import get_base_model
from alignkit.testbed.tasks import get_task
from alignkit.train import train
task = get_task("sentiment")
base = get_base_model(task, None, progress=False)
data = prepare_data(ArenaConfig(), base, task)
rows = [{k: p[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")} for p in data.pairs]
policy = copy.deepcopy(base.model).requires_grad_(True).train()
t0 = time.perf_counter()
train(objective="dpo", model=policy, tokenizer=base.tokenizer, data=rows, hyper_parameters={"beta": 0.1},
      max_steps=40, batch_size=16, learning_rate=1e-4, progress=False, output_dir=None, packing=False)
t1 = time.perf_counter()
sample(base.model, [list(p.ids) for p in data.eval_prompts[:128]], num_samples=4, max_new_tokens=32,
       batch_size=512, seed=1, eos_token_id=0, pad_token_id=0, progress=False)
print(f"RESULT {t1 - t0:.2f} {time.perf_counter() - t1:.2f}")
"""

SETTINGS = {
    "OMP_WAIT_POLICY=PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "libgomp default": {},
    "GOMP_SPINCOUNT=1000": {"GOMP_SPINCOUNT": "1000"},
}


def _start(extra: dict[str, str]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(HF_HUB_OFFLINE="1", **extra)
    return subprocess.Popen([sys.executable, "-c", WORK], env=env, stdout=subprocess.PIPE, text=True)


def _result(p: subprocess.Popen) -> tuple[float, float]:
    out, _ = p.communicate()
    if p.returncode != 0:
        raise SystemExit(f"benchmark process failed ({p.returncode})")
    train_s, sample_s = out.split("RESULT", 1)[1].split()
    return float(train_s), float(sample_s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    _result(_start({}))  # builds the cache (preference data) outside the timings
    for name, extra in SETTINGS.items():
        idle = [_result(_start(extra)) for _ in range(args.repeats)]
        pair = [_start(extra), _start(extra)]
        both = [_result(p) for p in pair]
        mean = sum(t for t, _ in idle) / len(idle)
        print(
            f"{name:24s} idle: train {mean:6.2f} s (runs {', '.join(f'{t:.2f}' for t, _ in idle)}), "
            f"sample {sum(s for _, s in idle) / len(idle):.2f} s | two at once: train "
            f"{', '.join(f'{t:.1f}' for t, _ in both)} s"
        )


if __name__ == "__main__":
    main()
