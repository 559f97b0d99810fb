"""``alignkit eval``: evaluate a model on a testbed task against its gold reward.

alignkit eval --model runs/dpo --task sentiment              # vs the task's cached base model
alignkit eval --model runs/dpo --ref-model other/ --pairs eval_pairs.jsonl --beta 0.1 --json
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a model on a testbed task: gold reward, KL, win rate, ranking accuracy (95%% CIs)",
        description="Sample the model on the task's held-out prompts and report the mean gold reward, KL to the "
        "reference, win rate against the reference's samples, ranking accuracy on --pairs and the task's own "
        "figures (pass@N for arith, harmful score / helpfulness for safety), each with a 95% bootstrap CI.",
    )
    p.add_argument(
        "--model", required=True, help="folder of a saved causal LM ('base' = the task's base model)"
    )
    p.add_argument(
        "--task", default="sentiment", choices=("sentiment", "arith", "safety"), help="testbed task"
    )
    p.add_argument("--ref-model", "--ref", dest="ref",
                   help="reference model folder (default: the task's base model, built if absent)")  # fmt: skip
    p.add_argument("--eval-prompts", type=int, default=300, help="number of held-out prompts")
    p.add_argument("--samples", type=int, default=4, help="samples per prompt")
    p.add_argument("--seed", type=int, default=0, help="prompt and sampling seed")
    p.add_argument("--pairs", help="JSONL of held-out pairs (prompt_ids, chosen_ids, rejected_ids, p_chosen)")
    p.add_argument("--beta", type=float, help="beta for the idealized ranking accuracy")
    p.add_argument("--pretrain-steps", type=int,
                   help="base-model pretraining steps (default: the task's; as arena --pretrain-steps)")  # fmt: skip
    p.add_argument("--cache-dir", help="cache folder (default: the cache root, see `alignkit cache`)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--output", help="also write the JSON to this file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _load(path: str) -> Any:
    from pathlib import Path

    from transformers import AutoModelForCausalLM

    if not Path(path).is_dir():
        raise FileNotFoundError(f"--model/--ref {path!r} is not a folder with a saved model")
    model = AutoModelForCausalLM.from_pretrained(path)
    model.eval()
    return model


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from rich.console import Console
    from rich.table import Table

    from alignkit.eval.evaluate import evaluate_policy, sample_and_score
    from alignkit.eval.metrics import mean_ci
    from alignkit.testbed.arena import _quiet_transformers
    from alignkit.testbed.model import get_base_model
    from alignkit.testbed.preferences import read_jsonl
    from alignkit.testbed.tasks import get_task

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _quiet_transformers()
    if args.eval_prompts < 1 or args.samples < 1:
        raise ValueError("--eval-prompts and --samples must be positive")
    from alignkit.sources import check_model_source

    for flag, spec in (("--model", args.model), ("--ref-model", args.ref)):  # before the (slow) testbed build
        if spec is not None and spec != "base":
            check_model_source(spec, flag)
    progress = not args.no_progress
    task = get_task(args.task)
    base = None
    if args.ref is None or args.model == "base":
        config = (
            task.base_config(pretrain_steps=args.pretrain_steps) if args.pretrain_steps is not None else None
        )
        base = get_base_model(task, config, cache_dir=args.cache_dir, progress=progress)
    model = base.model if args.model == "base" and base is not None else _load(args.model)
    ref = base.model if args.ref is None and base is not None else _load(args.ref)
    tokenizer = base.tokenizer if base is not None else None
    if tokenizer is None or (args.model != "base" and (Path(args.model) / "tokenizer.json").is_file()):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.model if args.model != "base" else args.ref)
    prompts = task.prompts(tokenizer, "eval", args.eval_prompts, seed=args.seed)
    baseline = sample_and_score(
        ref,
        tokenizer,
        task,
        prompts,
        num_samples=args.samples,
        seed=args.seed + 1,
        progress=progress,
        description="sampling reference",
    )
    pairs = read_jsonl(args.pairs) if args.pairs else None
    res = evaluate_policy(
        model,
        tokenizer,
        task,
        prompts,
        ref_model=ref,
        num_samples=args.samples,
        seed=args.seed + 1,
        baseline_rewards=baseline.rewards,
        pairs=pairs,
        beta=args.beta,
        progress=progress,
        description="sampling model",
    )
    out = {"task": task.name, "model": args.model, "ref": args.ref or "base", **res.to_dict()}
    ref_reward = mean_ci(baseline.per_prompt_reward())  # the reference's samples: the figure the table shows
    out["reference_gold_reward"] = ref_reward
    if args.output:
        Path(args.output).write_text(json.dumps(out, indent=2))
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    table = Table(title=f"alignkit eval — {task.name}: {args.model} (mean over prompts, 95% bootstrap CI)")
    table.add_column("figure")
    table.add_column("mean", justify="right")
    table.add_column("95% CI", justify="right")
    rows: list[tuple[str, dict[str, Any] | None]] = [
        ("gold reward", res.gold_reward),
        ("reference gold reward", ref_reward),
        ("KL(π‖ref), nats", res.kl),
        ("win rate vs ref", res.win_rate),
        ("ranking accuracy", res.ranking_accuracy),
        ("idealized ranking accuracy", res.idealized_ranking_accuracy),
        *[(k, v) for k, v in res.task_metrics.items()],
    ]
    for name, fig in rows:
        if fig is None:
            continue
        ci = "" if fig.get("ci95") is None else f"[{fig['ci95'][0]:.3f}, {fig['ci95'][1]:.3f}]"
        table.add_row(name, f"{fig['mean']:.3f}", ci)
    Console().print(table)
    return 0
