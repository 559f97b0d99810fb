"""``alignkit embed-train``: fine-tune a local encoder (any ``AutoModel``) with an embedding objective.

    alignkit embed-train --objective clip --model path/to/encoder --data pairs.jsonl --output runs/clip \\
        --max-steps 100 --batch-size 16 --hp temperature=0.05

Under ``torchrun --nproc_per_node N`` each process takes ``--batch-size`` rows and in-batch negatives span all N
(embeddings are gathered with gradient), so the run equals one process with N times the batch.
See docs/representation.md.
"""

from __future__ import annotations

import argparse
from typing import Any

import yaml


def _hp(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in pairs:
        if "=" not in item:
            raise ValueError(f"--hp expects KEY=VALUE; got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "embed-train",
        help="fine-tune a text encoder with an embedding objective (clip, siglip, batch_hard_triplet, ...)",
        description="Fine-tune any local AutoModel encoder (mean or CLS pooling) on pairs, triplets or labelled "
        "rows with a registered representation objective; saves a folder AutoModel.from_pretrained and "
        "sentence-transformers load.",
    )
    p.add_argument(
        "--objective", required=True, help="objective name (`alignkit list --family representation`)"
    )
    p.add_argument("--model", required=True, help="encoder folder (AutoModel + tokenizer)")
    p.add_argument(
        "--data", required=True, help="JSONL/JSON/Parquet/CSV: anchor+positive[+negative] or text+label"
    )
    p.add_argument("--output", dest="output_dir", help="output folder for the fine-tuned encoder")
    p.add_argument("--pooling", default="mean", choices=("mean", "cls"), help="token pooling (default mean)")
    p.add_argument("--batch-size", type=int, default=16, help="rows per step and process (default 16)")
    p.add_argument("--max-steps", type=int, help="optimizer steps (overrides --epochs)")
    p.add_argument("--epochs", type=float, default=1.0, help="passes over the data (default 1)")
    p.add_argument(
        "--learning-rate", type=float, default=2e-5, help="peak AdamW learning rate (default 2e-5)"
    )
    p.add_argument("--warmup-ratio", type=float, default=0.1, help="fraction of steps of linear warmup")
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay of matrices")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="gradient clipping (0: none)")
    p.add_argument("--max-length", type=int, default=128, help="max tokens per text")
    p.add_argument(
        "--samples-per-label", type=int, default=4, help="labelled rows: K rows per label in a batch"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hp", nargs="*", default=[], metavar="KEY=VALUE", help="objective hyper-parameters")
    p.add_argument(
        "--no-normalize", action="store_true", help="saved sentence-transformers model skips Normalize"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--trust-remote-code", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from alignkit.embedding import EmbedTrainConfig, embed_train

    cfg = EmbedTrainConfig(
        objective=args.objective,
        model=args.model,
        data=args.data,
        output_dir=args.output_dir,
        hyper_parameters=_hp(args.hp),
        pooling=args.pooling,
        batch_size=args.batch_size,
        max_steps=args.max_steps,
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        warmup_ratio=args.warmup_ratio,
        weight_decay=args.weight_decay,
        max_grad_norm=args.max_grad_norm,
        max_length=args.max_length,
        samples_per_label=args.samples_per_label,
        seed=args.seed,
        normalize=not args.no_normalize,
        progress=not args.no_progress,
        trust_remote_code=args.trust_remote_code,
    )
    result = embed_train(cfg)
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_rank() == 0:
        last = result.history[-1]
        where = f", saved to {result.output_dir}" if result.output_dir else ""
        print(f"embed-train {args.objective}: {last['step']} steps, final loss {last['loss']:.4f}{where}")
    return 0
