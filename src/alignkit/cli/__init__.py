"""The ``alignkit`` command line. Each module here that defines ``add_parser(subparsers)`` is a subcommand."""

from collections.abc import Callable
from typing import Any


def import_callable(spec: str, flag: str) -> Callable[..., Any]:
    """The callable named by ``module:function`` (a CLI flag's value); errors name the flag and what failed."""
    import importlib

    mod_name, attr = spec.split(":", 1)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ValueError(f"{flag} {spec!r}: cannot import module {mod_name!r} ({exc})") from exc
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise ValueError(f"{flag} {spec!r}: module {mod_name!r} has no callable {attr!r}")
    return fn
