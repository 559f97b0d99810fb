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
    except (
        KeyError,
        ValueError,
        FileNotFoundError,
        TypeError,
    ) as exc:  # user errors: one clear line, no traceback
        if os.environ.get("ALIGNKIT_DEBUG"):
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"alignkit {args.command}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
