"""A/B of two alignkit source trees on the same DPO step (config A's shape), interleaved, ratio printed.

    git worktree add /tmp/old <commit>
    python benchmarks/trainer_ab.py --old-src /tmp/old/src --new-src src --repeats 3

Each run is its own process (``OMP_NUM_THREADS=2``): a Llama-style model (4 layers, d=256, vocab 32k), 48 pairs
(prompts 64-256 words, completions 16-128, one token per word), 8 pairs per step, the reference model run every
step (``--config B``: the reference cached; ``C``: 1024-token prompts), 6 steps; s/step is the median of steps 2-6, then the median over repeats. Old and new alternate, so machine
noise hits both; the printed ratio new/old is the result (below 1: the new tree is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

WORKER = r"""
import json, random, sys, time
import torch
torch.set_num_threads(2)
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from alignkit.train.hooks import Hook
from alignkit.train.trainer import train

rng = random.Random(0)
vocab = {f"w{i}": i for i in range(32000)}
vocab["<pad>"] = len(vocab) - 1
tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="w0"))
tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="w1")
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(vocab_size=32000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                                     intermediate_size=1024, max_position_embeddings=2048))
def words(n): return " ".join(f"w{rng.randrange(2, 31000)}" for _ in range(n))
config = sys.argv[1]
lo, hi = (1024, 1024) if config == "C" else (64, 256)
rows = [{"prompt": words(rng.randint(lo, hi)), "chosen": " " + words(rng.randint(16, 128)),
         "rejected": " " + words(rng.randint(16, 128))} for _ in range(48)]
t = []
class Clock(Hook):
    def on_step_begin(self, ctx): self.t0 = time.perf_counter()
    def on_step_end(self, ctx, record): t.append(time.perf_counter() - self.t0)
train(objective="dpo", model=model, tokenizer=tok, data=rows, max_steps=6, batch_size=8, learning_rate=1e-5,
      reference="cache" if config == "B" else "model", progress=False, hooks=[Clock()], max_length=2048, max_prompt_length=1024)
print("STEPS", json.dumps(t[1:]))
"""


def run(src: str, config: str) -> float:
    env = {
        **os.environ,
        "PYTHONPATH": src,
        "OMP_NUM_THREADS": "2",
        "OMP_WAIT_POLICY": "PASSIVE",
        "HF_HUB_OFFLINE": "1",
    }
    p = subprocess.run(
        [sys.executable, "-c", WORKER, config], env=env, capture_output=True, text=True, timeout=900
    )
    if p.returncode != 0:
        raise SystemExit(f"worker on {src} failed:\n{p.stderr[-3000:]}")
    steps = json.loads(p.stdout.split("STEPS", 1)[1].strip().splitlines()[0])
    return statistics.median(steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old-src", required=True)
    ap.add_argument("--new-src", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--config", choices=["A", "B", "C"], default="A", help="B: cached reference; C: 1024-token prompts"
    )
    args = ap.parse_args()
    old, new = [], []
    for rep in range(args.repeats):
        old.append(run(args.old_src, args.config))
        new.append(run(args.new_src, args.config))
        print(
            f"repeat {rep + 1}: old {old[-1]:.3f} s/step, new {new[-1]:.3f} s/step, new/old {new[-1] / old[-1]:.3f}"
        )
    o, n = statistics.median(old), statistics.median(new)
    print(
        json.dumps(
            {
                "config": args.config,
                "old_s_per_step": o,
                "new_s_per_step": n,
                "new_over_old": n / o,
                "load_avg": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
