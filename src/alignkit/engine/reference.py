"""Reference log-probs: a separate frozen model, the LoRA base with adapters disabled, a cache, or none.

The cache holds summed log-probs per (prompt, completion) pair, computed once under ``no_grad``; on disk it is
keyed by a fingerprint of the reference model and of every tokenised pair (which covers tokenizer, data and
length settings), so a second run over the same data and model reuses it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.engine.layout import Layout, score
from alignkit.engine.logprobs import sequence_logps, unwrap_model

KINDS = ("none", "model", "lora", "cache")


def default_cache_dir() -> Path:
    """The one cache root (``alignkit.cache.cache_root``: $ALIGNKIT_CACHE, then $XDG_CACHE_HOME/alignkit, then
    ~/.cache/alignkit)."""
    from alignkit.cache import cache_root

    return Path(cache_root())


def model_fingerprint(model: nn.Module, source: str | None = None) -> str:
    """Identity of a model's weights: its folder's files (name, size, mtime) or a hash of its parameters."""
    h = hashlib.sha256()
    if source is not None and Path(source).is_dir():
        h.update(str(Path(source).resolve()).encode())
        for p in sorted(Path(source).iterdir()):
            if p.suffix in (".safetensors", ".bin", ".json", ".pt"):
                st = p.stat()
                h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    else:
        for name, t in sorted(unwrap_model(model).state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


class Reference:
    """Where reference log-probs come from. ``token_logps`` (model/lora) or ``sums`` (cache)."""

    def __init__(self, kind: str, model: nn.Module | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"reference must be one of {KINDS}; got {kind!r}")
        self.kind = kind
        self.model = model
        self._cache: dict[tuple[tuple[int, ...], tuple[int, ...]], float] = {}
        self.cache_file: Path | None = None
        self.cache_hit = False

    @contextlib.contextmanager
    def _active(self) -> Iterator[nn.Module]:
        assert self.model is not None
        was = self.model.training
        self.model.eval()
        try:
            if self.kind == "lora":
                with self.model.disable_adapter():
                    yield self.model
            else:
                yield self.model
        finally:
            self.model.train(was)

    def sums(
        self, prompts: Sequence[list[int]], completions: Sequence[list[int]], device: torch.device
    ) -> Tensor:
        try:
            vals = [self._cache[(tuple(p), tuple(c))] for p, c in zip(prompts, completions, strict=True)]
        except KeyError:
            raise RuntimeError(
                "reference cache has no entry for a training pair (was it built on this data?)"
            ) from None
        return torch.tensor(vals, dtype=torch.float32, device=device)

    @torch.no_grad()
    def logps(self, layout: Layout) -> Tensor | None:
        """Reference log-probs of ``layout``'s rows: per-token in the policy's layout (model/lora; a packed
        layout needs the model in packed attention) or ``(N,)`` sums (cache); ``None`` without a reference."""
        if self.kind == "none":
            return None
        if self.kind == "cache":
            return self.sums(layout.prompts, layout.completions, _device(layout))
        with self._active() as m:
            return score(m, layout).logps

    def build_cache(
        self,
        model: nn.Module,
        pairs: Sequence[tuple[list[int], list[int]]],
        *,
        fingerprint: str,
        cache_dir: Path | None,
        pad_token_id: int,
        batch_size: int = 64,
        lora: bool = False,
        progress: bool = False,
        packed: bool = False,
    ) -> None:
        """Compute (or load) the reference sums of every pair. ``cache_dir=None`` keeps them in memory only.

        ``packed=True`` scores them padding-free (the model must be in packed attention); the sums agree with the
        padded path's to rounding (fp64 sums), so the cache key does not depend on it."""
        unique = list(dict.fromkeys((tuple(p), tuple(c)) for p, c in pairs))
        h = hashlib.sha256(fingerprint.encode())
        for p, c in unique:
            h.update(torch.tensor(p, dtype=torch.int64).numpy().tobytes())
            h.update(b"|")
            h.update(torch.tensor(c, dtype=torch.int64).numpy().tobytes())
            h.update(b";")
        sums = None
        if cache_dir is not None:
            self.cache_file = Path(cache_dir) / "reference" / f"{h.hexdigest()}.safetensors"
            if self.cache_file.exists():
                from safetensors.torch import load_file

                loaded = load_file(str(self.cache_file))["sums"]
                if loaded.shape[0] == len(unique):
                    sums, self.cache_hit = loaded, True
        if sums is None:
            ctx: Any = model.disable_adapter() if lora else contextlib.nullcontext()
            with ctx:
                if packed:
                    from alignkit.engine.packing import packed_sequence_logps

                    sums, _ = packed_sequence_logps(
                        model, [list(p) for p, _ in unique], [list(c) for _, c in unique], progress=progress
                    )
                else:
                    sums, _ = sequence_logps(
                        model,
                        [list(p) for p, _ in unique],
                        [list(c) for _, c in unique],
                        batch_size=batch_size,
                        pad_token_id=pad_token_id,
                        progress=progress,
                    )
            if self.cache_file is not None:
                from safetensors.torch import save_file

                self.cache_file.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.cache_file.with_suffix(f".tmp{os.getpid()}")
                save_file({"sums": sums.contiguous()}, str(tmp))
                os.replace(tmp, self.cache_file)
        self._cache = dict(zip(unique, sums.tolist(), strict=True))


def _device(layout: Layout) -> torch.device:
    return layout.packed.input_ids.device if layout.packed is not None else layout.padded[0].device
