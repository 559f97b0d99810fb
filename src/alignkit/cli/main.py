"""``alignkit`` — entry point. Subcommands live one per module in this package (``add_parser`` + ``run``)."""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning: on a shared or small CPU, spinning threads slowed steps ~4x.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import copy  # noqa: E402
import importlib  # noqa: E402
import pkgutil  # noqa: E402
import sys  # noqa: E402

import alignkit.cli as cli_pkg  # noqa: E402


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The one help formatter of every ``alignkit`` command: descriptions with line breaks keep them (the module
    docstrings hold example command lines), one-paragraph descriptions are wrapped, and every option shows its default, as argparse's
    ``ArgumentDefaultsHelpFormatter`` does, but also for options without help text, lists shown as they are typed
    (``0 0.05 0.1``), and no ``(default: None)`` / ``(default: False)`` noise."""

    @staticmethod
    def default_text(action: argparse.Action) -> str:
        """`` (default: ...)`` for ``action``, or '' when there is nothing to show or its help already says it."""
        d = action.default
        if action.help is argparse.SUPPRESS or d is None or d is False or d is argparse.SUPPRESS:
            return ""
        if isinstance(d, (list, tuple)) and not d:
            return ""
        if not action.option_strings and action.nargs not in ("?", "*"):
            return ""
        help_text = action.help or ""
        if "%(default)" in help_text or "default" in help_text.lower():
            return ""
        shown = " ".join(map(str, d)) if isinstance(d, (list, tuple)) else str(d)
        if shown == "":
            shown = "''"
        return f"(default: {shown.replace('%', '%%')})"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip():  # laid out by hand (a module docstring with command lines): keep it
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return argparse.HelpFormatter._fill_text(self, text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        extra = self.default_text(action)
        help_text = action.help or ""
        return f"{help_text} {extra}".strip() if extra else help_text

    def _format_action(self, action: argparse.Action) -> str:
        extra = self.default_text(action)
        if not action.help and extra:  # argparse prints no help line for help=None
            action = copy.copy(action)
            action.help = extra
        return super()._format_action(action)


def use_formatter(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and every sub-command parser below it :class:`HelpFormatter`."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                use_formatter(child)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alignkit",
        description="Training objectives that align models: list, explain, train, evaluate, compare.",
        formatter_class=HelpFormatter,
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
    use_formatter(parser)
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
