"""Errors a user can act on. The CLI prints these as one line (naming the file, row and field where there is
one); any other exception is an internal error and keeps its traceback."""

from __future__ import annotations


class UserError(ValueError):
    """Bad input or a setting the run cannot honour. Subclasses ``ValueError`` so existing handlers still apply."""
