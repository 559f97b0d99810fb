"""Data tools from the seed papers (registered with kind="data_rule"): controllable distribution shifts and
dataset distillation by trajectory matching. Importing this package registers them."""

from alignkit.datatools import control_shift, distillation  # noqa: F401
