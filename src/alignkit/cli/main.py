"""``alignkit`` — entry point. Subcommands live one per module in this package (``add_parser`` + ``run``)."""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning: on a shared or small CPU, spinning threads slowed steps ~4x.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import importlib  # noqa: E402
import pkgutil  # noqa: E402
import sys  # noqa: E402

import alignkit.cli as cli_pkg  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alignkit",
        description="Training objectives that align models: list, explain, train, evaluate, compare.",
    )
    parser.add_argument(
        "--version", action="version", version=f"alignkit {importlib.import_module('alignkit').__version__}"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(cli_pkg.__path__), key=lambda m: m.name):
        if info.name in ("main",) or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"alignkit.cli.{info.name}")
        if hasattr(module, "add_parser"):
            module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # Ctrl-C: stop like SIGTERM (checkpoints are written atomically), no traceback
        print(f"alignkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        msg = user_message(exc)
        if msg is None or os.environ.get("ALIGNKIT_DEBUG"):
            raise  # a bug, not bad input: keep the traceback
        print(f"alignkit {args.command}: error: {msg}", file=sys.stderr)
        return 2


def user_message(exc: BaseException) -> str | None:
    """One line for an error the user can act on (bad input, a missing/corrupt file, a full disk); None for a bug.

    ``UserError`` is bad input by definition. ``ValueError`` stays a user error too: the library raises it for bad
    values throughout (naming the field). ``OSError`` (a missing model path, a permission, ``shutil.SameFileError``,
    no space left), YAML syntax errors and corrupt safetensors files name their file. ``TypeError``, ``KeyError``
    and everything else are bugs and keep their traceback.
    """
    import errno

    from alignkit.errors import UserError

    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, OSError):
        if exc.errno == errno.ENOSPC:
            return f"no space left on device{f' writing {exc.filename}' if exc.filename else ''}"
        if exc.filename is not None and exc.strerror:
            return f"{exc.filename}: {exc.strerror}"
        return str(exc) or type(exc).__name__
    if isinstance(exc, RuntimeError) and ("unexpected pos" in str(exc) or "No space left" in str(exc)):
        return f"no space left on device ({str(exc).splitlines()[0][:200]})"
    if isinstance(exc, ValueError):
        return str(exc)
    try:
        import yaml

        if isinstance(exc, yaml.YAMLError):
            return f"invalid YAML: {exc}".replace("\n", " ")
    except ImportError:  # pragma: no cover
        pass
    if type(exc).__name__ == "SafetensorError":
        return f"corrupt or unreadable safetensors file: {exc}"
    return None


if __name__ == "__main__":
    sys.exit(main())
