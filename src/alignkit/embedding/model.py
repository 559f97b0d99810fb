"""The encoder side: load a local ``AutoModel`` + tokenizer, pool token states into one embedding per text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

POOLINGS = ("mean", "cls")


def pool(hidden: Tensor, mask: Tensor, pooling: str) -> Tensor:
    """One vector per sequence from token states (B, T, H): the masked mean, or the first ([CLS]) token."""
    if pooling == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)
    if pooling == "cls":
        return hidden[:, 0]
    raise ValueError(f"pooling must be one of {POOLINGS}; got {pooling!r}")


def load_encoder(path: str | Path, trust_remote_code: bool = False) -> tuple[nn.Module, Any]:
    """``(AutoModel, AutoTokenizer)`` from a local folder (or hub id when online)."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    return model, tok


def embed(
    model: nn.Module, tokenizer: Any, texts: list[str], pooling: str = "mean", max_length: int = 128
) -> Tensor:
    """Pooled embeddings (N, H) of ``texts`` with gradient (the caller picks train/eval mode and no_grad)."""
    device = next(model.parameters()).device
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(
        device
    )
    out = model(**enc)
    return pool(out.last_hidden_state, enc["attention_mask"], pooling)


@torch.no_grad()
def encode(
    model: nn.Module | str | Path,
    texts: list[str],
    *,
    tokenizer: Any = None,
    pooling: str = "mean",
    normalize: bool = True,
    batch_size: int = 64,
    max_length: int = 128,
) -> Tensor:
    """Embeddings (N, H) of ``texts`` in eval mode (L2-normalised unless ``normalize=False``)."""
    if not isinstance(model, nn.Module):
        model, tokenizer = load_encoder(model)
    if tokenizer is None:
        raise ValueError("encode needs the tokenizer when given a model object")
    was_training = model.training
    model.eval()
    outs = [
        embed(model, tokenizer, texts[i : i + batch_size], pooling, max_length)
        for i in range(0, len(texts), batch_size)
    ]
    model.train(was_training)
    e = torch.cat(outs)
    return F.normalize(e, dim=-1) if normalize else e


def write_sentence_transformers_config(
    folder: Path, hidden_size: int, pooling: str, normalize: bool, max_length: int
) -> None:
    """The module files sentence-transformers reads (Transformer -> Pooling [-> Normalize])."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}
        )
        (folder / "2_Normalize").mkdir(exist_ok=True)
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": hidden_size,
                "pooling_mode_cls_token": pooling == "cls",
                "pooling_mode_mean_tokens": pooling == "mean",
                "pooling_mode_max_tokens": False,
                "pooling_mode_mean_sqrt_len_tokens": False,
            },
            indent=2,
        )
    )
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_length, "do_lower_case": False})
    )
