"""The embedding trainer: fine-tune a local ``AutoModel`` encoder with any registered embedding objective.

    alignkit embed-train --objective clip --model MiniLM/ --data pairs.jsonl --output runs/clip --max-steps 100

Each step takes one *global* batch (``batch_size`` rows per process); every process encodes its slice, the
embeddings of all processes are gathered with gradient (:func:`alignkit.embedding.distributed.gather_with_grad`),
and every process computes the objective on the global batch; parameter gradients are averaged over processes.
So ``torchrun --nproc_per_node N`` with ``batch_size=b`` trains exactly like one process with ``batch_size=N*b``
(in-batch negatives included). Rows become the objective's batch type:

* ``PairBatch`` objectives (clip, siglip, align_uniform, macl, ...): pair rows, ``a`` = anchors, ``b`` = positives.
* ``EmbeddingBatch`` objectives (triplet, Metrix, contextual similarity, ICNN): labelled rows (P x K batches:
  ``samples_per_label`` rows of each label), or pairs/triplets (an anchor and its positive share a label, each
  negative has its own).

The output folder loads with ``AutoModel.from_pretrained`` and with ``sentence_transformers.SentenceTransformer``.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.embedding import distributed
from alignkit.embedding.data import EmbeddingData, load_embedding_data
from alignkit.embedding.model import POOLINGS, embed, load_encoder, write_sentence_transformers_config
from alignkit.objectives.representation import EmbeddingBatch, PairBatch
from alignkit.registry import Objective, get


@dataclass
class EmbedTrainConfig:
    """Settings of :func:`embed_train` (the CLI flags of ``alignkit embed-train``)."""

    objective: str
    model: str
    data: Any
    output_dir: str | None = None
    hyper_parameters: dict[str, Any] = field(default_factory=dict)
    pooling: str = "mean"
    batch_size: int = 16
    max_steps: int | None = None
    epochs: float = 1.0
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    max_length: int = 128
    samples_per_label: int = 4
    seed: int = 0
    normalize: bool = True
    progress: bool = True
    trust_remote_code: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not isinstance(self.data, (str, Path)):
            d["data"] = f"<in-memory {type(self.data).__name__}>"
        else:
            d["data"] = str(self.data)
        return d


@dataclass
class EmbedTrainResult:
    """What :func:`embed_train` returns: per-step ``history`` (loss, lr, the objective's metrics), the trained
    ``model`` and ``tokenizer``, and the ``output_dir`` written (``None`` when none was asked for)."""

    history: list[dict[str, float]]
    model: nn.Module
    tokenizer: Any
    output_dir: Path | None


def _objective(cfg: EmbedTrainConfig, data: EmbeddingData) -> Objective:
    obj = get(cfg.objective)
    if not isinstance(obj, Objective):
        raise ValueError(f"{cfg.objective!r} is a {obj.kind}, not an objective")
    if obj.batch_type is PairBatch:
        if data.format != "pairs":
            raise ValueError(
                f"objective {obj.name!r} takes a PairBatch (anchor, positive); the data holds {data.format} rows "
                "(use pair rows, or an EmbeddingBatch objective such as batch_hard_triplet)"
            )
    elif obj.batch_type is not EmbeddingBatch:
        bt = obj.batch_type.__name__ if obj.batch_type else "an LM batch"
        raise ValueError(
            f"objective {obj.name!r} takes {bt}; embed-train builds a PairBatch or an EmbeddingBatch from text rows"
        )
    obj.resolve(**cfg.hyper_parameters)  # unknown hyper-parameters fail before the model loads
    return obj


def _epoch_batches(data: EmbeddingData, cfg: EmbedTrainConfig, global_bs: int, epoch: int) -> list[list[int]]:
    """Row indices of every global batch of one epoch (same on every process: seeded by seed and epoch)."""
    rng = random.Random(cfg.seed * 1_000_003 + epoch)
    n = len(data)
    if data.labels is not None and cfg.samples_per_label > 0:
        k = cfg.samples_per_label
        if global_bs % k:
            raise ValueError(
                f"batch size x processes ({global_bs}) must be a multiple of samples_per_label ({k})"
            )
        by_label: dict[int, list[int]] = {}
        for i, lab in enumerate(data.labels):
            by_label.setdefault(lab, []).append(i)
        usable = sorted(lab for lab, rows in by_label.items() if len(rows) >= k)
        p = global_bs // k
        if len(usable) < p:
            raise ValueError(
                f"P x K batches need {p} labels with >= {k} rows each; the data has {len(usable)} "
                "(lower batch_size or samples_per_label)"
            )
        return [
            [i for lab in rng.sample(usable, p) for i in rng.sample(by_label[lab], k)]
            for _ in range(n // global_bs)
        ]
    order = list(range(n))
    rng.shuffle(order)
    return [order[s : s + global_bs] for s in range(0, n - global_bs + 1, global_bs)]


def _build_batch(
    obj: Objective, data: EmbeddingData, rows: list[int], emb: Tensor, n_rows: int
) -> PairBatch | EmbeddingBatch:
    """The objective's batch from the global embeddings ``emb`` of ``rows`` (texts of each row stacked by
    position: all first texts, then all second texts, ...)."""
    b = len(rows)
    parts = emb.split(b)
    if obj.batch_type is PairBatch:
        return PairBatch(a=parts[0], b=parts[1])
    if data.labels is not None:
        labels = torch.tensor([data.labels[i] for i in rows])
    else:
        idx = torch.tensor(rows)
        labels = torch.cat([idx, idx] + ([idx + n_rows] if len(parts) == 3 else []))
    return EmbeddingBatch(embeddings=emb, labels=labels)


def _local_embeddings(
    model: nn.Module, tok: Any, data: EmbeddingData, rows: list[int], cfg: EmbedTrainConfig
) -> Tensor:
    k = len(data.texts[rows[0]])
    texts = [data.texts[i][j] for j in range(k) for i in rows]
    return embed(model, tok, texts, cfg.pooling, cfg.max_length)


def _gather_stacked(local: Tensor, k: int) -> Tensor:
    """Gather each of the k stacked text positions separately, so the global layout matches one process."""
    return torch.cat([distributed.gather_with_grad(p) for p in local.chunk(k)])


def embed_train(config: EmbedTrainConfig | None = None, **kwargs: Any) -> EmbedTrainResult:
    """Fine-tune an encoder with an embedding objective; see the module docstring."""
    cfg = config if config is not None else EmbedTrainConfig(**kwargs)
    if cfg.pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}; got {cfg.pooling!r}")
    if cfg.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {cfg.batch_size}")
    data = load_embedding_data(cfg.data)
    obj = _objective(cfg, data)
    rank, world = distributed.setup()
    global_bs = cfg.batch_size * world
    if len(data) < global_bs:
        raise ValueError(
            f"{len(data)} rows are fewer than one global batch ({cfg.batch_size} x {world} processes)"
        )
    steps_per_epoch = len(_epoch_batches(data, cfg, global_bs, 0))
    total = cfg.max_steps if cfg.max_steps is not None else max(1, math.ceil(cfg.epochs * steps_per_epoch))
    # the same seed on every process: randomness inside an objective (Metrix's mixing draws) runs on the global
    # batch and must agree across processes
    torch.manual_seed(cfg.seed)
    model, tok = load_encoder(cfg.model, cfg.trust_remote_code)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.learning_rate,
    )
    warmup = int(cfg.warmup_ratio * total)

    def lr_at(
        step: int,
    ) -> float:  # linear warmup, then linear decay to 0 (sentence-transformers' WarmupLinear)
        if step < warmup:
            return cfg.learning_rate * (step + 1) / warmup
        return cfg.learning_rate * max(0.0, (total - step) / max(1, total - warmup))

    history: list[dict[str, float]] = []
    progress = _progress(cfg.progress and rank == 0, total, obj.name)
    step, epoch = 0, 0
    with progress:
        while step < total:
            for rows in _epoch_batches(data, cfg, global_bs, epoch):
                if step >= total:
                    break
                local_rows = rows[rank * cfg.batch_size : (rank + 1) * cfg.batch_size]
                k = len(data.texts[rows[0]])
                emb = _gather_stacked(_local_embeddings(model, tok, data, local_rows, cfg), k)
                out = obj(_build_batch(obj, data, rows, emb, len(data)), **cfg.hyper_parameters)
                for g in opt.param_groups:
                    g["lr"] = lr_at(step)
                opt.zero_grad(set_to_none=True)
                out.loss.backward()
                distributed.average_gradients(params)
                if cfg.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()
                step += 1
                history.append({"step": step, "loss": out.loss.item(), "lr": lr_at(step - 1), **out.metrics})
                progress.advance(step, out.loss.item())
            epoch += 1
    output = None
    if cfg.output_dir is not None:
        output = Path(cfg.output_dir)
        if rank == 0:
            _save(model, tok, cfg, history, output)
        if world > 1:
            torch.distributed.barrier()
    model.eval()
    return EmbedTrainResult(history=history, model=model, tokenizer=tok, output_dir=output)


def _save(
    model: nn.Module, tok: Any, cfg: EmbedTrainConfig, history: list[dict[str, float]], out: Path
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    write_sentence_transformers_config(
        out, model.config.hidden_size, cfg.pooling, cfg.normalize, cfg.max_length
    )
    (out / "embed_train.json").write_text(json.dumps({"config": cfg.to_dict(), "history": history}, indent=1))


class _progress:
    """A rich progress bar on rank 0 (a no-op elsewhere or when disabled)."""

    def __init__(self, enabled: bool, total: int, name: str) -> None:
        self.bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn(f"embed-train {name}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]:.4f}"),
                TimeRemainingColumn(),
            )
            self.task = self.bar.add_task("train", total=total, loss=float("nan"))

    def __enter__(self) -> _progress:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def advance(self, step: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step, loss=loss)
