"""Regenerate the objective catalogue in README.md from the registry: ``python tools/update_readme.py``."""

from __future__ import annotations

import pathlib
import re

from alignkit.cli.catalog import registry_markdown

BEGIN, END = "<!-- catalogue:begin -->", "<!-- catalogue:end -->"


def render(readme: str) -> str:
    block = f"{BEGIN}\n{registry_markdown()}\n{END}"
    return re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, readme, flags=re.S)


if __name__ == "__main__":
    path = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    path.write_text(render(path.read_text()))
    print(f"updated {path}")
