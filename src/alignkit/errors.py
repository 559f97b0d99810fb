"""Errors a person can act on.

``UserError`` (and its subclasses) means *the input is wrong*: a flag, a config field, a data row, a file, an output
folder. ``alignkit`` prints it as one line (``alignkit train: error: ...``) naming the field or file; any other
exception is a bug in alignkit (or a library under it) and keeps its traceback.

Each subclass also derives from the built-in error that code written before it expects (``ValueError``,
``TypeError``, ``KeyError``, ``FileNotFoundError``), so ``except ValueError`` keeps working.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input: the message names the field, flag, file or row to fix. A ``ValueError`` too, so handlers
    written before it still catch it."""


class ConfigError(UserError, ValueError):
    """A ``TrainConfig`` field (or its flag / YAML key) has a wrong type or value; the message names the field."""


class HyperParameterError(UserError, TypeError, ValueError):
    """An objective hyper-parameter is unknown to the chosen objective or outside its declared range."""


class UnknownComponentError(UserError, KeyError):
    """No registered component has this name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InputPathError(UserError, FileNotFoundError):
    """A model / data / config path does not exist or is not what it must be."""


class NoNetworkError(UserError, OSError):
    """A hub id was given but the hub cannot be reached (or offline mode is on)."""


class OutputDirError(UserError, ValueError):
    """The output folder cannot be used for this run (it holds other files, another run, or the inputs)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint cannot be resumed from (corrupt, incomplete, another run's, or past ``max_steps``)."""


class InputFileError(UserError, ValueError):
    """An input file's content is wrong (not UTF-8, not JSON, a wrong type); the message names the file and line."""
