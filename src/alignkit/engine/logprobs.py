"""Per-token log-probs of completion tokens, without ever materialising a ``[B, T, V]`` logits tensor.

The backbone runs once to hidden states; only the rows whose *next* token is a completion token go through the
LM head, in row tiles so the ``[N, V]`` logits stay bounded, and each log-prob is ``gather - logsumexp``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from alignkit.engine._progress import make_progress

# Rows x vocabulary of one LM-head tile (fp32 logits): 2**25 elements = 128 MiB.
_TILE_ELEMENTS = 2**25
# In training, the head keeps the softmax of every scored row for backward (no second LM-head matmul) while the
# rows x vocabulary probabilities fit in this many fp32 elements (2**27 = 512 MiB); beyond it, each tile's logits
# are recomputed in backward so memory stays at one tile.
_KEEP_ELEMENTS = 2**27


class _HeadWorkspace:
    """Reusable fp32 CPU buffers for LM-head logits (the largest tensors of a step).

    A fresh ``[N, V]`` buffer is hundreds of MB: the C allocator maps it anew every time and the kernel zero-fills
    it page by page (~100k page faults per DPO step in ``benchmarks/dpo_vs_trl.py`` config A, a tenth of the step).
    Buffers come back here after use and are reused; at most ``keep`` are held, and a request no held buffer fits
    drops the held ones before allocating, so holding never adds a second buffer to the peak. CUDA has its own
    caching allocator: there every ``take`` is a plain ``torch.empty``.
    """

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self._free: list[Tensor] = []
        self._lock = threading.Lock()

    def take(self, numel: int, device: torch.device) -> Tensor:
        """A flat fp32 buffer of at least ``numel`` elements (contents undefined)."""
        if device.type == "cpu":
            with self._lock:
                fits = [i for i, b in enumerate(self._free) if b.numel() >= numel]
                if fits:
                    return self._free.pop(min(fits, key=lambda i: self._free[i].numel()))
                self._free.clear()  # too small: give the memory back before the larger allocation
        return torch.empty(numel, dtype=torch.float32, device=device)

    def give(self, buf: Tensor | None) -> None:
        """Return a buffer from :meth:`take`; the caller must hold no view of it that is still in use."""
        if buf is None or buf.device.type != "cpu":
            return
        with self._lock:
            self._free.append(buf)
            self._free.sort(key=Tensor.numel, reverse=True)
            del self._free[self.keep :]

    def clear(self) -> None:
        """Drop every held buffer (``ak.train`` calls this when it returns)."""
        with self._lock:
            self._free.clear()

    def held_bytes(self) -> int:
        with self._lock:
            return sum(4 * b.numel() for b in self._free)


HEAD_WORKSPACE = _HeadWorkspace()


def _logits_buffer(rows: int, weight: Tensor, hidden: Tensor) -> Tensor | None:
    """A workspace buffer for ``rows`` x V fp32 logits, or ``None`` (then :func:`_head_logits` allocates) unless
    weights and hidden states are both fp32."""
    if weight.dtype != torch.float32 or hidden.dtype != torch.float32:
        return None
    return HEAD_WORKSPACE.take(rows * weight.shape[0], hidden.device)


def _head_logits(hidden: Tensor, weight: Tensor, bias: Tensor | None, buf: Tensor | None) -> Tensor:
    """``hidden @ weight.T + bias`` as fp32 ``(n, V)``, written into ``buf`` when it is given."""
    if buf is None:
        return nn.functional.linear(hidden, weight, bias).float()
    out = buf[: hidden.shape[0] * weight.shape[0]].view(hidden.shape[0], weight.shape[0])
    if bias is None:
        return torch.mm(hidden, weight.t(), out=out)
    return torch.addmm(bias, hidden, weight.t(), out=out)


class _HeadLogps(torch.autograd.Function):
    """``log_softmax(hidden @ W.T + b)[target]`` per row, tiled, with a hand-written backward.

    Forward never holds more than one tile of logits besides the kept probabilities; backward uses
    ``d lp / d logits = onehot(target) - softmax`` directly (no autograd graph over ``[N, V]`` tensors).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        targets: Tensor,
        tile: int,
        keep: bool,
    ) -> Tensor:
        n = hidden.shape[0]
        out = torch.empty(n, dtype=torch.float32, device=hidden.device)
        kept: list[tuple[Tensor, Tensor]] = []  # (exp(logits - max), exp(max - lse)) per tile
        lses: list[Tensor] = []
        # fp32 logits go straight into a reused buffer: one per kept tile, else one for all tiles
        bufs: list[Tensor | None] = []
        for s in range(0, n, tile):
            if keep or not bufs:
                bufs.append(_logits_buffer(min(tile, n - s), weight, hidden))
            logits = _head_logits(hidden[s : s + tile], weight, bias, bufs[-1])
            # logsumexp in place: max, exp(logits - max), sum; the tile's buffer then holds exp(logits - max)
            mx = logits.amax(-1, keepdim=True)
            picked = logits.gather(-1, targets[s : s + tile, None])
            total = logits.sub_(mx).exp_().sum(-1, keepdim=True)
            lse = total.log_().add_(mx)
            out[s : s + tile] = (picked - lse).squeeze(-1)
            if keep:
                # softmax = exp(l - max) * exp(max - lse): the row scale is applied in backward, saving a pass
                kept.append((logits, torch.exp(mx - lse)))
            else:
                lses.append(lse.squeeze(-1))
        ctx.tile, ctx.keep, ctx.has_bias = tile, keep, bias is not None
        ctx.save_for_backward(hidden, weight, bias if bias is not None else hidden.new_empty(0), targets)
        ctx.kept = kept
        ctx.lses = lses
        if keep:
            ctx.bufs = bufs  # the kept exp(logits - max) live in these; backward gives them back
        else:
            for buf in bufs:
                HEAD_WORKSPACE.give(buf)
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        hidden, weight, bias, targets = ctx.saved_tensors
        tile = ctx.tile
        need_h, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        gh = torch.empty_like(hidden) if need_h else None
        gw: Tensor | None = None  # the first tile's product, then accumulated (no zero-filled V x d buffer)
        gb = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if need_b else None
        grad = grad.float()
        buf = None
        for k, s in enumerate(range(0, hidden.shape[0], tile)):
            h = hidden[s : s + tile]
            g = grad[s : s + tile]
            if ctx.keep:
                if ctx.kept is None:
                    raise RuntimeError(
                        "backward through alignkit's LM head ran twice (retain_graph is unsupported)"
                    )
                unnorm, scale = ctx.kept[k]
                ctx.kept[k] = None  # consumed in place below
            else:
                if k == 0:
                    buf = _logits_buffer(h.shape[0], weight, h)  # the first tile is the largest
                logits = _head_logits(h, weight, bias if ctx.has_bias else None, buf)
                unnorm, scale = logits.sub_(ctx.lses[k][:, None]).exp_(), None
            # d(sum_i g_i lp_i)/d logits = g * (onehot(target) - softmax), built in the probabilities' buffer
            gl = unnorm.mul_(-g[:, None] if scale is None else scale.mul_(-g[:, None]))
            gl.scatter_add_(-1, targets[s : s + tile, None], g[:, None])
            if need_h:
                if gl.dtype == weight.dtype == hidden.dtype:
                    torch.mm(gl, weight, out=gh[s : s + tile])
                else:
                    gh[s : s + tile] = (gl.to(weight.dtype) @ weight).to(hidden.dtype)
            if need_w:
                gw = torch.mm(gl.t(), h.float()) if gw is None else gw.addmm_(gl.t(), h.float())
            if need_b:
                gb += gl.sum(0)
            if ctx.keep:
                HEAD_WORKSPACE.give(ctx.bufs[k])
        HEAD_WORKSPACE.give(buf)
        ctx.kept = ctx.lses = ctx.bufs = None
        return (
            gh,
            gw.to(weight.dtype) if gw is not None else None,
            gb.to(bias.dtype) if gb is not None else None,
            None,
            None,
            None,
        )


def head_logps(
    model: nn.Module, rows: Tensor, targets: Tensor, *, with_log_sum_sq: bool = False
) -> tuple[Tensor, Tensor | None]:
    """Log-probs of ``targets`` given final hidden ``rows`` (N, d) through ``model``'s LM head: ``(N,)`` fp32.

    Only these N rows meet the vocabulary; logits exist one tile at a time. ``log_sum_sq`` (N,) when asked.
    """
    _, head = _backbone_and_head(model)
    weight = head.weight
    bias = getattr(head, "bias", None)
    scale, softcap = _logit_transform(model)
    n, vocab = rows.shape[0], weight.shape[0]
    tile = max(1, _TILE_ELEMENTS // max(1, vocab))
    if scale is None and softcap is None and not with_log_sum_sq:
        grad = torch.is_grad_enabled() and (rows.requires_grad or weight.requires_grad)
        keep = grad and n * vocab <= _KEEP_ELEMENTS
        if keep:
            tile = max(tile, n)  # all probabilities are kept anyway: one matmul
        if not grad:
            with torch.no_grad():
                return _HeadLogps.forward(_NoCtx(), rows, weight, bias, targets, tile, False), None
        return _HeadLogps.apply(rows, weight, bias, targets, tile, keep), None
    lps, lsss = [], []
    many = n > tile and torch.is_grad_enabled()
    for s in range(0, n, tile):
        args = (rows[s : s + tile], targets[s : s + tile], weight, bias, scale, softcap, with_log_sum_sq)
        if many:  # recompute the tile's logits in backward instead of keeping N x V alive
            lp, lss = checkpoint(_tile, *args, use_reentrant=False)
        else:
            lp, lss = _tile(*args)
        lps.append(lp)
        lsss.append(lss)
    return torch.cat(lps), (torch.cat(lsss) if with_log_sum_sq else None)


class _NoCtx:
    """Stand-in ``ctx`` for running :class:`_HeadLogps` forward without autograd."""

    def save_for_backward(self, *args: Tensor) -> None:
        pass


@dataclass
class TokenLogps:
    """Per-token log-probs aligned with ``input_ids[:, 1:]``: position ``t`` scores token ``t + 1``.

    ``logps`` is zero off ``mask``; ``log_sum_sq`` (``log sum_v p_v^2``, WPO's weight) is ``None`` unless asked.
    """

    logps: Tensor  # (B, L-1) float32
    mask: Tensor  # (B, L-1) float32, 1 on scored completion tokens
    log_sum_sq: Tensor | None = None  # (B, L-1) or None

    def sums(self) -> Tensor:
        """Summed log-probs per row, accumulated in fp64: ``(B,)`` float64."""
        return (self.logps.double() * self.mask.double()).sum(-1)

    def lengths(self) -> Tensor:
        return self.mask.sum(-1)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The underlying ``PreTrainedModel`` (through DDP / peft / accelerate wrappers)."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):  # DDP, FSDP-like wrappers
            model = model.module
        elif hasattr(model, "get_base_model"):  # peft: adapters are injected in place
            model = model.get_base_model()
        else:
            return model


def _backbone_and_head(model: nn.Module) -> tuple[nn.Module | None, nn.Module]:
    base = unwrap_model(model)
    head = base.get_output_embeddings()
    if head is None:
        raise TypeError(f"{type(base).__name__} has no output embeddings (LM head); is it a causal LM?")
    decoder = None
    if hasattr(base, "get_decoder"):
        try:
            decoder = base.get_decoder()
        except (AttributeError, NotImplementedError):
            decoder = None
    if decoder is base:
        decoder = None
    return decoder, head


def _logit_transform(model: nn.Module) -> tuple[float | None, float | None]:
    cfg = getattr(unwrap_model(model), "config", None)
    scale = getattr(cfg, "logit_scale", None)
    softcap = getattr(cfg, "final_logit_softcapping", None)
    return (float(scale) if isinstance(scale, (int, float)) else None, softcap)


def _tile(
    hidden: Tensor,
    targets: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    scale: float | None,
    softcap: float | None,
    with_log_sum_sq: bool,
) -> tuple[Tensor, Tensor]:
    logits = nn.functional.linear(hidden, weight, bias).float()
    if scale is not None:
        logits = logits * scale
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    lse = torch.logsumexp(logits, dim=-1)
    lp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse
    if with_log_sum_sq:
        lss = torch.logsumexp(2.0 * logits, dim=-1) - 2.0 * lse
    else:
        lss = lp.new_zeros(())
    return lp, lss


def completion_logps(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    completion_mask: Tensor,
    *,
    position_ids: Tensor | None = None,
    with_log_sum_sq: bool = False,
) -> TokenLogps:
    """Log-probs of the completion tokens of ``input_ids`` under ``model`` (gradients flow when enabled).

    ``completion_mask`` (B, L) is 1 on completion tokens; the result is aligned with ``input_ids[:, 1:]``.
    Works with any ``AutoModelForCausalLM`` exposing ``get_decoder()`` / ``get_output_embeddings()`` (falls back
    to a full forward otherwise), with peft LoRA models (adapters live in the backbone) and through DDP.
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (B, L); got shape {tuple(input_ids.shape)}")
    if completion_mask.shape != input_ids.shape or attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask {tuple(attention_mask.shape)} and completion_mask {tuple(completion_mask.shape)} "
            f"must match input_ids {tuple(input_ids.shape)}"
        )
    target_mask = completion_mask[:, 1:].bool() & attention_mask[:, 1:].bool()
    b, length = input_ids.shape
    # Trailing columns where no row scores a token need no forward.
    scored_cols = target_mask.any(0).nonzero()
    last = int(scored_cols.max().item()) + 2 if scored_cols.numel() else 1
    ids, att = input_ids[:, :last], attention_mask[:, :last]
    pos = position_ids[:, :last] if position_ids is not None else None
    decoder, head = _backbone_and_head(model)
    if decoder is not None:
        hidden = decoder(input_ids=ids, attention_mask=att, position_ids=pos, use_cache=False)[0]
        hidden = hidden[:, :-1]
    else:  # no separable backbone: a full forward (materialises logits; rare)
        hidden = None
        logits_full = model(input_ids=ids, attention_mask=att, position_ids=pos, use_cache=False).logits
    tmask = target_mask[:, : last - 1]
    targets = input_ids[:, 1:last][tmask]
    out = torch.zeros(b, length - 1, dtype=torch.float32, device=input_ids.device)
    lss_out = torch.zeros_like(out) if with_log_sum_sq else None
    if targets.numel():
        if hidden is not None:
            lp_all, lss_all = head_logps(model, hidden[tmask], targets, with_log_sum_sq=with_log_sum_sq)
        else:
            sel = logits_full[:, :-1][tmask].float()
            lse = torch.logsumexp(sel, -1)
            lp_all = sel.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse
            lss_all = torch.logsumexp(2 * sel, -1) - 2 * lse if with_log_sum_sq else None
        full_mask = torch.zeros(b, length - 1, dtype=torch.bool, device=input_ids.device)
        full_mask[:, : last - 1] = tmask
        out = out.masked_scatter(full_mask, lp_all)
        if with_log_sum_sq:
            lss_out = lss_out.masked_scatter(full_mask, lss_all)
    return TokenLogps(logps=out, mask=target_mask.float(), log_sum_sq=lss_out)


def pad_right(seqs: list[list[int]], pad: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Right-pad token lists into ``(ids, attention_mask)``."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    att = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        att[i, : len(s)] = 1
    return ids.to(device), att.to(device)


def join(
    prompt_ids: list[list[int]],
    completion_ids: list[list[int]],
    pad_token_id: int,
    device: torch.device | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Join separately tokenised prompts and completions: ``(input_ids, attention_mask, completion_mask)``."""
    seqs = [list(p) + list(c) for p, c in zip(prompt_ids, completion_ids, strict=True)]
    ids, att = pad_right(seqs, pad_token_id, device)
    comp = torch.zeros_like(att)
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids, strict=True)):
        comp[i, len(p) : len(p) + len(c)] = 1
    return ids, att, comp


def model_device(model: nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


@torch.no_grad()
def sequence_logps(
    model: nn.Module,
    prompt_ids: list[list[int]],
    completion_ids: list[list[int]],
    *,
    batch_size: int = 64,
    pad_token_id: int = 0,
    progress: bool = False,
) -> tuple[Tensor, Tensor]:
    """Summed log-probs ``log pi(completion | prompt)`` per pair, ``(sums float64 (N,), lengths (N,))``.

    Prompts must be non-empty (the first completion token needs a context). Rows are length-sorted into
    batches to limit padding; results come back in input order.
    """
    if len(prompt_ids) != len(completion_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(completion_ids)} completions")
    for i, (p, c) in enumerate(zip(prompt_ids, completion_ids, strict=True)):
        if len(p) == 0:
            raise ValueError(
                f"prompt {i} is empty: the first completion token needs at least one prompt token"
            )
        if len(c) == 0:
            raise ValueError(f"completion {i} is empty: nothing to score")
    n = len(prompt_ids)
    sums = torch.zeros(n, dtype=torch.float64)
    lengths = torch.zeros(n, dtype=torch.long)
    if n == 0:
        return sums, lengths
    device = model_device(model)
    order = sorted(range(n), key=lambda i: len(prompt_ids[i]) + len(completion_ids[i]))
    was_training = model.training
    model.eval()
    try:
        with make_progress(disable=not progress) as bar:
            task = bar.add_task("scoring", total=n)
            for s in range(0, n, batch_size):
                idx = order[s : s + batch_size]
                ids, att, comp = join(
                    [prompt_ids[i] for i in idx], [completion_ids[i] for i in idx], pad_token_id, device
                )
                tl = completion_logps(model, ids, att, comp)
                sums[idx] = tl.sums().cpu()
                lengths[idx] = tl.mask.sum(-1).long().cpu()
                bar.advance(task, len(idx))
    finally:
        model.train(was_training)
    return sums, lengths


def full_logits_logps(
    model: nn.Module, input_ids: Tensor, attention_mask: Tensor, completion_mask: Tensor
) -> TokenLogps:
    """The plain path: a padded forward with the full ``[B, L, V]`` logits and ``log_softmax`` over all of them.

    The baseline every fast path is checked against (``TrainConfig(completion_only_head=False)``), and the
    fallback for models without a separable LM head. Same layout as :func:`completion_logps`.
    """
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    lp = logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    mask = (completion_mask[:, 1:].bool() & attention_mask[:, 1:].bool()).float()
    return TokenLogps(logps=lp * mask, mask=mask)
