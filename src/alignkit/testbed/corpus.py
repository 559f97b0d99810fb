"""The shipped Shakespeare corpus (see ``data/PROVENANCE.md``): pretraining documents and held-out prompt lines.

>>> from alignkit.testbed.corpus import load_shakespeare, HELD_OUT
>>> texts = load_shakespeare()          # {"hamlet_gut.txt": "...", ...}, 42 files, ~5.2 M chars
"""

from __future__ import annotations

import functools
import json
import lzma
import re
from importlib import resources

DATA_FILE = "shakespeare_gut.json.xz"

#: Plays kept out of pretraining; their lines supply the sentiment prompts.
HELD_OUT: tuple[str, ...] = (
    "macbeth_gut.txt",
    "othello_gut.txt",
    "twelfth_night_gut.txt",
    "tempest_gut.txt",
)


@functools.cache
def load_shakespeare() -> dict[str, str]:
    """All 42 modern-spelling texts, ``{file name: text}``, read from the compressed file shipped in the package."""
    path = resources.files("alignkit.testbed").joinpath("data", DATA_FILE)
    with path.open("rb") as fh:
        texts = json.loads(lzma.decompress(fh.read()).decode("utf-8"))
    if not isinstance(texts, dict) or not texts:
        raise ValueError(f"the shipped corpus {DATA_FILE} is empty or malformed; reinstall alignkit")
    return texts


def pretraining_documents(max_chars: int | None = None) -> list[str]:
    """The training plays (every text except :data:`HELD_OUT`), in file-name order.

    ``max_chars`` truncates the total (tests use a small slice); ``None`` keeps everything (~4.6 M chars).
    """
    if max_chars is not None and max_chars <= 0:
        raise ValueError(f"max_chars must be positive or None; got {max_chars}")
    texts = load_shakespeare()
    docs: list[str] = []
    total = 0
    for name in sorted(texts):
        if name in HELD_OUT:
            continue
        text = texts[name]
        if max_chars is not None:
            text = text[: max_chars - total]
        docs.append(text)
        total += len(text)
        if max_chars is not None and total >= max_chars:
            break
    return docs


_STAGE = re.compile(r"^\s*[\[(]|^\s*(Enter|Exit|Exeunt|Re-enter|SCENE|ACT)\b", re.IGNORECASE)


def prompt_lines() -> list[str]:
    """Candidate prompt lines from the held-out plays: >= 5 words, not stage directions, not ALL CAPS, in order."""
    texts = load_shakespeare()
    out: list[str] = []
    for name in HELD_OUT:
        for raw in texts[name].splitlines():
            line = raw.strip()
            if len(line.split()) < 5 or _STAGE.search(line):
                continue
            letters = [c for c in line if c.isalpha()]
            if not letters or sum(c.isupper() for c in letters) > 0.5 * len(letters):
                continue
            out.append(line)
    return out
