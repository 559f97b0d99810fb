from alignkit.objectives.sft import sft  # noqa: F401
