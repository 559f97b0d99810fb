"""``alignkit list`` and ``alignkit explain``: the registry as a table, JSON, or one component's manual."""

from __future__ import annotations

import argparse
import json
import textwrap

from rich.console import Console
from rich.table import Table

from alignkit.registry import KINDS, Objective, get, list_components


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list the registered objectives and other components")
    p.add_argument("--kind", choices=KINDS, help="only this kind of component")
    p.add_argument("--family", help="only this family (e.g. preference, sft, reward)")
    p.add_argument("--tag", help="only components with this tag (e.g. reference-free, unpaired)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table (the README's catalogue)")
    p.set_defaults(func=run_list)

    e = sub.add_parser("explain", help="show a component's formula, paper, hyper-parameters and a snippet")
    e.add_argument("name", help="name or alias, e.g. dpo or sigmoid")
    e.set_defaults(func=run_explain)


def run_list(args: argparse.Namespace) -> int:
    items = list_components(kind=args.kind, family=args.family, tag=args.tag)
    if args.json:
        print(json.dumps([c.to_dict() for c in items], indent=2))
        return 0
    if args.markdown:
        print(registry_markdown(items))
        return 0
    table = Table(title=f"alignkit components ({len(items)})")
    for col in ("name", "kind", "family", "aliases", "paper", "arXiv", "ref", "agg"):
        table.add_column(col, overflow="fold")
    for c in items:
        is_obj = isinstance(c, Objective)
        table.add_row(
            c.name,
            c.kind,
            c.family,
            ", ".join(c.aliases),
            c.paper,
            c.arxiv,
            ("yes" if c.needs_reference else "no") if is_obj else "",
            c.aggregation if is_obj else "",
        )
    Console().print(table)
    return 0


def registry_markdown(items: list | None = None) -> str:
    """The catalogue as a Markdown table; the README embeds it and a test keeps the two equal."""
    items = list_components() if items is None else items
    rows = [
        "| name | kind | family | aliases | paper | arXiv | reference | aggregation |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in items:
        is_obj = isinstance(c, Objective)
        ref = ("yes" if c.needs_reference else "no") if is_obj else ""
        agg = c.aggregation if is_obj else ""
        aliases = ", ".join(f"`{a}`" for a in c.aliases)
        rows.append(
            f"| `{c.name}` | {c.kind} | {c.family} | {aliases} | {c.paper} | {c.arxiv} | {ref} | {agg} |"
        )
    return "\n".join(rows)


def snippet(c: Objective) -> str:
    """A runnable example for an objective, on random tensors of the right batch type."""
    custom = getattr(c.fn, "example", None)  # objectives on other batch types carry their own
    if custom:
        return custom
    bt = c.batch_type.__name__ if c.batch_type else "PreferenceBatch"
    hp = ", ".join(f"{k}={v!r}" for k, v in c.defaults.items() if k in ("beta", "gamma", "eta", "alpha"))
    call = f'ak.get("{c.name}")(batch{", " + hp if hp else ""})'
    lp = "-torch.rand(4, 8)"
    if bt == "PreferenceBatch":
        ref = f", ref_chosen_logps={lp}, ref_rejected_logps={lp}" if c.needs_reference else ""
        make = f"batch = ak.PreferenceBatch(chosen_logps={lp}.requires_grad_(), rejected_logps={lp}{ref})"
    elif bt == "UnpairedBatch":
        make = (
            f"batch = ak.UnpairedBatch(logps={lp}.requires_grad_(), labels=torch.tensor([1, 0, 1, 0]).bool(), "
            f"ref_logps={lp}, kl_logps=-torch.rand(4) * 8, ref_kl_logps=-torch.rand(4) * 8)"
        )
    elif bt == "RewardBatch":
        make = "batch = ak.RewardBatch(chosen_rewards=torch.randn(4, requires_grad=True), rejected_rewards=torch.randn(4))"
    else:
        make = f"batch = ak.SFTBatch(logps={lp}.requires_grad_())"
    return f"import torch, alignkit as ak\n{make}\nout = {call}\nout.loss.backward()\nprint(out.loss, out.metrics)"


def run_explain(args: argparse.Namespace) -> int:
    c = get(args.name)
    console = Console()
    console.print(f"[bold]{c.name}[/bold]  ({c.kind}, family {c.family or '-'})")
    if c.aliases:
        console.print(f"aliases: {', '.join(c.aliases)}")
    console.print(f"paper:   {c.paper}  (arXiv:{c.arxiv})")
    if isinstance(c, Objective):
        bt = c.batch_type.__name__ if c.batch_type else "PreferenceBatch or SFTBatch"
        needs = [f"batch: {bt}", f"reference log-probs: {'required' if c.needs_reference else 'not used'}"]
        needs.append(f"log-prob aggregation: {c.aggregation}")
        console.print("inputs:  " + "; ".join(needs))
    console.print("\n[bold]Formula[/bold]")
    console.print(textwrap.indent(c.formula or "(see docstring)", "    "), markup=False, highlight=False)
    from alignkit.hyperparameters import describe

    console.print("\n[bold]Hyper-parameters (default)[/bold]")
    ranges = getattr(c, "valid_ranges", {})
    for k, v in c.defaults.items():
        valid = f"    valid: {describe(ranges[k])}" if k in ranges else ""
        console.print(f"    {k} = {v!r}{valid}", markup=False, highlight=False)
    if not c.defaults:
        console.print("    (none)")
    console.print("\n[bold]Description[/bold]")
    console.print(textwrap.indent(c.doc, "    "), markup=False, highlight=False)
    if isinstance(c, Objective):
        console.print("\n[bold]Example[/bold]")
        console.print(textwrap.indent(snippet(c), "    "), markup=False, highlight=False)
    return 0
