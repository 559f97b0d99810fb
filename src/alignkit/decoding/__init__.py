"""Decoding-time alignment (issue #8): methods that align a model's outputs at inference time — logit mixing
(DeRa, InRa/CLM, AED), search and selection (Darwin, alignment resampling with a watermark), prompting
(URIAL, guideline retrieval), rewriting (Aligners), a learned global prefix (Aligner) and lexical shortlists.
Importing this package registers them; ``alignkit generate --decoder NAME`` runs a registered decoder.

A registered decoder is ``fn(model, tokenizer, prompts, context, **hyper_parameters) -> out[prompt][sample]``
where ``context`` is a :class:`DecodeContext` (reference model, reward function, sampling settings).
"""

from alignkit.decoding._common import (
    CachedNextTokenLogits,
    DecodeContext,
    interpolate_logits,
    next_token_logits,
    sample_text,
)
from alignkit.decoding.aed import AEDProcessor, aed, aed_merge, competitive_index, nucleus_size
from alignkit.decoding.aligner_prefix import (
    AlignerPrefix,
    add_aligner_prefix,
    aligner_prefix,
    load_aligner_prefix,
)
from alignkit.decoding.aligners import (
    aligner_loss,
    aligners,
    build_aligner_examples,
    tokenize_aligner_examples,
)
from alignkit.decoding.clm import ControlProcessor, add_identity_layer, clm
from alignkit.decoding.darwin import darwin, reward_guided_replacement
from alignkit.decoding.dera import DeRaProcessor, dera, dera_logits
from alignkit.decoding.flexible_realignment import (
    DistillBatch,
    distill_batch,
    fused_teacher_logprobs,
    inra,
    trra,
)
from alignkit.decoding.guidelines import (
    GuidelineRetriever,
    guided_prompt,
    guideline_library,
    retriever_info_nce,
)
from alignkit.decoding.lexical_shortlist import build_shortlist, consensus_rerank, lexical_shortlist
from alignkit.decoding.urial import token_distribution_shift, urial, urial_prompt
from alignkit.decoding.watermark_resampling import GreenListWatermark, alignment_resampling, best_of_n

__all__ = [
    "AEDProcessor",
    "aed",
    "aed_merge",
    "competitive_index",
    "nucleus_size",
    "AlignerPrefix",
    "add_aligner_prefix",
    "aligner_prefix",
    "load_aligner_prefix",
    "aligner_loss",
    "aligners",
    "build_aligner_examples",
    "tokenize_aligner_examples",
    "darwin",
    "reward_guided_replacement",
    "GuidelineRetriever",
    "guided_prompt",
    "guideline_library",
    "retriever_info_nce",
    "build_shortlist",
    "consensus_rerank",
    "lexical_shortlist",
    "token_distribution_shift",
    "urial",
    "urial_prompt",
    "GreenListWatermark",
    "alignment_resampling",
    "best_of_n",
    "ControlProcessor",
    "DistillBatch",
    "add_identity_layer",
    "clm",
    "distill_batch",
    "fused_teacher_logprobs",
    "inra",
    "trra",
    "CachedNextTokenLogits",
    "DeRaProcessor",
    "DecodeContext",
    "dera",
    "dera_logits",
    "interpolate_logits",
    "next_token_logits",
    "sample_text",
]
