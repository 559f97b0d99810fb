"""Tiny Llama-style base models, built here from a task's corpus and cached under the user cache folder.

>>> from alignkit.testbed import get_base_model
>>> base = get_base_model("sentiment")         # first call: tokenizer + ~100 s of pretraining; later: loads
>>> base.model, base.tokenizer, base.path, base.stats

The default ``sentiment`` base model is shipped in the package (``alignkit/testbed/data/base/``, with its SHA-256
checksums; rebuild it with ``python tools/ship_base_model.py``), so the first run copies it into the cache instead of
pretraining; every other config is built on first use, unless a folder named by ``ALIGNKIT_BASE_MODELS`` ships it.

A base model is a ``tokenizers`` byte-level BPE tokenizer trained on the task's documents and a
``transformers.LlamaForCausalLM`` (default: 4 layers, d=128, 4 heads, FFN 352, tied embeddings, ~1 M parameters)
pretrained on them with next-token prediction: random 128-token windows, AdamW (0.9, 0.95), cosine schedule.
For ``sentiment`` that is language-model pretraining on Shakespeare; for ``arith`` and ``safety`` the documents are
the task's demonstrations, so pretraining *is* the SFT stage. Nothing is downloaded.

The build is deterministic for a given :class:`BaseModelConfig` (fixed seeds, a fixed number of steps). It is
cached in ``<cache root>/testbed/<task>-<key>/`` (root: :func:`alignkit.cache.cache_root`), where ``key`` hashes
the config; a folder whose files do not match their recorded checksums is treated as absent and rebuilt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

#: Bump when the build procedure changes, so old caches are not reused.
BUILD_VERSION = 1
EOS = "<|endoftext|>"
#: Base models shipped inside the package (``<task>-<key>/`` folders, same layout as the cache), so the default
#: main job does not pretrain on first use. Built by ``python tools/ship_base_model.py``; see PROVENANCE.md there.
SHIPPED_DIR = Path(__file__).resolve().parent / "data" / "base"
#: More folders (``os.pathsep``-separated) holding base models in the shipped layout, searched after
#: :data:`SHIPPED_DIR`. alignkit's test suite points it at ``tests/assets/base_models``, where the effect tests' base models
#: ship (``python tools/ship_base_model.py --effect``); a user may point it at a team's shared copies.
BASE_MODELS_ENV = "ALIGNKIT_BASE_MODELS"


@dataclass(frozen=True)
class BaseModelConfig:
    """Everything that determines a base model. Every field is part of the cache key."""

    task: str = "sentiment"
    vocab_size: int = 2048
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 352
    context: int = 128
    pretrain_steps: int = 300
    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup_ratio: float = 0.05
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    seed: int = 0
    #: sentiment: truncate the pretraining corpus to this many characters (None: all ~4.6 M).
    corpus_chars: int | None = None
    #: arith / safety: number of demonstrations in the SFT corpus (None: the task's default).
    task_examples: int | None = None
    # --- training-stability options (all off by default; see alignkit.testbed.stability) -----------------------
    #: QK-norm (Wortsman et al., arXiv:2309.14322): normalise queries and keys per head before the dot product.
    #: Built as transformers' Qwen3 architecture (Llama + per-head RMSNorm on q and k).
    qk_layernorm: bool = False
    #: Output-logit z-loss coefficient c in pretraining: loss += c * mean (log Z)^2 (PaLM / Wortsman: 1e-4).
    z_loss: float = 0.0
    #: Spike No More (Takase et al., arXiv:2312.16903) "Scaled Embed": embeddings are multiplied by sqrt(d).
    embed_scale: bool = False
    #: Spike No More's small initialisation: every weight N(0, 2/(5d)), output projections / sqrt(2 * layers).
    small_init: bool = False

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "num_layers",
            "num_heads",
            "intermediate_size",
            "context",
            "pretrain_steps",
            "batch_size",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"BaseModelConfig.{name} must be a positive integer; got {value!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"BaseModelConfig.hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )
        if self.vocab_size < 258:
            raise ValueError(
                f"BaseModelConfig.vocab_size must be >= 258 (256 bytes + specials); got {self.vocab_size}"
            )
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"BaseModelConfig.warmup_ratio must be in [0, 1); got {self.warmup_ratio}")
        if self.learning_rate <= 0:
            raise ValueError(f"BaseModelConfig.learning_rate must be positive; got {self.learning_rate}")
        if self.z_loss < 0:
            raise ValueError(f"BaseModelConfig.z_loss must be >= 0; got {self.z_loss}")

    def key(self) -> str:
        """Hash of every field. The stability options enter only when they differ from their defaults, so the
        cache keys of configs that do not use them are unchanged."""
        fields = dataclasses.asdict(self)
        for name, default in STABILITY_DEFAULTS.items():
            if fields[name] == default:
                del fields[name]
        payload = json.dumps({"build": BUILD_VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


STABILITY_DEFAULTS: dict[str, Any] = {
    "qk_layernorm": False,
    "z_loss": 0.0,
    "embed_scale": False,
    "small_init": False,
}


@dataclass
class BaseModel:
    """A built (or loaded) base model: the policy every testbed run starts from and the reference."""

    model: Any  # transformers.LlamaForCausalLM, in eval mode
    tokenizer: Any  # transformers.PreTrainedTokenizerFast
    config: BaseModelConfig
    path: Path
    stats: dict[str, Any] = field(default_factory=dict)
    loaded_from_cache: bool = False
    #: True when the weights came from the copy shipped in the package (:data:`SHIPPED_DIR`), not a local build.
    from_shipped: bool = False

    @property
    def eos_token_id(self) -> int:
        return int(self.tokenizer.convert_tokens_to_ids(EOS))


def cache_root() -> Path:
    """alignkit's cache root (:func:`alignkit.cache.cache_root`: ``$ALIGNKIT_CACHE``, else
    ``$XDG_CACHE_HOME/alignkit``, else ``~/.cache/alignkit``)."""
    from alignkit.cache import cache_root as root

    return root()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- tokenizer and model --------------------------------------------------------------------------------------


def train_tokenizer(documents: list[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer (``tokenizers``) trained on ``documents``, wrapped as a fast HF tokenizer."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    if not documents:
        raise ValueError("train_tokenizer needs at least one document")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        documents, vocab_size=vocab_size, min_frequency=2, special_tokens=[EOS], show_progress=False
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token=EOS, bos_token=EOS, pad_token=EOS, unk_token=EOS
    )


def build_model(config: BaseModelConfig, vocab_size: int) -> Any:
    """A freshly initialised ``LlamaForCausalLM`` of the configured size (seeded by ``config.seed``); with
    ``qk_layernorm`` the same model with per-head q/k RMSNorm (transformers' ``Qwen3ForCausalLM``)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(config.seed)
    if config.qk_layernorm:
        from transformers import Qwen3Config, Qwen3ForCausalLM

        config_cls, model_cls = Qwen3Config, Qwen3ForCausalLM
    else:
        config_cls, model_cls = LlamaConfig, LlamaForCausalLM
    extra = {"head_dim": config.hidden_size // config.num_heads} if config.qk_layernorm else {}
    cfg = config_cls(
        **extra,
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=max(config.context, 256),
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    cfg._attn_implementation = "sdpa"
    model = model_cls(cfg)
    from alignkit.testbed.stability import apply_stability_options

    apply_stability_options(model, config, initialise=True)
    return model


def encode_documents(tokenizer: Any, documents: list[str]) -> torch.Tensor:
    """All documents as one token stream, separated (and ended) by the end-of-text token."""
    eos = tokenizer.convert_tokens_to_ids(EOS)
    ids: list[int] = []
    for enc in tokenizer.backend_tokenizer.encode_batch(documents):
        ids.extend(enc.ids)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def _lr_at(step: int, config: BaseModelConfig) -> float:
    warm = max(1, math.ceil(config.warmup_ratio * config.pretrain_steps))
    if step < warm:
        return config.learning_rate * (step + 1) / warm
    frac = (step - warm) / max(1, config.pretrain_steps - warm)
    floor = config.min_lr_ratio
    return config.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac)))


def _windows(stream: torch.Tensor, n: int, context: int, gen: torch.Generator) -> torch.Tensor:
    if stream.numel() <= context + 1:
        raise ValueError(
            f"the pretraining corpus has {stream.numel()} tokens; it needs more than context={context}"
        )
    starts = torch.randint(0, stream.numel() - context, (n,), generator=gen)
    return torch.stack([stream[s : s + context] for s in starts.tolist()])


@torch.no_grad()
def heldout_loss(
    model: Any, stream: torch.Tensor, context: int, batches: int = 4, batch_size: int = 32
) -> float:
    """Mean next-token loss (nats/token) on random windows of a held-out token stream (fixed seed)."""
    gen = torch.Generator().manual_seed(1234)
    model.eval()
    losses = []
    for _ in range(batches):
        x = _windows(stream, batch_size, context, gen)
        losses.append(model(input_ids=x, labels=x).loss.item())
    return float(sum(losses) / len(losses))


def pretrain(
    model: Any, stream: torch.Tensor, config: BaseModelConfig, *, progress: bool = True
) -> dict[str, Any]:
    """Next-token pretraining of the base model on ``stream`` (random windows, AdamW, warmup + cosine).

    This is language-model pretraining of the testbed's base model, not an alignment objective; the alignment
    runs go through :func:`alignkit.train.train`. Returns statistics (final loss EMA, tokens, seconds).
    """
    from alignkit.testbed._progress import progress_bar

    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.learning_rate,
        betas=(0.9, 0.95),
    )
    model.train()
    ema = None
    t0 = time.perf_counter()
    with progress_bar("pretraining base model", total=config.pretrain_steps, enabled=progress) as advance:
        for step in range(config.pretrain_steps):
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, config)
            x = _windows(stream, config.batch_size, config.context, gen)
            if config.z_loss:
                from alignkit.testbed.stability import lm_loss_with_z_loss

                loss = lm_loss_with_z_loss(model, x, config.z_loss)
            else:
                loss = model(input_ids=x, labels=x).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"pretraining loss became {value} at step {step}; lower learning_rate"
                )
            ema = value if ema is None else 0.95 * ema + 0.05 * value
            advance(1, f"loss {ema:.3f}")
    model.eval()
    return {
        "steps": config.pretrain_steps,
        "tokens_seen": config.pretrain_steps * config.batch_size * config.context,
        "train_loss_ema": ema,
        "pretrain_seconds": time.perf_counter() - t0,
    }


# --- cache ---------------------------------------------------------------------------------------------------


def _load(path: Path, config: BaseModelConfig) -> BaseModel | None:
    """The cached model at ``path`` if it is complete and its files match their checksums, else None."""
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        return None
    try:
        meta = json.loads(meta_file.read_text())
        if meta.get("key") != config.key():
            return None
        for name, digest in meta["files"].items():
            f = path / name
            if not f.is_file() or _sha256(f) != digest:
                return None
        from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), attn_implementation="sdpa")
    except Exception:  # any unreadable cache is rebuilt
        return None
    from alignkit.testbed.stability import apply_stability_options

    apply_stability_options(model, config, initialise=False)
    model.eval()
    return BaseModel(model, tokenizer, config, path, meta.get("stats", {}), loaded_from_cache=True)


def shipped_dirs() -> list[Path]:
    """The folders searched for shipped base models, in order: the package's :data:`SHIPPED_DIR`, then those named
    by the ``ALIGNKIT_BASE_MODELS`` environment variable."""
    extra = os.environ.get(BASE_MODELS_ENV, "")
    return [SHIPPED_DIR, *(Path(p) for p in extra.split(os.pathsep) if p)]


def shipped_path(path: Path) -> Path:
    """Where a shipped copy of the base model whose cache folder is ``path`` lies (same folder name): the first of
    :func:`shipped_dirs` that holds one, else where the package would ship it."""
    for folder in shipped_dirs():
        if (folder / path.name / "meta.json").is_file():
            return folder / path.name
    return SHIPPED_DIR / path.name


def _from_shipped(path: Path, config: BaseModelConfig) -> BaseModel | None:
    """The shipped copy of this base model, copied into the cache folder ``path`` and loaded from there; None when
    the package ships none for this config. A shipped copy whose files do not match their recorded SHA-256 (a
    damaged install) is not used: a warning says so and the model is built instead."""
    src = shipped_path(path)
    if not (src / "meta.json").is_file():
        return None
    if _load(src, config) is None:
        import warnings

        warnings.warn(
            f"the base model shipped at {src} does not match its recorded checksums or config; building it instead",
            stacklevel=3,
        )
        return None

    def copy(tmp: Path) -> None:
        for f in src.iterdir():
            if f.is_file():
                shutil.copyfile(f, tmp / f.name)

    _write_folder(path, copy)
    base = _load(path, config)
    if base is not None:
        base.from_shipped = True
    return base


def _write_folder(path: Path, fill: Any) -> None:
    """Write the cache folder ``path`` atomically: ``fill(tmp)`` writes into a temporary sibling, which then replaces
    ``path`` (a crash never leaves a half-written folder under the final name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=path.name + ".tmp-", dir=path.parent))
    try:
        fill(tmp)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _save(base: BaseModel, path: Path) -> None:
    def fill(tmp: Path) -> None:
        base.model.save_pretrained(str(tmp))
        base.tokenizer.save_pretrained(str(tmp))
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        meta = {
            "key": base.config.key(),
            "config": dataclasses.asdict(base.config),
            "files": files,
            "stats": base.stats,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))

    _write_folder(path, fill)


def model_path(task: Any, config: BaseModelConfig, root: Path) -> Path:
    """The cache folder of ``task``'s base model built with ``config`` under ``root``: keyed by the config and by
    the task settings that change the training text (``Task.cache_tag``, e.g. arith's ``max_digits``)."""
    tag = task.cache_tag() if hasattr(task, "cache_tag") else ""
    return root / "testbed" / f"{task.name}{'-' + tag if tag else ''}-{config.key()}"


def get_base_model(
    task: str | Any = "sentiment",
    config: BaseModelConfig | None = None,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    rebuild: bool = False,
    progress: bool = True,
) -> BaseModel:
    """The task's base model: loaded from the cache, or built (tokenizer + pretraining) and cached.

    ``task`` is a task name or :class:`~alignkit.testbed.tasks.Task`; ``config`` defaults to the task's
    :meth:`~alignkit.testbed.tasks.Task.base_config`. ``cache_dir`` overrides :func:`cache_root`;
    ``rebuild=True`` ignores a cached copy.
    """
    from alignkit.testbed.tasks import get_task

    task_obj = get_task(task) if isinstance(task, str) else task
    config = config or task_obj.base_config()
    if config.task != task_obj.name:
        raise ValueError(f"config.task is {config.task!r} but the task is {task_obj.name!r}")
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    path = model_path(task_obj, config, root)
    if not rebuild:
        cached = _load(path, config)
        if cached is not None:
            return cached
        shipped = _from_shipped(path, config)
        if shipped is not None:
            return shipped
    torch.manual_seed(config.seed)
    t0 = time.perf_counter()
    documents = task_obj.documents(config)
    tokenizer = train_tokenizer(documents, config.vocab_size)
    stream = encode_documents(tokenizer, documents)
    heldout = encode_documents(tokenizer, task_obj.heldout_documents(config))
    model = build_model(config, len(tokenizer))
    tok_seconds = time.perf_counter() - t0
    stats = pretrain(model, stream, config, progress=progress)
    stats.update(
        tokenizer_seconds=tok_seconds,
        corpus_tokens=int(stream.numel()),
        parameters=int(sum(p.numel() for p in model.parameters())),
        heldout_loss=heldout_loss(model, heldout, config.context)
        if heldout.numel() > config.context + 1
        else None,
    )
    base = BaseModel(model, tokenizer, config, path, stats)
    _save(base, path)
    return base
