"""Training data: reading files in TRL's formats, validating every row, tokenising prompt and completion apart.

``prepare(data, mode=..., tokenizer=...)`` returns a :class:`Prepared` set of token-id examples and a
:class:`DataReport` (rows read, skipped with reasons, truncated). Errors name the file, the row and the field.
"""

from alignkit.data.loading import Record, load_records
from alignkit.data.prepare import DataError, DataReport, Example, Prepared, prepare

__all__ = ["DataError", "DataReport", "Example", "Prepared", "Record", "load_records", "prepare"]
