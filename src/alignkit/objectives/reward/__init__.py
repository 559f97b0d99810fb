from alignkit.objectives.reward import bradley_terry  # noqa: F401
