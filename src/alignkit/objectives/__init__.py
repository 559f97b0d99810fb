"""Every objective, one paper per file, grouped by family. Importing this package registers them all."""

from alignkit.objectives import (  # noqa: F401
    classification,
    distillation,
    policy_gradient,
    preference,
    reference_free,
    representation,
    reward,
    sft,
    unpaired,
)
