from alignkit.objectives.sft import dco, goldfish, longalign, number_token_loss, sft  # noqa: F401
