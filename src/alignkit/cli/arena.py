"""``alignkit arena``: train several objectives on the same testbed data and judge them by the gold reward.

alignkit arena                                   # sentiment; sft, dpo, ipo, simpo, kto, orpo, rpo; ~4 min
alignkit arena --objectives dpo,kto --betas dpo=0.1,0.5 --seeds 0,1 --steps 150 --output out/
"""

from __future__ import annotations

import argparse
from typing import Any


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{what} must be comma-separated numbers; got {text!r}") from None


def parse_betas(text: str | None, objectives: list[str]) -> dict[str, list[float]]:
    """``--betas``: ``0.1,0.5`` (every trained objective at each beta) or ``dpo=0.1,0.5;kto=0.2`` (per objective;
    ``;`` or a space separates objectives)."""
    if not text:
        return {}
    trained = [o for o in objectives if o != "sft"]
    if "=" not in text:
        values = _floats(text, "--betas")
        return {o: values for o in trained}
    out: dict[str, list[float]] = {}
    for part in text.replace(" ", ";").split(";"):
        if not part.strip():
            continue
        if "=" not in part:
            raise ValueError(f"--betas entry {part!r} must look like objective=beta[,beta...]")
        name, vals = part.split("=", 1)
        name = name.strip()
        if name not in trained:
            raise ValueError(f"--betas names {name!r}, which is not among the trained objectives {trained}")
        out[name] = _floats(vals, f"--betas {name}")
    return out


def add_parser(sub: argparse._SubParsersAction) -> None:
    from alignkit.testbed.arena import DEFAULT_OBJECTIVES, DEFAULT_SWEEP_BETAS

    p = sub.add_parser(
        "arena",
        help="compare objectives on a testbed task with a known gold reward",
        description="Train several objectives on the same preference data, budget and seeds from a tiny base model "
        "built here (cached), and judge them by the task's gold reward: a rich table, results.json, report.md "
        "and PNG plots in --output.",
    )
    p.add_argument(
        "--task", default="sentiment", choices=("sentiment", "arith", "safety"), help="testbed task"
    )
    p.add_argument(
        "--objectives", default=",".join(DEFAULT_OBJECTIVES), help="comma-separated; 'sft' = the baseline"
    )
    p.add_argument("--betas", help="'0.1,0.5' for all objectives, or 'dpo=0.1,0.5;kto=0.2' per objective")
    p.add_argument(
        "--sweep-betas",
        default=",".join(f"{b:g}" for b in DEFAULT_SWEEP_BETAS),
        help="extra betas of --sweep-objective for the reward-KL frontier ('' for none)",
    )
    p.add_argument("--sweep-objective", default="dpo", help="objective trained at --sweep-betas")
    p.add_argument("--seeds", default="0", help="comma-separated training/eval seeds")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps per objective")
    p.add_argument("--batch-size", type=int, default=16, help="pairs per step")
    p.add_argument("--learning-rate", type=float, default=1e-4, help="AdamW learning rate of every run")
    p.add_argument(
        "--train-prompts", type=int, default=1000, help="prompts the preference pairs are built from"
    )
    p.add_argument("--eval-prompts", type=int, default=300, help="number of held-out prompts")
    p.add_argument(
        "--eval-samples",
        type=int,
        default=2,
        help="samples per held-out prompt (gold reward, KL, held-out pairs)",
    )
    p.add_argument(
        "--samples", type=int, default=4, help="samples per train prompt (pairs are built from them)"
    )
    p.add_argument(
        "--bt-temperature", type=float, default=0.1, help="Bradley-Terry temperature of the labels"
    )
    p.add_argument("--label-noise", type=float, default=0.0, help="probability of flipping a label")
    p.add_argument("--pair-strategy", default="best_worst", choices=("best_worst", "random"),
                   help="which two samples of a prompt form its pair")  # fmt: skip
    p.add_argument("--pretrain-steps", type=int, help="base-model pretraining steps (default: the task's)")
    p.add_argument("--output", default="arena", help="output folder")
    p.add_argument("--cache-dir", help="cache folder (default: the cache root, see `alignkit cache`)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the base model even if cached")
    p.add_argument("--no-progress", action="store_true", help="no progress bars; one line per run")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> Any:
    from alignkit.testbed.arena import ArenaConfig
    from alignkit.testbed.tasks import get_task

    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--seeds must be comma-separated integers; got {args.seeds!r}") from None
    base = None
    if args.pretrain_steps is not None:
        base = get_task(args.task).base_config(pretrain_steps=args.pretrain_steps)
    return ArenaConfig(
        task=args.task,
        objectives=objectives,
        betas=parse_betas(args.betas, objectives),
        sweep_objective=args.sweep_objective,
        sweep_betas=_floats(args.sweep_betas or "", "--sweep-betas"),
        seeds=seeds,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        train_prompts=args.train_prompts,
        eval_prompts=args.eval_prompts,
        eval_samples=args.eval_samples,
        samples_per_prompt=args.samples,
        bt_temperature=args.bt_temperature,
        label_noise=args.label_noise,
        pair_strategy=args.pair_strategy,
        base=base,
        output=args.output,
        cache_dir=args.cache_dir,
        rebuild=args.rebuild,
        progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> int:
    import os

    from rich.console import Console

    from alignkit.testbed.arena import run_arena

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = config_from_args(args)
    console = Console() if not args.no_progress else None
    if console is not None and not console.is_terminal:
        console = Console(width=max(console.width, 150))
    result = run_arena(cfg, console=console)
    if console is None:
        for r in result.results:
            print(
                f"{r['objective']:>6} beta={r['beta']} gold={r['gold_reward_mean']:.3f} "
                f"[{r['gold_reward_ci95'][0]:.3f}, {r['gold_reward_ci95'][1]:.3f}] kl={r['kl_mean']}"
            )
    return 0
