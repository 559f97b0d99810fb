"""Callables named by ``module:function`` strings (CLI flags, YAML configs, recipes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alignkit.errors import UserError


def import_callable(spec: str, flag: str) -> Callable[..., Any]:
    """The callable named by ``module:function``; errors name the flag (or config key) and what failed."""
    import importlib

    if not isinstance(spec, str) or ":" not in spec:
        raise UserError(f"{flag} must be 'module:function'; got {spec!r}")
    mod_name, attr = spec.split(":", 1)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise UserError(f"{flag} {spec!r}: cannot import module {mod_name!r} ({exc})") from exc
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise UserError(f"{flag} {spec!r}: module {mod_name!r} has no callable {attr!r}")
    return fn


def reward_fn_from_spec(spec: Any, flag: str = "--reward-fn") -> Any:
    """A reward function: the callable given, or the one a ``module:function`` string names."""
    return spec if not isinstance(spec, str) else import_callable(spec, flag)
