"""``alignkit recipe``: list, show, export and run the shipped multi-stage recipes (see :mod:`alignkit.recipes`).

alignkit recipe list
alignkit recipe show lion [--stage dpo]
alignkit recipe export lion configs/        # configs/sft.yaml, configs/dpo.yaml, ... for `alignkit train --config`
alignkit recipe run guardrail_ipo --model BASE --data sft=sft.jsonl --data ipo=pairs.jsonl --output runs/g
alignkit recipe run guardrail_ipo --skip sft --model BASE --data ipo=pairs.jsonl --output runs/g --set max_steps=100

``run`` trains every stage in order into ``<output>/<stage>``; ``--data STAGE=FILE`` once per training stage,
``--reward-fn module:function`` for online stages, ``--set KEY=VALUE`` (every training stage) or
``--set STAGE.KEY=VALUE`` (one stage) overrides a TrainConfig field.
"""

from __future__ import annotations

import argparse
from typing import Any

import yaml


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recipe",
        help="multi-stage training recipes from papers (list, show, export, run)",
        description=__doc__,
    )
    p.add_argument("action", choices=("list", "show", "export", "run"), help="what to do")
    p.add_argument("name", nargs="?", help="recipe name (or a recipe YAML file)")
    p.add_argument("directory", nargs="?", help="export: folder for the stage configs")
    p.add_argument("--stage", help="show: only this stage's `alignkit train` config")
    p.add_argument("--model", help="run: the starting model (folder or hub id)")
    p.add_argument("--data", action="append", default=[], metavar="STAGE=FILE",
                   help="run: a training stage's data (repeat per stage)")  # fmt: skip
    p.add_argument("--output", help="run: output folder; stage S is written to OUTPUT/S")
    p.add_argument("--reward-fn", help="run: 'module:function' judge of online stages")
    p.add_argument("--skip", action="append", default=[], metavar="STAGE",
                   help="run: leave out this stage; later '@STAGE' references start from its input model")  # fmt: skip
    p.add_argument("--set", action="append", default=[], metavar="[STAGE.]KEY=VALUE", dest="overrides",
                   help="run: override a TrainConfig field (e.g. max_steps=100, ipo.learning_rate=1e-6)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="run: no progress bars")
    p.set_defaults(func=run)


def parse_data(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        stage, sep, path = item.partition("=")
        if not sep or not stage.strip() or not path.strip():
            raise ValueError(f"--data {item!r}: expected STAGE=FILE")
        out[stage.strip()] = path.strip()
    return out


def parse_overrides(items: list[str], stages: list[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``--set`` values: ``{key: value}`` for every stage and ``{stage: {key: value}}`` (values read as YAML)."""
    from alignkit.train.config import TrainConfig

    common: dict[str, Any] = {}
    per_stage: dict[str, dict[str, Any]] = {}
    fields = set(TrainConfig.field_names())
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE or STAGE.KEY=VALUE")
        stage, _, field = key.strip().rpartition(".")
        if field not in fields:
            raise ValueError(f"--set {item!r}: {field!r} is not a TrainConfig field")
        if stage and stage not in stages:
            raise ValueError(f"--set {item!r}: no stage {stage!r}; stages: {', '.join(stages)}")
        target = per_stage.setdefault(stage, {}) if stage else common
        target[field] = yaml.safe_load(value)
    return common, per_stage


def run(args: argparse.Namespace) -> int:
    from alignkit import recipes

    if args.action == "list":
        for n in recipes.names():
            r = recipes.load(n)
            print(f"{n:16s} arXiv:{r.arxiv}  {' -> '.join(s.name for s in r.stages)}  {r.description}")
        return 0
    if not args.name:
        raise ValueError(f"recipe {args.action} needs a recipe name; see `alignkit recipe list`")
    r = recipes.load(args.name)
    if args.action == "show":
        if args.stage:
            print(r.stage_yaml(args.stage), end="")
            return 0
        print(f"# {r.paper} (arXiv:{r.arxiv})\n# {r.description}")
        if r.notes:
            print(f"# notes: {r.notes}")
        stages = [
            {"name": s.name, **({"config": s.config} if s.config is not None else {"merge": s.merge})}
            for s in r.stages
        ]
        print(yaml.safe_dump({"stages": stages}, sort_keys=False), end="")
        return 0
    if args.action == "export":
        if not args.directory:
            raise ValueError("recipe export needs a target directory")
        for f in recipes.export(r, args.directory):
            print(f)
        return 0
    return run_recipe(r, args)


def run_recipe(r: Any, args: argparse.Namespace) -> int:
    from rich.console import Console

    from alignkit import recipes
    from alignkit.cli._quiet import quiet_transformers

    for flag, value in (("--model", args.model), ("--output", args.output)):
        if not value:
            raise ValueError(f"recipe run needs {flag}")
    if args.directory:
        raise ValueError(f"recipe run takes no directory ({args.directory!r}); use --output")
    names = [s.name for s in r.stages]
    common, per_stage = parse_overrides(args.overrides, names)
    if args.no_progress:
        common.setdefault("progress", False)
    quiet_transformers()
    console = Console(stderr=True)
    outs = recipes.run(
        r,
        model=args.model,
        data=parse_data(args.data),
        output_dir=args.output,
        reward_fn=args.reward_fn,
        overrides=common,
        stage_overrides=per_stage,
        skip=args.skip,
        console=console,
    )
    for stage, path in outs.items():
        print(f"{stage}: {path}")
    return 0
