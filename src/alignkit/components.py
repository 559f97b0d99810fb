"""Where the registered components live: the one module that imports them all (lazily, per kind).

The registry (:mod:`alignkit.registry`) is a leaf: it imports no component. This module, at the top of the
package, knows the component packages and installs :func:`load` as the registry's loader, so
``import alignkit; alignkit.get("dpo")`` imports the objectives and nothing else (no trainer, no safety code).
"""

from __future__ import annotations

import importlib

from alignkit import registry

# kind -> the packages whose import registers components of that kind. The objectives come first: `get(name)`
# tries them before loading everything.
PACKAGES: dict[str, tuple[str, ...]] = {
    "objective": ("alignkit.objectives",),
    "decoder": ("alignkit.decoding",),
    "merge": ("alignkit.merging",),
    "data_rule": ("alignkit.curation", "alignkit.data.ptst", "alignkit.datatools"),
    "diagnostic": ("alignkit.diagnostics", "alignkit.testbed.stability"),
    "safety": ("alignkit.safety",),
    "optimizer": ("alignkit.optim", "alignkit.train.schedules"),
    "scaling_law": ("alignkit.scaling",),
    "recipe": ("alignkit.recipes",),
    "metric": ("alignkit.eval.metrics",),
    "adaptation": ("alignkit.adaptation",),
    "vision": ("alignkit.vision",),
}

_loaded: set[str] = set()


def load(kind: str | None = None) -> None:
    """Import the packages registering ``kind`` (``None``: every package). Idempotent and cheap once done."""
    kinds = [kind] if kind in PACKAGES else list(PACKAGES)
    for k in kinds:
        for module in PACKAGES[k]:
            if module not in _loaded:
                _loaded.add(module)
                importlib.import_module(module)


registry.set_loader(load)
