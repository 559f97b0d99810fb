"""Diagnostics: measurements that explain what an objective does to a model (registered with kind="diagnostic").
Importing this package registers them."""

from alignkit.diagnostics import gradient_entanglement, judge_bias, taxonomy  # noqa: F401
