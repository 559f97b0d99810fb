"""Vision, audio and text-to-image alignment components, each a function of the tensors it consumes (attention
maps, attributions, features, frames, transcripts). No full pipeline is provided here — no diffusion U-Net,
video network, CLIP or ASR model: the components are tested on small synthetic tensors. Importing this package
registers them."""

from alignkit.vision.attention_refocusing import attention_refocusing_loss, latent_guidance_step
from alignkit.vision.compositional_t2i import attention_centroid, compositional_losses
from alignkit.vision.energy_guidance import GuidanceBatch, energy_guidance
from alignkit.vision.f_clipscore import f_clipscore
from alignkit.vision.fair_diffusion import AttributeBatch, fair_distributional_alignment, ot_targets
from alignkit.vision.frequency_analysis import bandpass_filter, frequency_alignment
from alignkit.vision.hdr_video import VideoBatch, lan_hdr, mu_law
from alignkit.vision.seas import MaskAlignmentBatch, seas_alignment
from alignkit.vision.speaker_groups import insert_speaker_group_tokens, strip_speaker_group_tokens
from alignkit.vision.token_pruning import pruned_position_ids, rope

__all__ = [
    "AttributeBatch",
    "GuidanceBatch",
    "MaskAlignmentBatch",
    "VideoBatch",
    "attention_centroid",
    "attention_refocusing_loss",
    "bandpass_filter",
    "compositional_losses",
    "energy_guidance",
    "f_clipscore",
    "fair_distributional_alignment",
    "frequency_alignment",
    "insert_speaker_group_tokens",
    "latent_guidance_step",
    "lan_hdr",
    "mu_law",
    "ot_targets",
    "pruned_position_ids",
    "rope",
    "seas_alignment",
    "strip_speaker_group_tokens",
]
