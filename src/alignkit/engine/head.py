"""The LM head as a kernel: log-probs of target tokens from final hidden rows, never a ``[B, T, V]`` tensor.

Only the rows whose next token is scored meet the vocabulary, in row tiles; in training the softmax of every
row is kept for backward (no second head matmul) while it fits, in reused CPU buffers (:data:`HEAD_WORKSPACE`).
:func:`logps_at` is the one place log-softmax at the target is written for materialised logits.
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from alignkit.engine.models import _backbone_and_head, unwrap_model


def logps_at(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """``(log softmax(logits)[target], logsumexp(logits))`` over the last axis, in fp32."""
    logits = logits.float()
    lse = torch.logsumexp(logits, dim=-1)
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - lse, lse


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
    lp, lse = logps_at(logits, targets)
    if with_log_sum_sq:
        lss = torch.logsumexp(2.0 * logits, dim=-1) - 2.0 * lse
    else:
        lss = lp.new_zeros(())
    return lp, lss
