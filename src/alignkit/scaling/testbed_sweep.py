"""The scaling tool on runs produced here: pretrain the testbed's base model (``alignkit.testbed.model``) at a
few sizes for a few step counts, record held-out loss, and fit the Chinchilla law to it.

    python -m alignkit.scaling.testbed_sweep --out runs.csv        # then: alignkit scaling fit --law chinchilla
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

# (hidden_size, num_layers, num_heads, intermediate_size)
SIZES: tuple[tuple[int, int, int, int], ...] = ((32, 1, 2, 88), (64, 2, 2, 176), (128, 2, 4, 352))
STEPS: tuple[int, ...] = (40, 80, 160)


def run_sweep(
    sizes: Sequence[tuple[int, int, int, int]] = SIZES,
    steps: Sequence[int] = STEPS,
    *,
    task: str = "sentiment",
    batch_size: int = 16,
    context: int = 64,
    vocab_size: int = 512,
    seed: int = 0,
    out: str | Path | None = None,
) -> list[dict[str, Any]]:
    """One pretraining run per (size, steps) on the task's corpus (a tokenizer of ``vocab_size`` trained once),
    each from the same seed with its own cosine schedule; rows: ``params`` (non-embedding), ``params_total``,
    ``tokens`` (steps x batch x context), ``loss`` (held-out, nats/token), ``seconds``. Written to ``out`` as a
    CSV when given."""
    from alignkit.testbed.model import (
        build_model,
        encode_documents,
        heldout_loss,
        pretrain,
        train_tokenizer,
    )
    from alignkit.testbed.tasks import get_task

    t = get_task(task)
    base = t.base_config()
    docs = t.documents(base)
    tok = train_tokenizer(docs, vocab_size)
    stream = encode_documents(tok, docs)
    held = encode_documents(tok, t.heldout_documents(base))
    rows = []
    for hidden, layers, heads, inter in sizes:
        for n_steps in steps:
            cfg = dataclasses.replace(
                base,
                vocab_size=vocab_size,
                hidden_size=hidden,
                num_layers=layers,
                num_heads=heads,
                intermediate_size=inter,
                context=context,
                batch_size=batch_size,
                pretrain_steps=n_steps,
                seed=seed,
            )
            model = build_model(cfg, len(tok))
            total = sum(p.numel() for p in model.parameters())
            emb = model.get_input_embeddings().weight.numel()
            t0 = time.perf_counter()
            pretrain(model, stream, cfg, progress=False)
            rows.append(
                {
                    "hidden_size": hidden,
                    "num_layers": layers,
                    "steps": n_steps,
                    "params": total - emb,
                    "params_total": total,
                    "tokens": n_steps * batch_size * context,
                    "loss": heldout_loss(model, held, context, batches=4, batch_size=32),
                    "seconds": time.perf_counter() - t0,
                }
            )
    if out is not None:
        p = Path(out)
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("w", newline="") as fh:
            fh.write(
                f"# alignkit testbed sweep: task={task}, batch={batch_size}, context={context}, vocab={vocab_size}, "
                f"seed={seed}, torch {torch.__version__}; produced by alignkit.scaling.testbed_sweep\n"
            )
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--task", default="sentiment")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    for r in run_sweep(task=a.task, seed=a.seed, out=a.out):
        print(r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
