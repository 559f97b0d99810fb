"""Fine-tune text encoders with the representation objectives: ``alignkit embed-train`` / :func:`embed_train`."""

from alignkit.embedding.data import EmbeddingData, load_embedding_data
from alignkit.embedding.model import encode, load_encoder, pool
from alignkit.embedding.trainer import EmbedTrainConfig, EmbedTrainResult, embed_train

__all__ = [
    "EmbedTrainConfig",
    "EmbedTrainResult",
    "EmbeddingData",
    "embed_train",
    "encode",
    "load_embedding_data",
    "load_encoder",
    "pool",
]
