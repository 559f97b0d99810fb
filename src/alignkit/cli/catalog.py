"""``alignkit list`` and ``alignkit explain``: the registry as a table, JSON, or one component's manual."""

from __future__ import annotations

import argparse
import difflib
import io
import json
import os
import shutil
import sys
import textwrap

from rich.console import Console
from rich.table import Table

from alignkit.registry import KINDS, Objective, get, list_components


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "list",
        help="list the registered objectives and other components",
        description="Every registered component: name, kind, family and how it was verified (one line each; "
        "--wide for aliases, paper, arXiv id, reference and aggregation). Tags include ones derived from the "
        "metadata: reference / reference-free (objectives that do / do not read reference log-probs) and "
        "paired / unpaired (objectives taking a PreferenceBatch / UnpairedBatch).",
    )
    p.add_argument("--kind", choices=KINDS, help="only this kind of component")
    p.add_argument("--family", help="only this family (e.g. preference, sft, reward)")
    p.add_argument("--tag", help="only components with this tag (e.g. reference-free, unpaired)")
    p.add_argument(
        "--wide", action="store_true", help="the full table: aliases, paper, arXiv, ref, agg, tags"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--markdown", action="store_true", help="print a Markdown table (the README's catalogue)")
    p.set_defaults(func=run_list)

    e = sub.add_parser(
        "explain",
        help="show a component's formula, paper, hyper-parameters and a runnable example",
        description="One component's manual: paper, verification level, formula, hyper-parameters with their "
        "defaults and sources, inputs, and an example that runs as printed (Python, and the command line where "
        "one exists).",
    )
    e.add_argument("name", help="name or alias, e.g. dpo or sigmoid")
    e.set_defaults(func=run_explain)


def emit(text: str) -> None:
    """Write ``text`` to stdout; a reader that stops early (``| head``) ends the output quietly."""
    try:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader is gone: point stdout at /dev/null so the interpreter's final flush does not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def check_filters(kind: str | None, family: str | None, tag: str | None) -> None:
    """An unknown ``--family`` / ``--tag`` is an error listing the known ones (not an empty table)."""
    everything = list_components()
    families = sorted({c.family for c in everything if c.family})
    tags = sorted({t for c in everything for t in c.derived_tags})
    if family is not None and family not in families:
        raise ValueError(f"no component has family {family!r}; known families: {', '.join(families)}")
    if tag is not None and tag not in tags:
        close = difflib.get_close_matches(tag, tags, n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        raise ValueError(f"no component has tag {tag!r}{hint}; known tags: {', '.join(tags)}")


def compact_table(items: list, width: int | None) -> str:
    """One line per component: name, kind, family, verification. Names and kinds are never cut; when ``width``
    (a terminal's) is too narrow, family and verification are shortened with '…'. ``width=None``: no limit."""
    head = ("name", "kind", "family", "verification")
    rows = [(c.name, c.kind, c.family or "-", c.verification or "-") for c in items]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    if width is not None:
        over = sum(widths) + 2 * 3 - width
        for i in (2, 3):  # shrink family, then verification, never below 6 characters
            if over <= 0:
                break
            cut = min(over, max(0, widths[i] - 6))
            widths[i] -= cut
            over -= cut

    def cell(text: str, w: int) -> str:
        return text if len(text) <= w else text[: w - 1] + "…"

    def line(r: tuple[str, ...]) -> str:
        return "  ".join(cell(t, w).ljust(w) for t, w in zip(r, widths, strict=True)).rstrip()

    return "\n".join([line(head), *(line(r) for r in rows), f"({len(items)} components)"])


def wide_table(items: list, width: int | None) -> str:
    """The full table (rich); names never wrap. ``width=None`` (piped): as wide as the rows need."""
    table = Table(title=f"alignkit components ({len(items)})")
    table.add_column("name", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    for col in ("family", "aliases", "paper", "arXiv", "ref", "agg", "verification", "tags"):
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
            c.verification or "-",
            ", ".join(c.derived_tags),
        )
    console = Console(file=io.StringIO(), width=width or 400, force_terminal=False, color_system=None)
    console.print(table)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines())


def _terminal_width() -> int | None:
    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def run_list(args: argparse.Namespace) -> int:
    check_filters(args.kind, args.family, args.tag)
    items = list_components(kind=args.kind, family=args.family, tag=args.tag)
    if args.json:
        emit(json.dumps([c.to_dict() for c in items], indent=2))
    elif args.markdown:
        emit(registry_markdown(items))
    elif args.wide:
        emit(wide_table(items, _terminal_width()))
    else:
        emit(compact_table(items, _terminal_width()))
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
    console.print("\n[bold]Hyper-parameters (default)[/bold]")
    for k, v in c.defaults.items():
        console.print(f"    {k} = {v!r}", markup=False, highlight=False)
    if not c.defaults:
        console.print("    (none)")
    console.print("\n[bold]Description[/bold]")
    console.print(textwrap.indent(c.doc, "    "), markup=False, highlight=False)
    if isinstance(c, Objective):
        console.print("\n[bold]Example[/bold]")
        console.print(textwrap.indent(snippet(c), "    "), markup=False, highlight=False)
    return 0
