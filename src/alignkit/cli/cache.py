"""``alignkit cache``: where alignkit caches (testbed base models, reference log-probs), how big, and clearing it.

alignkit cache            # the root, which environment variable chose it, its size per sub-folder
alignkit cache clear      # delete it
"""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "cache",
        help="show the cache folder (path, size) or clear it",
        description="The cache root is $ALIGNKIT_CACHE, else $XDG_CACHE_HOME/alignkit, else ~/.cache/alignkit. "
        "It holds testbed base models (testbed/) and reference log-prob caches (reference/).",
    )
    p.add_argument("action", nargs="?", default="show", choices=("show", "clear"), help="show or clear")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from alignkit.cache import cache_root, cache_source, clear_cache, folder_size, human_size

    root = cache_root()
    if args.action == "clear":
        freed = clear_cache(root)
        print(f"removed {root} ({human_size(freed)})")
        return 0
    print(f"cache root: {root}")
    print(f"chosen by:  {cache_source()}")
    if not root.exists():
        print("size:       0 B (not created yet)")
        return 0
    print(f"size:       {human_size(folder_size(root))}")
    for child in sorted(root.iterdir()):
        print(f"  {child.name + ('/' if child.is_dir() else ''):24s} {human_size(folder_size(child))}")
    return 0
