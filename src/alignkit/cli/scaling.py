"""``alignkit scaling``: fit a registered scaling law to a CSV of runs, plot it, predict with it.

    alignkit scaling list
    alignkit scaling fit --law chinchilla --csv runs.csv --bootstrap 200 --plot fit.png --json fit.json
    alignkit scaling fit --law llms_on_the_line --csv shared/scaling/llms_on_the_line.csv \
        --group-by pretraining_data
    alignkit scaling fit --law loss_to_loss --csv shared/scaling/loss_to_loss.csv \
        --where "pair=FineWeb-Edu->StarCoder" split=sweep --fix E0=1.9669 E1=0.8452
    alignkit scaling predict --law chinchilla --at params=7e10 tokens=1.4e12 [--fit fit.json | --coef E=1.7]

The CSV has one row per run; columns are the law's inputs and target (``alignkit scaling list`` shows them);
``#`` lines are comments (provenance). See docs/scaling.md.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table


def _pairs(items: list[str] | None, what: str) -> dict[str, float]:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{what} takes NAME=VALUE; got {item!r}")
        k, v = item.split("=", 1)
        out[k] = float(v)
    return out


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scaling", help="fit, plot and predict with the seed papers' scaling laws")
    ss = p.add_subparsers(dest="scaling_command", metavar="ACTION")
    ls = ss.add_parser("list", help="the registered scaling laws, their columns and published coefficients")
    ls.set_defaults(func=_list)
    f = ss.add_parser("fit", help="fit a law to a CSV of runs with bootstrap intervals")
    f.add_argument("--law", required=True)
    f.add_argument("--csv", required=True, type=Path)
    f.add_argument("--target", default=None, help="target column (default: the law's)")
    f.add_argument("--fix", nargs="*", metavar="COEF=VALUE", help="hold coefficients at these values")
    f.add_argument("--p0", nargs="*", metavar="COEF=VALUE", help="starting point (default: published values)")
    f.add_argument("--bootstrap", type=int, default=200, help="bootstrap refits (0: none)")
    f.add_argument("--level", type=float, default=0.95)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument(
        "--huber",
        type=float,
        default=None,
        metavar="DELTA",
        help="Huber loss of the residuals (Chinchilla: 1e-3)",
    )
    f.add_argument("--group-by", default=None, help="fit one curve per value of this column")
    f.add_argument(
        "--where", nargs="*", metavar="COLUMN=VALUE", help="fit only the rows with these column values"
    )
    f.add_argument("--plot", type=Path, default=None, help="write a PNG of data and fit")
    f.add_argument("--json", type=Path, default=None, help="write the fit(s) as JSON")
    f.set_defaults(func=_fit)
    pr = ss.add_parser("predict", help="evaluate a law at given inputs")
    pr.add_argument("--law", required=True)
    pr.add_argument("--at", nargs="+", required=True, metavar="COLUMN=VALUE")
    pr.add_argument("--fit", type=Path, default=None, help="a JSON written by `scaling fit --json`")
    pr.add_argument("--coef", nargs="*", metavar="COEF=VALUE")
    pr.set_defaults(func=_predict)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _list(args: argparse.Namespace) -> int:
    import alignkit as ak
    from alignkit.scaling._law import law_spec

    table = Table(title="scaling laws")
    for col in ("name", "arXiv", "inputs -> target", "published / default coefficients"):
        table.add_column(col)
    for c in ak.list_components(kind="scaling_law"):
        s = law_spec(c)
        coef = ", ".join(f"{k}={v:g}" for k, v in c.defaults.items())
        table.add_row(c.name, c.arxiv, f"{', '.join(s.inputs)} -> {s.target}", coef)
    Console().print(table)
    return 0


def _fit(args: argparse.Namespace) -> int:
    from alignkit.scaling import fit, fit_groups, plot_fit, read_runs, select

    data = read_runs(args.csv)
    if args.where:
        where = {}
        for item in args.where:
            if "=" not in item:
                raise ValueError(f"--where takes COLUMN=VALUE; got {item!r}")
            k, v = item.split("=", 1)
            where[k] = v
        data = select(data, where)
    kw = dict(
        target=args.target,
        fix=_pairs(args.fix, "--fix"),
        p0=_pairs(args.p0, "--p0"),
        n_boot=args.bootstrap,
        level=args.level,
        seed=args.seed,
        huber=args.huber,
    )
    results = (
        fit_groups(args.law, data, args.group_by, **kw)
        if args.group_by
        else {"all": fit(args.law, data, **kw)}
    )
    console = Console()
    for group, r in results.items():
        table = Table(
            title=f"{r.law} on {args.csv.name}" + (f" [{args.group_by}={group}]" if args.group_by else "")
        )
        for col in ("coefficient", "estimate", f"{int(r.level * 100)}% bootstrap interval"):
            table.add_column(col)
        for k, v in r.params.items():
            lo, hi = r.ci[k]
            table.add_row(k, f"{v:.6g}", f"[{lo:.6g}, {hi:.6g}]")
        for k, v in r.fixed.items():
            table.add_row(k, f"{v:.6g}", "fixed")
        console.print(table)
        console.print(f"runs {r.n}  rmse {r.rmse:.4g}  R^2 {r.r2:.4f}  bootstrap fits {r.boot.shape[0]}")
        if args.plot:
            safe = re.sub(r"[^\w.-]+", "_", group)
            path = (
                args.plot
                if len(results) == 1
                else args.plot.with_name(f"{args.plot.stem}-{safe}{args.plot.suffix}")
            )
            mask = np.ones(r.n, bool) if not args.group_by else np.asarray(data[args.group_by]) == group
            plot_fit(r, {k: np.asarray(v)[mask] for k, v in data.items()}, path)
            console.print(f"plot: {path}")
    if args.json:
        payload = {g: r.to_dict() for g, r in results.items()}
        args.json.write_text(json.dumps(payload if args.group_by else payload["all"], indent=2))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from alignkit.scaling import predict

    coef = {}
    if args.fit:
        saved = json.loads(args.fit.read_text())
        if saved.get("law") != args.law:
            raise ValueError(f"{args.fit} holds a fit of {saved.get('law')!r}, not {args.law!r}")
        coef.update(saved["fixed"])
        coef.update(saved["params"])
    coef.update(_pairs(args.coef, "--coef"))
    x = {k: np.array([v]) for k, v in _pairs(args.at, "--at").items()}
    print(f"{float(predict(args.law, x, **coef)[0]):.6g}")
    return 0
