"""``alignkit safety-bench``: the harmful fine-tuning benchmark on the testbed ``safety`` task (issue #7).

    alignkit safety-bench                 # ./safety-bench: sft, lisa, booster at p = 0, 0.05, 0.1, 0.2
    alignkit safety-bench --methods sft lisa booster --ratios 0 0.05 0.1 0.2 --steps 80 --output runs/safety
    alignkit safety-bench --methods sft lisa --ratios 0.1 --seeds 0 1 2    # across-seed intervals

Aligns the testbed ``safety`` base model (SFT on refusal data; Booster in this stage), fine-tunes it on a benign
user task mixed with a share p of harmful rows (Lisa / AlignGuard in this stage), and reports the harmful score
the fine-tune accuracy and the over-refusal of the user task with 95% CIs (across training seeds with --seeds).
Writes results.json, results.md (table) and harmful.png (harmful score and fine-tune accuracy vs p per method,
side by side, with the majority-class rate) under --output. See ``alignkit.safety.bench``.
"""

from __future__ import annotations

import argparse

from rich.console import Console


def add_parser(sub: argparse._SubParsersAction) -> None:
    from alignkit.safety.bench import METHODS, SafetyBenchConfig

    d = SafetyBenchConfig()
    p = sub.add_parser(
        "safety-bench",
        help="harmful fine-tuning benchmark: harmful score / fine-tune accuracy per defence and harmful ratio",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--methods", nargs="+", default=list(d.methods), choices=METHODS, metavar="METHOD",
                   help=f"plain fine-tuning and defences: {', '.join(METHODS)}")  # fmt: skip
    p.add_argument("--ratios", nargs="+", type=float, default=list(d.ratios), metavar="P",
                   help="harmful shares of the user data, in [0, 1]")  # fmt: skip
    p.add_argument("--steps", type=int, default=d.steps, help="user fine-tuning steps")
    p.add_argument("--align-steps", type=int, default=d.align_steps, help="alignment steps")
    p.add_argument("--learning-rate", "--lr", dest="lr", type=float, default=d.learning_rate,
                   help="fine-tuning learning rate")  # fmt: skip
    p.add_argument("--n-eval", type=int, default=d.n_eval, help="eval prompts of each kind")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of data, training and sampling")
    p.add_argument("--seeds", type=int, nargs="+", metavar="S",
                   help="several training seeds (overrides --seed): per-seed rows, across-seed 95%% t-intervals, "
                        "and defence-minus-plain differences paired by seed")  # fmt: skip
    p.add_argument("--pretrain-steps", type=int,
                   help="base-model pretraining steps (default: the bench's, 200; a new value builds a new model)")  # fmt: skip
    p.add_argument("--cache-dir", help="cache folder (default: the cache root, see `alignkit cache`)")
    p.add_argument(
        "--output", default="safety-bench", help="folder for results.json, results.md and harmful.png"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from alignkit.safety.bench import (
        SafetyBenchConfig,
        default_base_config,
        markdown_table,
        run_safety_bench,
        write_reports,
    )

    base = None
    if args.pretrain_steps is not None:
        base = dataclasses.replace(default_base_config(), pretrain_steps=args.pretrain_steps)

    cfg = SafetyBenchConfig(
        methods=tuple(args.methods),
        ratios=tuple(args.ratios),
        steps=args.steps,
        align_steps=args.align_steps,
        learning_rate=args.lr,
        n_eval=args.n_eval,
        seed=args.seed,
        seeds=tuple(args.seeds or ()),
        cache_dir=args.cache_dir,
        base=base,
    )
    console = Console(stderr=True)
    result = run_safety_bench(cfg, console=console)
    paths = write_reports(result, args.output)
    print(markdown_table(result))  # plain print: rich would wrap the table's lines
    console.print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
