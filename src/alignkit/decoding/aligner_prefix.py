"""Aligner (one global token): a shared set of learned prefix tokens that every attention layer attends to
through a separate, zero-gated attention — parameter-efficient alignment (n * d + layers * heads parameters)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alignkit.decoding._common import DecodeContext, sample_text
from alignkit.registry import register

PAPER = "Aligner: One Global Token is Worth Millions of Parameters When Aligning Large Language Models"


def _attn_layers(model: nn.Module) -> list[nn.Module]:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(
            "model.model.layers (a ModuleList of decoder layers, as in Llama/Qwen/Mistral) is required"
        )
    out = []
    for i, layer in enumerate(layers):
        attn = getattr(layer, "self_attn", None)
        if attn is None or not all(hasattr(attn, p) for p in ("q_proj", "k_proj", "v_proj", "o_proj")):
            raise ValueError(f"model.model.layers[{i}].self_attn needs q_proj, k_proj, v_proj and o_proj")
        out.append(attn)
    return out


class _PrefixHook:
    """Forward hook of one attention module (a callable object, so ``copy.deepcopy`` of the model re-points it
    at the copy's prefix)."""

    def __init__(self, prefix: AlignerPrefix, layer: int) -> None:
        self.prefix, self.layer = prefix, layer

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        extra = self.prefix.prefix_attention(module, hidden, self.layer)
        if isinstance(output, tuple):
            return (output[0] + extra, *output[1:])
        return output + extra


class AlignerPrefix(nn.Module):
    """The Aligner module: ``prefix`` P ``[n, d]`` shared by all layers and zero-initialised gates
    ``gates`` ``[layers, heads]``. Attached to a model by :func:`add_aligner_prefix`.

    Per layer l and head h, with the layer's own (frozen) projections:
        K_l = P W_K^l,  V_l = P W_V^l   (no position encoding),   Q_l = h W_Q^l   (un-rotated)
        o_l = Attn_l(h) + W_O^l [ tanh(g_{l,h}) * softmax(Q_{l,h} K_{l,h}^T / sqrt(d_h)) V_{l,h} ]_h
    """

    def __init__(self, model: nn.Module, n_tokens: int = 1, init_std: float | None = None) -> None:
        super().__init__()
        if n_tokens < 1:
            raise ValueError(f"n_tokens must be >= 1; got {n_tokens}")
        cfg = model.config
        layers = _attn_layers(model)
        self.num_heads = int(cfg.num_attention_heads)
        self.num_kv_heads = int(getattr(cfg, "num_key_value_heads", None) or self.num_heads)
        self.head_dim = int(getattr(cfg, "head_dim", None) or cfg.hidden_size // self.num_heads)
        std = float(init_std if init_std is not None else getattr(cfg, "initializer_range", 0.02))
        w = next(model.parameters())
        self.prefix = nn.Parameter(
            torch.randn(n_tokens, cfg.hidden_size, dtype=w.dtype, device=w.device) * std
        )
        self.gates = nn.Parameter(torch.zeros(len(layers), self.num_heads, dtype=w.dtype, device=w.device))
        self.scale = 1.0  # decoding-time multiplier of the prefix term (1 = as trained, 0 = base model)

    def prefix_attention(self, attn: nn.Module, hidden: Tensor, layer: int) -> Tensor:
        """The gated prefix-attention term of ``layer`` for ``hidden`` ``[B, T, d]``, after W_O (no bias)."""
        b, t, _ = hidden.shape
        n, hd, h, hkv = self.prefix.shape[0], self.head_dim, self.num_heads, self.num_kv_heads
        q = attn.q_proj(hidden).view(b, t, h, hd)
        p = self.prefix.to(hidden.dtype)
        k = attn.k_proj(p).view(n, hkv, hd).repeat_interleave(h // hkv, dim=1)
        v = attn.v_proj(p).view(n, hkv, hd).repeat_interleave(h // hkv, dim=1)
        a = torch.softmax(torch.einsum("bthd,nhd->bthn", q, k) * hd**-0.5, dim=-1)
        o = torch.einsum("bthn,nhd->bthd", a, v) * torch.tanh(self.gates[layer]).to(hidden.dtype)[:, None]
        return F.linear(o.reshape(b, t, h * hd), attn.o_proj.weight) * self.scale


def add_aligner_prefix(
    model: nn.Module,
    *,
    n_tokens: int = 1,
    freeze_rest: bool = True,
    copy_model: bool = True,
    init_std: float | None = None,
) -> nn.Module:
    """``model`` (a copy unless ``copy_model=False``) with an :class:`AlignerPrefix` at ``model.aligner_prefix``
    hooked into every attention layer. Gates start at 0, so the result computes exactly the original function.
    With ``freeze_rest`` only the prefix and the gates are trainable — train with any objective, e.g.
    ``alignkit.train(objective="sft", model=new, ...)``; it stays a plain HF model (generate, ``sample``).
    ``save_pretrained`` drops nothing but ``from_pretrained`` ignores the prefix: keep
    ``model.aligner_prefix.state_dict()`` and reattach with :func:`load_aligner_prefix`."""
    if hasattr(model, "aligner_prefix"):
        raise ValueError("model already has an aligner_prefix")
    new = copy.deepcopy(model) if copy_model else model
    attns = _attn_layers(new)
    module = AlignerPrefix(new, n_tokens=n_tokens, init_std=init_std)
    if freeze_rest:
        for p in new.parameters():
            p.requires_grad_(False)
    new.aligner_prefix = module
    for i, attn in enumerate(attns):
        attn.register_forward_hook(_PrefixHook(module, i), with_kwargs=True)
    return new


def load_aligner_prefix(
    model: nn.Module, state: Mapping[str, Tensor], *, copy_model: bool = True
) -> nn.Module:
    """Attach a trained prefix (``state`` = ``aligner_prefix.state_dict()``: ``prefix``, ``gates``)."""
    for key in ("prefix", "gates"):
        if key not in state:
            raise ValueError(f"aligner prefix state has no {key!r} entry (keys: {sorted(state)})")
    new = add_aligner_prefix(model, n_tokens=int(state["prefix"].shape[0]), copy_model=copy_model)
    new.aligner_prefix.load_state_dict(dict(state))
    return new


def save_aligner_prefix(model: nn.Module, path: str | Path) -> Path:
    """Write ``model.aligner_prefix``'s trained state (``prefix``, ``gates``) to a safetensors file, the input of
    ``alignkit generate --decoder aligner_prefix --aligner-prefix FILE``."""
    from safetensors.torch import save_file

    if not hasattr(model, "aligner_prefix"):
        raise ValueError("model has no aligner_prefix (see add_aligner_prefix)")
    path = Path(path)
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in model.aligner_prefix.state_dict().items()}, str(path)
    )
    return path


def read_aligner_prefix(path: str | Path) -> dict[str, Tensor]:
    """A prefix state saved by :func:`save_aligner_prefix` (safetensors: no pickles)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"aligner prefix file {path} does not exist")
    state = load_file(str(path))
    for key in ("prefix", "gates"):
        if key not in state:
            raise ValueError(
                f"{path}: no {key!r} tensor (has {sorted(state)}); save with save_aligner_prefix"
            )
    return state


def trainable_parameter_count(n_tokens: int, hidden_size: int, num_layers: int, num_heads: int) -> int:
    """n * d + L * H (LLaMA-7B, one token: 4096 + 32 * 32 = 5120 ~ the paper's "5,000 parameters")."""
    return n_tokens * hidden_size + num_layers * num_heads


@register(
    name="aligner_prefix",
    verification="reconstruction",
    kind="decoder",
    family="adapter",
    aliases=("global_token_aligner",),
    paper=PAPER,
    arxiv="2312.05503",
    tags=("decoding", "peft", "needs:trained_prefix"),
    summary="one learned global prefix token attended by every layer through zero-initialised gates",
)
def aligner_prefix(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    context: DecodeContext,
    *,
    scale: float = 1.0,
) -> list[list[str]]:
    """Aligner: One Global Token is Worth Millions of Parameters When Aligning Large Language Models (Zhou, Wu,
    Zhu, Terzopoulos 2023; arXiv:2312.05503).

    A globally shared set of n tunable prefix tokens (n = 1 gives ~5k parameters on LLaMA-7B) modifies the
    attention of every layer: each layer attends to the prefix in a separate attention whose output, times a
    layer- and head-specific gate, is added to the layer's ordinary attention output. Trained (SFT or
    preference learning) with the base model frozen; here :func:`add_aligner_prefix` builds it.

    Formula:
        o_l = Attn_l(h) + W_O^l [ tanh(g_{l,h}) softmax(Q_{l,h} (P W_K^{l,h})^T / sqrt(d_h)) P W_V^{l,h} ]_h
        g = 0 at init (o_l = Attn_l(h): the base model);  trainable: P in R^{n x d}, g in R^{L x H}
        decoding: the prefix term times ``scale``

    Hyper-parameters:
        scale: multiplier of the prefix term at decoding time (default 1.0 = the trained Aligner; 0 = the
            base model; between/above interpolates/extrapolates — our addition, not in the paper).
        (training-time: ``n_tokens`` of :func:`add_aligner_prefix`, default 1, the paper's headline setting.)

    ``model`` is a model with a trained prefix (:func:`add_aligner_prefix` + training), or any model together
    with ``context.extra['aligner_prefix']`` = a trained ``aligner_prefix.state_dict()``. Source: abstract, Fig. 1
    ("each layer performs cross-attention on a shared set of N learnable prefix tokens ... attention weighted
    value aggregation x gating factor") and summaries read via search, and catalogue entry #82. UNVERIFIED: that the prefix keys/values use the frozen layer projections without
    normalisation or rotary encoding, the tanh and zero-init of the gates (LLaMA-Adapter style) — the paper's
    pdf and code were not read. With n = 1 the separate softmax is 1, so each layer adds the gated value
    ``tanh(g_l) * P W_V^l W_O^l`` (a learned, shared, per-layer bias of the residual stream).

    Guessed after re-checking: the gating and prefix placement: a second search (issue #14) found the
    authors' README (a globally shared set of tunable tokens modifying every layer's attention) but not the
    code; still guessed.
    """
    if not hasattr(model, "aligner_prefix"):
        state = context.extra.get("aligner_prefix")
        if state is None:
            raise ValueError(
                "decoder 'aligner_prefix' needs a model with an aligner_prefix (add_aligner_prefix) "
                "or context.extra['aligner_prefix'] (a trained prefix state dict)"
            )
        model = load_aligner_prefix(model, state)
    old = model.aligner_prefix.scale
    model.aligner_prefix.scale = float(scale)
    try:
        return sample_text(model, tokenizer, prompts, **context.sampling)
    finally:
        model.aligner_prefix.scale = old
