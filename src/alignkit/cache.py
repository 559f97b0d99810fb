"""The one cache folder alignkit writes to: testbed base models, reference log-prob caches, benchmark runs.

The root is, in this order:

1. ``$ALIGNKIT_CACHE`` (used as given),
2. ``$XDG_CACHE_HOME/alignkit``,
3. ``~/.cache/alignkit``.

Sub-folders: ``testbed/`` (base models of ``alignkit arena`` / ``eval`` / ``safety-bench``), ``reference/``
(reference log-probs of ``alignkit train``). ``alignkit cache`` prints the root and its size; ``alignkit cache
clear`` deletes it. Every ``--cache-dir`` flag overrides the root for one command.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

#: the environment variables read by :func:`cache_root`, in the order they are tried
ENV_ORDER = ("ALIGNKIT_CACHE", "XDG_CACHE_HOME")


def cache_root() -> Path:
    """The cache root: ``$ALIGNKIT_CACHE``, else ``$XDG_CACHE_HOME/alignkit``, else ``~/.cache/alignkit``."""
    explicit = os.environ.get("ALIGNKIT_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "alignkit"
    return Path.home() / ".cache" / "alignkit"


def cache_source() -> str:
    """Which rule chose :func:`cache_root` (for ``alignkit cache``)."""
    if os.environ.get("ALIGNKIT_CACHE"):
        return "$ALIGNKIT_CACHE"
    if os.environ.get("XDG_CACHE_HOME"):
        return "$XDG_CACHE_HOME/alignkit"
    return "~/.cache/alignkit (neither $ALIGNKIT_CACHE nor $XDG_CACHE_HOME is set)"


def folder_size(path: str | os.PathLike[str]) -> int:
    """Bytes in the files under ``path`` (0 if it does not exist; symbolic links are not followed)."""
    root = Path(path)
    if not root.exists():
        return 0
    if root.is_file():
        return root.stat().st_size
    return sum(p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def clear_cache(path: str | os.PathLike[str] | None = None) -> int:
    """Delete the cache folder (default :func:`cache_root`); returns the bytes freed."""
    root = Path(path) if path is not None else cache_root()
    size = folder_size(root)
    if root.exists():
        if not root.is_dir():
            raise ValueError(f"cache root {root} is not a folder; refusing to delete it")
        shutil.rmtree(root)
    return size


def human_size(n: int) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
