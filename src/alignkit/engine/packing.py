"""Padding-free packing and the shared-prompt forward, through transformers' ``AttentionInterface``.

A micro-batch becomes one row of tokens with no padding. Each sequence is a *segment*; attention runs once per
segment (``scaled_dot_product_attention(is_causal=True)``), so no ``T x T`` mask is ever built and no FLOP is
spent across segments or on padding.

Shared prompt (paired data): a segment is ``[prompt, chosen, rejected]``. ``prompt + chosen`` is causal as
usual; the rejected queries attend to the prompt's keys and causally to their own, never to chosen. Position ids
of the rejected completion continue from the prompt, so every completion token sees exactly the context it has
in the plain padded forward, and the prompt is computed once per pair. The first token of both completions is
scored from the prompt's last hidden state.

The attention function is registered as ``"alignkit_packed"`` with a matching ``AttentionMaskInterface`` entry.
A model set to it behaves exactly like ``sdpa`` unless a forward carries the ``alignkit_segments`` keyword
(then a 4-D placeholder mask makes transformers skip mask construction). Models whose attention does not route
through the interface (or use sliding windows, soft-capping, ...) are detected by :func:`packing_support`,
which also runs a numerical probe; the engine then falls back to the padded path and says why.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from alignkit.engine.head import head_logps
from alignkit.engine.logprobs import TokenLogps
from alignkit.engine.models import _backbone_and_head, model_device, unwrap_model

ATTN_NAME = "alignkit_packed"
_CALLS = {"packed": 0}
#: SDPA backends allowed for the per-segment calls on CUDA. Every segment has its own length, and the cuDNN
#: backend builds an execution plan per new shape; flash / memory-efficient attention need no plan. ``None``
#: leaves torch's choice alone.
CUDA_SDPA_BACKENDS: tuple[str, ...] | None = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH")


class SegmentInfo:
    """Segments of a packed row: ``(start, prompt_len, a_len, b_len)``; ``b_len > 0`` marks a shared prompt.

    For a plain sequence the whole ``prompt + a`` is one causal segment (``b_len = 0``). Masks for the rejected
    queries (``b x (prompt + b)``) are built once per forward and reused by every layer.
    """

    def __init__(self, segments: list[tuple[int, int, int, int]], device: torch.device) -> None:
        self.segments = segments
        # lengths of the pieces the packed row splits into: [prompt + chosen, rejected] or [sequence]
        self.sizes: list[int] = []
        for _, p, a, b in segments:
            self.sizes += [p + a, b] if b else [p + a]
        self.masks: dict[int, Tensor] = {}
        for i, (_, p, _, b) in enumerate(segments):
            if b:
                m = torch.ones(b, p + b, dtype=torch.bool, device=device)
                m[:, p:] = torch.ones(b, b, dtype=torch.bool, device=device).tril()
                self.masks[i] = m


def packed_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """``AttentionInterface`` function: per-segment SDPA when ``alignkit_segments`` is given, else ``sdpa``."""
    info: SegmentInfo | None = kwargs.pop("alignkit_segments", None)
    if info is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            **kwargs,
        )
    _CALLS["packed"] += 1
    if query.shape[0] != 1:
        raise ValueError(f"packed attention expects one packed row; got batch {query.shape[0]}")
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    if query.is_cuda and CUDA_SDPA_BACKENDS is not None:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel([getattr(SDPBackend, b) for b in CUDA_SDPA_BACKENDS]):
            return _segments_attention(info, query, key, value, dropout, scaling)
    return _segments_attention(info, query, key, value, dropout, scaling)


def _segments_attention(
    info: SegmentInfo, query: Tensor, key: Tensor, value: Tensor, dropout: float, scaling: float | None
) -> tuple[Tensor, None]:
    # One split per tensor (not a slice per segment): backward then concatenates the pieces' gradients once
    # instead of zero-filling and accumulating a full-size gradient for every slice.
    # Pieces are strided views (SDPA reads them as they are); only the rejected keys / values are copied, to
    # join the prompt's.
    sizes = info.sizes
    qs, ks, vs = (t.split(sizes, dim=2) for t in (query, key, value))
    outs: list[Tensor] = []
    j = 0
    for i, (_, p, _, b) in enumerate(info.segments):
        q1, k1, v1 = qs[j], ks[j], vs[j]
        outs.append(
            F.scaled_dot_product_attention(q1, k1, v1, is_causal=True, dropout_p=dropout, scale=scaling)
        )
        j += 1
        if b:
            qb, kb, vb = qs[j], ks[j], vs[j]
            j += 1
            k2, v2 = torch.cat([k1[:, :, :p], kb], 2), torch.cat([v1[:, :, :p], vb], 2)
            outs.append(
                F.scaled_dot_product_attention(
                    qb, k2, v2, attn_mask=info.masks[i], dropout_p=dropout, scale=scaling
                )
            )
    out = torch.cat(outs, dim=2) if len(outs) > 1 else outs[0]
    return out.transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTN_NAME, packed_attention)
    AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)


class PackedBatch:
    """A packed micro-batch: one row of ``input_ids`` / ``position_ids`` plus where each scored token lives.

    ``rows[k]`` is the packed position whose hidden state predicts scored token ``targets[k]``; ``out_index[k]``
    is its place in the ``(n_out, width)`` output, where output row ``r`` holds completion ``r`` left-aligned
    (column ``j`` = its ``j``-th token). ``real_tokens`` counts tokens as the padded path would (prompt once per
    completion); ``computed_tokens`` is what the backbone actually processes.
    """

    def __init__(
        self,
        ids: list[int],
        pos: list[int],
        segments: list[tuple[int, int, int, int]],
        rows: list[int],
        targets: list[int],
        out_index: list[int],
        n_out: int,
        width: int,
        real_tokens: int,
        device: torch.device | None,
    ) -> None:
        dev = torch.device("cpu") if device is None else device
        self.input_ids = torch.tensor([ids], dtype=torch.long, device=dev)
        self.position_ids = torch.tensor([pos], dtype=torch.long, device=dev)
        self.info = SegmentInfo(segments, dev)
        self.rows = torch.tensor(rows, dtype=torch.long, device=dev)
        self.targets = torch.tensor(targets, dtype=torch.long, device=dev)
        self.out_index = torch.tensor(out_index, dtype=torch.long, device=dev)
        self.n_out, self.width = n_out, width
        self.real_tokens = real_tokens
        self.computed_tokens = len(ids)
        mask = torch.zeros(n_out * width, dtype=torch.float32, device=dev)
        mask[self.out_index] = 1.0
        self.mask = mask.view(n_out, width)


def _check(prompts: Sequence[Sequence[int]], comps: Sequence[Sequence[int]]) -> None:
    for i, (p, c) in enumerate(zip(prompts, comps, strict=True)):
        if len(p) == 0:
            raise ValueError(
                f"prompt {i} is empty: the first completion token needs at least one prompt token"
            )
        if len(c) == 0:
            raise ValueError(f"completion {i} is empty: nothing to score")


def pack_sequences(
    prompts: Sequence[Sequence[int]],
    completions: Sequence[Sequence[int]],
    device: torch.device | None = None,
    masks: Sequence[Sequence[int] | None] | None = None,
) -> PackedBatch:
    """Pack ``prompt_i + completion_i`` end to end (one causal segment each); output row ``i`` = completion ``i``.

    An empty prompt is allowed (SFT on plain text): then, as in the padded path, the first token is not scored.
    ``masks[i]`` (optional, 0/1 per completion token) scores only the marked tokens, as ``join`` does.
    """
    ids: list[int] = []
    pos: list[int] = []
    segs, rows, targets, out_index = [], [], [], []
    width = max(len(c) for c in completions)
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        s = len(ids)
        lp, lc = len(p), len(c)
        ids += list(p) + list(c)
        pos += list(range(lp + lc))
        segs.append((s, lp, lc, 0))
        skip = 1 if lp == 0 else 0  # as in the padded path, a first token without context is not scored
        m = masks[i] if masks is not None else None
        keep = [j for j in range(skip, lc) if m is None or m[j]]
        rows += [s + lp - 1 + j for j in keep]
        targets += [c[j] for j in keep]
        out_index += [i * width + j for j in keep]
    real = len(ids)
    return PackedBatch(ids, pos, segs, rows, targets, out_index, len(prompts), width, real, device)


def pack_pairs(
    prompts: Sequence[Sequence[int]],
    chosen: Sequence[Sequence[int]],
    rejected: Sequence[Sequence[int]],
    device: torch.device | None = None,
    *,
    shared_prompt: bool = True,
) -> PackedBatch:
    """Pack preference pairs; output rows ``0..B-1`` are chosen, ``B..2B-1`` rejected (as ``build_paired`` wants).

    ``shared_prompt=True``: one ``[prompt, chosen, rejected]`` segment per pair (prompt computed once);
    ``False``: ``prompt + chosen`` and ``prompt + rejected`` as two plain segments.
    """
    if not shared_prompt:
        return pack_sequences(list(prompts) * 2, list(chosen) + list(rejected), device)
    _check(prompts, chosen)
    _check(prompts, rejected)
    b = len(prompts)
    width = max(max(len(c) for c in chosen), max(len(r) for r in rejected))
    ids: list[int] = []
    pos: list[int] = []
    segs, rows, targets, out_index = [], [], [], []
    real = 0
    for i, (p, c, r) in enumerate(zip(prompts, chosen, rejected, strict=True)):
        s = len(ids)
        lp, lc, lr = len(p), len(c), len(r)
        ids += list(p) + list(c) + list(r)
        pos += list(range(lp + lc)) + list(range(lp, lp + lr))
        segs.append((s, lp, lc, lr))
        rows += range(s + lp - 1, s + lp + lc - 1)
        targets += list(c)
        out_index += range(i * width, i * width + lc)
        e = s + lp + lc
        rows.append(s + lp - 1)  # the first rejected token is predicted from the prompt's last position
        rows += range(e, e + lr - 1)
        targets += list(r)
        out_index += range((b + i) * width, (b + i) * width + lr)
        real += 2 * lp + lc + lr
    return PackedBatch(ids, pos, segs, rows, targets, out_index, 2 * b, width, real, device)


def packed_logps(model: nn.Module, batch: PackedBatch, *, with_log_sum_sq: bool = False) -> TokenLogps:
    """Per-token log-probs of every completion in ``batch``: ``(n_out, width)``, left-aligned, fp32.

    The model must have been switched to packed attention (:func:`use_packed_attention`). Gradients flow when
    enabled; ``TokenLogps.sums()`` equals the padded path's per-sequence sums (fp64) to rounding.
    """
    decoder, _ = _backbone_and_head(model)
    if decoder is None:
        raise TypeError(f"{type(unwrap_model(model)).__name__} has no separable decoder; packing needs one")
    if model_device(model) != batch.input_ids.device:
        raise ValueError(
            f"packed batch is on {batch.input_ids.device} but the model is on {model_device(model)}: pass "
            "device=... to pack_pairs / pack_sequences"
        )
    placeholder = torch.ones(1, 1, 1, 1, dtype=torch.bool, device=batch.input_ids.device)
    hidden = decoder(
        input_ids=batch.input_ids,
        position_ids=batch.position_ids,
        attention_mask=placeholder,
        use_cache=False,
        alignkit_segments=batch.info,
    )[0][0]
    lp, lss = head_logps(
        model, hidden.index_select(0, batch.rows), batch.targets, with_log_sum_sq=with_log_sum_sq
    )
    flat = torch.zeros(batch.n_out * batch.width, dtype=torch.float32, device=lp.device)
    out = flat.index_copy(0, batch.out_index, lp).view(batch.n_out, batch.width)
    lss_out = None
    if lss is not None:
        lss_out = flat.index_copy(0, batch.out_index, lss).view(batch.n_out, batch.width)
    return TokenLogps(logps=out, mask=batch.mask, log_sum_sq=lss_out)


def _unsupported_reason(model: nn.Module) -> str | None:
    base = unwrap_model(model)
    cfg = getattr(base, "config", None)
    if cfg is None or not hasattr(base, "set_attn_implementation"):
        return f"{type(base).__name__} is not a transformers PreTrainedModel"
    if not getattr(base, "_supports_attention_backend", False):
        return f"{type(base).__name__} does not route its attention through transformers' AttentionInterface"
    decoder, _ = _backbone_and_head(model)
    if decoder is None:
        return f"{type(base).__name__} has no separable decoder (get_decoder)"
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        return "sliding-window attention is not supported by the packed attention function"
    layer_types = getattr(cfg, "layer_types", None)
    if layer_types and any(t != "full_attention" for t in layer_types):
        return f"layer types {sorted(set(layer_types))} include non-full attention"
    for name in ("attn_logit_softcapping", "alibi", "use_alibi", "position_embedding_type"):
        v = getattr(cfg, name, None)
        if v and not (name == "position_embedding_type" and v in ("rope", "rotary")):
            return f"config.{name}={v!r} is not supported by the packed attention function"
    if getattr(cfg, "is_encoder_decoder", False):
        return "encoder-decoder models are not supported"
    return None


@contextlib.contextmanager
def use_packed_attention(model: nn.Module) -> Iterator[nn.Module]:
    """Switch ``model`` to the packed attention function (sdpa when not packed); restore on exit."""
    _register()
    base = unwrap_model(model)
    old = base.config._attn_implementation
    base.set_attn_implementation(ATTN_NAME)
    if base.config._attn_implementation != ATTN_NAME:
        raise RuntimeError(f"{type(base).__name__} refused attn_implementation={ATTN_NAME!r}")
    try:
        yield model
    finally:
        base.set_attn_implementation(old)


@torch.no_grad()
def _probe(model: nn.Module) -> str | None:
    """Packed shared-prompt log-probs of two short random pairs must equal the padded path's."""
    from alignkit.engine.logprobs import completion_logps, join

    base = unwrap_model(model)
    vocab = int(base.config.vocab_size)
    g = torch.Generator().manual_seed(0)

    def rnd(n: int) -> list[int]:
        return torch.randint(0, vocab, (n,), generator=g).tolist()

    prompts, chosen, rejected = [rnd(5), rnd(3)], [rnd(4), rnd(6)], [rnd(6), rnd(2)]
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        ids, att, comp = join(prompts * 2, chosen + rejected, 0, device)
        ref = completion_logps(model, ids, att, comp).sums()
        before = _CALLS["packed"]
        got = packed_logps(model, pack_pairs(prompts, chosen, rejected, device)).sums()
        if _CALLS["packed"] == before:
            return "the model never called the packed attention function"
    finally:
        model.train(was)
    diff = (ref - got).abs().max().item()
    if not diff < 1e-3:
        return f"packed log-probs differ from the padded path's by {diff:.3g} on a probe batch"
    return None


def packing_support(model: nn.Module) -> tuple[bool, str]:
    """Whether ``model`` can run packed (checked by configuration and a numerical probe), and why not."""
    reason = _unsupported_reason(model)
    if reason is None:
        try:
            with use_packed_attention(model):
                reason = _probe(model)
        except Exception as exc:  # noqa: BLE001 - any failure means: use the padded path
            reason = f"probe failed: {type(exc).__name__}: {exc}"
    return (reason is None, reason or "ok")


@torch.no_grad()
def packed_sequence_logps(
    model: nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    completion_ids: Sequence[Sequence[int]],
    *,
    token_budget: int = 16384,
    progress: bool = False,
) -> tuple[Tensor, Tensor]:
    """:func:`alignkit.engine.sequence_logps` through packing (model already in packed attention): fp64 sums.

    Rows are packed in input order into rows of at most ``token_budget`` tokens (one sequence may exceed it).
    """
    from alignkit.engine._progress import make_progress
    from alignkit.engine.logprobs import model_device

    _check(prompt_ids, completion_ids)
    n = len(prompt_ids)
    sums = torch.zeros(n, dtype=torch.float64)
    lengths = torch.zeros(n, dtype=torch.long)
    device = model_device(model)
    was = model.training
    model.eval()
    try:
        with make_progress(disable=not progress) as bar:
            task = bar.add_task("scoring (packed)", total=n)
            i = 0
            while i < n:
                j, used = i, 0
                while j < n and (
                    j == i or used + len(prompt_ids[j]) + len(completion_ids[j]) <= token_budget
                ):
                    used += len(prompt_ids[j]) + len(completion_ids[j])
                    j += 1
                tl = packed_logps(model, pack_sequences(prompt_ids[i:j], completion_ids[i:j], device))
                sums[i:j] = tl.sums().cpu()
                lengths[i:j] = tl.mask.sum(-1).long().cpu()
                bar.advance(task, j - i)
                i = j
    finally:
        model.train(was)
    return sums, lengths
