"""``alignkit list`` and ``alignkit explain``: the registry as a table, JSON, or one component's manual."""

from __future__ import annotations

import argparse
import difflib
import io
import json
import os
import re
import shutil
import sys
import textwrap
from typing import Any

from rich.console import Console
from rich.table import Table

from alignkit.hyperparameters import describe
from alignkit.registry import KINDS, Objective, _docstring_section, get, list_components


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
    from alignkit.cli._examples import objective_snippet

    return objective_snippet(c)


# internal bookkeeping in docstrings (the project's research catalogue) that a user has no use for
_INTERNAL = [
    (re.compile(r"\s*\((?:the |via the )?(?:research |project )?catalog(?:ue)? entr(?:y|ies)[^)]*\)"), ""),
    (re.compile(r"\s*\(#\d+(?:\s*/\s*#\d+)*\)"), ""),
    (re.compile(r"\(the catalog(?:ue)? lists it as unverified\)"), "(not verified)"),
    (re.compile(r",? ?read by the catalog(?:ue)?"), ""),
    (
        re.compile(r"(?:the )?(?:research |project )?catalog(?:ue)? entr(?:y|ies) #?\d+(?:\s*/\s*#?\d+)*"),
        "the project's paper notes",
    ),
    (
        re.compile(r"(?:as summarised |recalled )?in the (?:project(?:'s)? |research )?catalog(?:ue)?"),
        "in paper notes",
    ),
    (re.compile(r"(?:via|from) the catalog(?:ue)?"), "from paper summaries"),
    (re.compile(r"(?:the )?(?:research |project )?catalog(?:ue)?\b"), "the project's paper notes"),
    (re.compile(r"\bUNVERIFIED\b"), "not verified"),
    (re.compile(r"\bUnverified\b"), "Not verified"),
]
_NOTE_START = re.compile(r"(?:^|(?<=[.)]\s))(?:Source|Sources):")


def user_text(text: str) -> str:
    """Docstring text with the project's internal bookkeeping phrased for users."""
    for pattern, repl in _INTERNAL:
        text = pattern.sub(repl, text)
    return text


def split_doc(doc: str) -> tuple[str, str]:
    """(description, notes) of a docstring without its Formula and Hyper-parameters blocks: paragraphs from
    "Source:" on, and paragraphs about what was not verified, become notes."""
    lines = textwrap.dedent(doc).splitlines()
    kept: list[str] = []
    skipping = False
    for line in lines:
        if line.strip() in ("Formula:", "Hyper-parameters:"):
            skipping = True
            continue
        if skipping:
            if line.strip() and not line.startswith((" ", "\t")):
                skipping = False
            else:
                continue
        kept.append(line)
    paragraphs = re.split(r"\n\s*\n", "\n".join(kept).strip())
    desc: list[str] = []
    notes: list[str] = []
    for para in paragraphs:
        m = _NOTE_START.search(para)
        if m is not None:
            head, tail = para[: m.start()].strip(), para[m.start() :].strip()
            if head:
                desc.append(head)
            notes.append(tail)
        elif re.search(r"(?i)\bunverified\b|catalog", para):
            notes.append(para)
        else:
            desc.append(para)
    return user_text("\n\n".join(desc)), user_text("\n\n".join(notes))


def explain_text(c: Any) -> str:
    """The manual ``alignkit explain`` prints (plain text: the examples paste and run as printed)."""
    from alignkit.cli._examples import example

    out = [f"{c.name}  ({c.kind}, family {c.family or '-'})"]
    if c.aliases:
        out.append(f"aliases:      {', '.join(c.aliases)}")
    out.append(f"paper:        {c.paper}  (arXiv:{c.arxiv})")
    out.append(f"verification: {c.verification or '- (not recorded)'}")
    tags = c.derived_tags
    if tags:
        out.append(f"tags:         {', '.join(tags)}")
    if isinstance(c, Objective):
        bt = c.batch_type.__name__ if c.batch_type else "PreferenceBatch or SFTBatch"
        needs = [f"batch: {bt}", f"reference log-probs: {'required' if c.needs_reference else 'not used'}"]
        needs.append(f"log-prob aggregation: {c.aggregation}")
        needs.append(f"normalised per {c.normalisation}")
        out.append("inputs:       " + "; ".join(needs))
        if c.requires:
            out.append(f"requires:     {', '.join(c.requires)} (the trainer supplies these or refuses)")
        for field_name, why in c.optional.items():
            out.append(f"optional:     {field_name}: without it, {why}")
        for switch, fields in c.requires_when.items():
            out.append(f"with {switch}: {', '.join(fields)}")
        if c.state is not None:
            out.append(f"state:        {', '.join(c.state.init)} (kept by the trainer between steps)")
    out += ["", "Formula:", textwrap.indent(c.formula or "(see the description)", "    ")]
    out += ["", "Hyper-parameters (defaults):"]
    hps = c.hyper_parameters if isinstance(c, Objective) else c.defaults
    ranges = getattr(c, "valid_ranges", {})
    out += [
        f"    {k} = {v!r}" + (f"    valid: {describe(ranges[k])}" if k in ranges else "")
        for k, v in hps.items()
    ] or ["    (none)"]
    block = user_text(_docstring_section(c.doc, "Hyper-parameters"))
    if block:
        out += ["", "Hyper-parameters (meaning, default and its source):", textwrap.indent(block, "    ")]
    desc, notes = split_doc(c.doc)
    out += ["", "Description:", textwrap.indent(desc, "    ")]
    if notes:
        out += [
            "",
            "Notes (what this was checked against; 'not verified' marks what the sources did not settle):",
        ]
        out.append(textwrap.indent(notes, "    "))
    ex = example(c)
    out += ["", "Example (Python; paste and run):", "", ex.python.rstrip()]
    if ex.cli:
        out += ["", "Command line:", "", ex.cli]
    return "\n".join(out) + "\n"


def run_explain(args: argparse.Namespace) -> int:
    emit(explain_text(get(args.name)))
    return 0
