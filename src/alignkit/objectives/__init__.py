"""Every objective, one paper per file, grouped by family. Importing this package registers them all."""

from alignkit.objectives import policy_gradient, preference, reference_free, reward, sft, unpaired  # noqa: F401
from alignkit.objectives import representation  # noqa: F401
