"""Every objective, one paper per file, grouped by family. Importing this package registers them all."""

from alignkit.objectives import (  # noqa: F401
    distillation,
    policy_gradient,
    preference,
    reference_free,
    reward,
    sft,
    unpaired,
)
