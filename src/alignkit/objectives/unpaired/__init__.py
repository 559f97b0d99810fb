from alignkit.objectives.unpaired import bco, kto  # noqa: F401
