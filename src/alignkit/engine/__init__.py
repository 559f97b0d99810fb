"""The model side of alignkit: per-token log-probs of completions, sampling, reference handling.

Objectives stay pure functions of tensors; this package turns a Hugging Face causal LM plus token ids into
those tensors. Nothing here holds a loss formula.
"""

from alignkit.engine.generation import generate, sample, sample_with_logps
from alignkit.engine.logprobs import TokenLogps, completion_logps, sequence_logps

__all__ = ["TokenLogps", "completion_logps", "generate", "sample", "sample_with_logps", "sequence_logps"]
