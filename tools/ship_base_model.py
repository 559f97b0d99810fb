"""Build testbed base models from scratch and ship them, so nothing pretrains on first use: the default base model
inside the package (``alignkit arena``), and the slow effect tests' base models under ``tests/assets/base_models`` (CI).

    python tools/ship_base_model.py                  # the sentiment task's default base model, into the package
    python tools/ship_base_model.py --task sentiment --check   # exit 1 unless the shipped copy matches the defaults
    python tools/ship_base_model.py --effect         # tests/effect.py:effect_bases() not yet shipped (or stale)
    python tools/ship_base_model.py --effect --check # exit 1 unless each of them is shipped and matches

Each model is built from scratch with ``get_base_model(task, config, rebuild=True)`` in a temporary cache (the same
deterministic build a user's machine would run), then copied to ``<dest>/<task>-<key>/`` with its ``meta.json``
(config, SHA-256 of every file, build statistics). The SHA-256 of the weights is written to ``<dest>/PROVENANCE.md``.
Older shipped copies (of the same task in the package; not in the effect list under tests/assets/base_models) are removed.
The test suite finds ``tests/assets/base_models`` through the ``ALIGNKIT_BASE_MODELS`` environment variable (tests/conftest.py).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from alignkit.testbed import get_task
from alignkit.testbed.model import SHIPPED_DIR, get_base_model, model_path

ROOT = Path(__file__).resolve().parents[1]
EFFECT_DIR = ROOT / "tests" / "assets" / "base_models"
HEADER = {
    SHIPPED_DIR: "the task's default base model",
    EFFECT_DIR: "the slow effect tests' base models (`tests/effect.py: effect_bases()`)",
}


def shipped_folder(task: Any, config: Any = None, dest: Path = SHIPPED_DIR) -> Path:
    task_obj = get_task(task) if isinstance(task, str) else task
    return dest / model_path(task_obj, config or task_obj.base_config(), Path(".")).name


def write_provenance(dest: Path) -> None:
    lines = [
        "# Shipped testbed base models",
        "",
        "Built by this project's own command, `python tools/ship_base_model.py"
        + (" --effect" if dest == EFFECT_DIR else " --task TASK")
        + f"`, which pretrains {HEADER.get(dest, 'each base model')}",
        "from scratch (`get_base_model(task, config, rebuild=True)`, fixed seeds) and copies the cache folder here.",
        "`get_base_model` copies a shipped folder into the cache on first use after checking every file against the",
        "SHA-256 in its `meta.json`; a mismatch warns and builds instead. Rebuilding on another machine gives the same",
        "model up to floating-point reduction order"
        + (
            ", which depends on the CPU thread setting: these were built after torch.set_num_threads(2), as the test"
            " suite sets it (tests/conftest.py; an explicit call gives other bits than the same default)."
            if dest == EFFECT_DIR
            else "."
        ),
        "",
    ]
    for folder in sorted(p for p in dest.iterdir() if p.is_dir()):
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
    (dest / "PROVENANCE.md").write_text("\n".join(lines))


def ship(task: Any, config: Any = None, dest: Path = SHIPPED_DIR, replace_task: bool = True) -> Path:
    """Build ``task``'s base model (``config``: the task's default) from scratch and copy it to ``dest``. With
    ``replace_task`` the other shipped copies of the same task in ``dest`` are removed."""
    task_obj = get_task(task) if isinstance(task, str) else task
    folder = shipped_folder(task_obj, config, dest)
    if dest == EFFECT_DIR:
        # exactly as tests/conftest.py sets it: an explicit torch.set_num_threads(2) changes the reduction order
        # (and so the weights' bits) even where 2 is already the default, and the recorded claims come from test runs
        torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        base = get_base_model(task_obj, config, cache_dir=tmp, rebuild=True, progress=True)
        if replace_task:
            for old in dest.glob(f"{task_obj.name}-*"):
                if old.is_dir() and old != folder:
                    shutil.rmtree(old)
        if folder.exists():
            shutil.rmtree(folder)
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copytree(base.path, folder)
    meta = json.loads((folder / "meta.json").read_text())
    print(f"shipped {folder} ({meta['stats'].get('pretrain_seconds', 0):.0f} s of pretraining)")
    return folder


def check(task: Any, config: Any = None, dest: Path = SHIPPED_DIR) -> bool:
    from alignkit.testbed.model import _load

    task_obj = get_task(task) if isinstance(task, str) else task
    folder = shipped_folder(task_obj, config, dest)
    ok = _load(folder, config or task_obj.base_config()) is not None
    print(f"{folder}: {'ok' if ok else 'missing or does not match its config / its checksums'}")
    return ok


def effect_bases() -> list[tuple[Any, Any]]:
    sys.path.insert(0, str(ROOT))
    from tests.effect import effect_bases as listed

    return listed()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="sentiment", help="testbed task (default: sentiment)")
    ap.add_argument(
        "--effect", action="store_true", help="the effect tests' base models, into tests/assets/base_models"
    )
    ap.add_argument("--check", action="store_true", help="only check the shipped copies")
    args = ap.parse_args(argv)
    if args.effect:
        bases = effect_bases()
        if args.check:
            return 0 if all([check(t, c, EFFECT_DIR) for t, c in bases]) else 1
        keep = {shipped_folder(t, c, EFFECT_DIR) for t, c in bases}
        for t, c in bases:
            if not check(t, c, EFFECT_DIR):
                ship(t, c, EFFECT_DIR, replace_task=False)
        for old in EFFECT_DIR.iterdir():
            if old.is_dir() and old not in keep:
                shutil.rmtree(old)
        write_provenance(EFFECT_DIR)
        return 0
    if args.check:
        return 0 if check(args.task) else 1
    ship(args.task)
    write_provenance(SHIPPED_DIR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
