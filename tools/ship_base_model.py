"""Build the default testbed base model(s) and ship them inside the package, so ``alignkit arena`` does not
pretrain on first use.

    python tools/ship_base_model.py                  # the sentiment task's default base model
    python tools/ship_base_model.py --task sentiment --check   # exit 1 unless the shipped copy matches the defaults

Each model is built from scratch with ``get_base_model(task, rebuild=True)`` in a temporary cache (the same
deterministic build a user's machine would run), then copied to ``src/alignkit/testbed/data/base/<task>-<key>/``
with its ``meta.json`` (config, SHA-256 of every file, build statistics). The SHA-256 of the weights is written to
``src/alignkit/testbed/data/base/PROVENANCE.md``. Older shipped copies of the same task are removed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from alignkit.testbed import get_task
from alignkit.testbed.model import SHIPPED_DIR, get_base_model, model_path

PROVENANCE = SHIPPED_DIR / "PROVENANCE.md"


def shipped_folder(task: str) -> Path:
    task_obj = get_task(task)
    return SHIPPED_DIR / model_path(task_obj, task_obj.base_config(), Path(".")).name


def ship(task: str) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        base = get_base_model(task, cache_dir=tmp, rebuild=True, progress=True)
        dest = shipped_folder(task)
        for old in SHIPPED_DIR.glob(f"{task}-*"):
            if old.is_dir() and old != dest:
                shutil.rmtree(old)
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(base.path, dest)
    meta = json.loads((dest / "meta.json").read_text())
    lines = [
        "# Shipped testbed base models",
        "",
        "Built by this project's own command, `python tools/ship_base_model.py --task TASK`, which pretrains the",
        "task's default base model from scratch (`get_base_model(task, rebuild=True)`, fixed seeds) and copies the",
        "cache folder here. `get_base_model` copies a shipped folder into the cache on first use after checking every",
        "file against the SHA-256 in its `meta.json`; a mismatch warns and builds instead. Rebuilding on another",
        "machine gives the same model up to floating-point reduction order.",
        "",
    ]
    for folder in sorted(p for p in SHIPPED_DIR.iterdir() if p.is_dir()):
        m = json.loads((folder / "meta.json").read_text())
        lines += [
            f"## `{folder.name}`",
            "",
            f"- task `{m['config']['task']}`, config key `{m['key']}`, "
            f"{m['stats'].get('parameters', 0):,} parameters, held-out loss {m['stats'].get('heldout_loss'):.3f}",
            f"- `model.safetensors` SHA-256: `{m['files'].get('model.safetensors')}`",
            f"- `tokenizer.json` SHA-256: `{m['files'].get('tokenizer.json')}`",
            "",
        ]
    PROVENANCE.write_text("\n".join(lines))
    print(f"shipped {dest} ({meta['stats'].get('pretrain_seconds', 0):.0f} s of pretraining)")
    return dest


def check(task: str) -> bool:
    from alignkit.testbed.model import _load

    folder = shipped_folder(task)
    ok = _load(folder, get_task(task).base_config()) is not None
    print(f"{folder}: {'ok' if ok else 'missing or does not match the default config / its checksums'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="sentiment", help="testbed task (default: sentiment)")
    ap.add_argument("--check", action="store_true", help="only check the shipped copy")
    args = ap.parse_args(argv)
    if args.check:
        return 0 if check(args.task) else 1
    ship(args.task)
    return 0


if __name__ == "__main__":
    sys.exit(main())
