"""``alignkit recipe``: list, show and export the shipped multi-stage recipes (see :mod:`alignkit.recipes`).

alignkit recipe list
alignkit recipe show lion [--stage dpo]
alignkit recipe export lion configs/        # configs/sft.yaml, configs/dpo.yaml, ... for `alignkit train --config`
"""

from __future__ import annotations

import argparse

import yaml


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recipe",
        help="multi-stage training recipes from papers (list, show, export)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=("list", "show", "export"))
    p.add_argument("name", nargs="?", help="recipe name (or a recipe YAML file)")
    p.add_argument("directory", nargs="?", help="export: folder for the stage configs")
    p.add_argument("--stage", help="show: only this stage's `alignkit train` config")
    p.set_defaults(func=run)


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
    if not args.directory:
        raise ValueError("recipe export needs a target directory")
    for f in recipes.export(r, args.directory):
        print(f)
    return 0
