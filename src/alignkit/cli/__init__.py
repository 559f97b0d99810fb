"""The ``alignkit`` command line. Each module here that defines ``add_parser(subparsers)`` is a subcommand."""

from alignkit.callables import import_callable

__all__ = ["import_callable"]
