"""Regenerate the component catalogue in README.md from the registry: ``python tools/update_readme.py``.

One row per registered component, with how it was verified (``alignkit.spec.VERIFICATION_LEVELS``)."""

from __future__ import annotations

import pathlib
import re

from alignkit.registry import Objective, list_components
from alignkit.spec import VERIFICATION_LEVELS

BEGIN, END = "<!-- catalogue:begin -->", "<!-- catalogue:end -->"


def catalogue_markdown() -> str:
    """The catalogue as a Markdown table (every component, its paper and its verification level), then the
    legend of the levels."""
    rows = [
        "| name | kind | family | aliases | paper | arXiv | verification | reference | aggregation |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in list_components():
        is_obj = isinstance(c, Objective)
        ref = ("yes" if c.needs_reference else "no") if is_obj else ""
        agg = c.aggregation if is_obj else ""
        aliases = ", ".join(f"`{a}`" for a in c.aliases)
        paper = c.paper + "".join(f" (also: {t})" for t in c.alias_titles)
        rows.append(
            f"| `{c.name}` | {c.kind} | {c.family} | {aliases} | {paper} | {c.arxiv} | {c.verification} | {ref} "
            f"| {agg} |"
        )
    legend = ["", "Verification levels:", ""] + [f"- `{k}`: {v}" for k, v in VERIFICATION_LEVELS.items()]
    return "\n".join(rows + legend)


def render(readme: str) -> str:
    block = f"{BEGIN}\n{catalogue_markdown()}\n{END}"
    return re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, readme, flags=re.S)


if __name__ == "__main__":
    path = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    path.write_text(render(path.read_text()))
    print(f"updated {path}")
