from alignkit.objectives.sft import dco, goldfish, number_token_loss, sft  # noqa: F401
