"""The distillation path of ``alignkit train``: a frozen teacher whose outputs the objective reads as fields.

An objective whose spec declares a teacher field (``teacher_logits``, ``teacher_hidden_states``: ``gkd``,
``distilbert``) and takes a :class:`~alignkit.objectives.distillation.DistillationBatch` trains on SFT data
(prompt/completion, text or messages: the SFT data path, the same tokens and target mask) with a teacher given
by ``--teacher`` (:attr:`TrainConfig.teacher`). For each micro-batch:

1. the rows are laid out padded (prompt + completion); the *distilled positions* are those whose next token is
   a target token, i.e. exactly the tokens SFT's loss is on (the completion; all tokens but the first for plain
   text; the assistant turns of a conversation);
2. the teacher runs once, in eval mode under ``no_grad``: its logits at the distilled positions ``(N, V)`` and,
   when the plan supplies ``teacher_hidden_states``, its last hidden states ``(B, L-1, H)``;
3. the student runs through :class:`DistillScorer` (the module DDP / FSDP wrap): its logits at the same
   positions and, when wanted, its last hidden states;
4. the objective gets a ``DistillationBatch``: ``student_logits``, ``teacher_logits``, ``mlm_labels`` = the
   target tokens, and the hidden states with ``hidden_mask`` = the distilled positions.

For a causal LM student, DistilBERT's masked-LM term becomes the student's next-token cross-entropy on the data's
target tokens (``mlm_labels`` holds the next tokens; no token is masked): a documented adaptation, since masked
LM is not a causal LM's objective. Its cosine term compares last hidden states (after the final norm) at the
distilled positions; it is computed only when teacher and student have the same hidden size (else reported at
start and the term is 0, as the objective's ``optional`` says).

Refused before any training step, each with the flag to change: a distillation objective without ``--teacher``
(naming the field); ``--teacher`` with an objective that reads no teacher output; teacher and student
vocabularies that differ (size, or token -> id maps when both have a tokenizer); a mode other than SFT;
``reward_fn`` (on-policy distillation, TRL's ``lmbda > 0``, is not done); ``packing=True`` (distillation runs
padded). The teacher is part of the run's identity (:func:`alignkit.train.run_dir.run_identity`): resuming with
another teacher is refused.
"""

from __future__ import annotations

import collections
import contextlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.engine.head import _logit_transform
from alignkit.engine.logprobs import join
from alignkit.engine.models import _backbone_and_head, unwrap_model
from alignkit.errors import UserError
from alignkit.registry import Objective
from alignkit.spec import FIELDS

TEACHER_FIELDS = ("teacher_logits", "teacher_hidden_states")
HIDDEN_FIELDS = ("teacher_hidden_states", "student_hidden_states")


def _declared(obj: Objective) -> set[str]:
    spec = obj.spec
    return {*spec.requires, *spec.optional, *(f for fs in spec.requires_when.values() for f in fs)}


def reads_teacher(obj: Objective) -> bool:
    """Whether ``obj``'s spec declares a teacher field."""
    return bool(_declared(obj) & set(TEACHER_FIELDS))


def resolve_mode(cfg: Any, obj: Objective) -> str | None:
    """``"sft"`` for a distillation objective this path can run, ``None`` for any other objective (the trainer's
    own modes); raises :class:`UserError` for what it cannot run (module docstring)."""
    from alignkit.objectives.distillation.distilbert import DistillationBatch

    if not reads_teacher(obj):
        if cfg.teacher is not None:
            raise UserError(
                f"--teacher was given but objective {obj.name!r} reads no teacher output (its spec declares no "
                f"{' / '.join(TEACHER_FIELDS)}); remove --teacher, or choose a distillation objective "
                "(`alignkit list --family distillation`)"
            )
        return None
    bt = obj.batch_type
    if bt is None or not issubclass(bt, DistillationBatch):
        name = bt.__name__ if bt is not None else "mix of batch classes"
        raise UserError(
            f"objective {obj.name!r} takes a {name}; the trainer's distillation path builds a DistillationBatch "
            "(one teacher's logits and hidden states). Call it through the Python API on batches you build."
        )
    if cfg.teacher is None:
        field = next((f for f in obj.spec.required() if f in TEACHER_FIELDS), "teacher_logits")
        raise UserError(
            f"objective {obj.name!r} needs {field} ({FIELDS[field].doc}): pass --teacher PATH_OR_HUB_ID "
            "(TrainConfig.teacher; TRL: teacher_model_name_or_path)"
        )
    if cfg.mode not in ("auto", "sft"):
        raise UserError(
            f"objective {obj.name!r} distils on SFT data (prompt/completion, text or messages); mode "
            f"{cfg.mode!r} is not supported (use --mode auto or sft)"
        )
    if cfg.reward_fn is not None:
        raise UserError(
            f"objective {obj.name!r}: on-policy distillation (student samples, TRL's lmbda > 0) is not done by "
            "alignkit train; remove reward_fn (--reward-fn) to distil on the data's completions"
        )
    if cfg.packing:
        raise UserError("packing=True: the distillation path runs padded rows; use --no-packing")
    return "sft"


def load_teacher(cfg: Any, device: torch.device) -> tuple[nn.Module, str | None]:
    """The frozen teacher (eval mode, no gradients, on ``device``) and its folder / hub id (None in memory)."""
    spec = cfg.teacher
    if isinstance(spec, nn.Module):
        teacher, path = spec, None
    elif isinstance(spec, (str, os.PathLike)):
        from transformers import AutoModelForCausalLM

        path = str(spec)
        teacher = AutoModelForCausalLM.from_pretrained(
            path, dtype=getattr(torch, cfg.teacher_dtype), trust_remote_code=cfg.trust_remote_code
        )
    else:
        raise UserError(f"teacher must be a path / hub id or a PreTrainedModel; got {type(spec).__name__}")
    teacher.to(device)
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher, path


def check_vocabulary(
    teacher: nn.Module, teacher_path: str | None, student: nn.Module, tokenizer: Any, trust_remote_code: bool
) -> list[str]:
    """Refuse a teacher whose vocabulary is not the student's; return notes on what could not be compared."""
    vt = _backbone_and_head(teacher)[1].weight.shape[0]
    vs = _backbone_and_head(student)[1].weight.shape[0]
    if vt != vs:
        raise UserError(
            f"the teacher's vocabulary ({vt} logits) differs from the student's ({vs}): token-level distillation "
            "compares distributions over the same token ids. Use a teacher that shares the student's tokenizer"
        )
    notes: list[str] = []
    teacher_tok = None
    if teacher_path is not None:
        from transformers import AutoTokenizer

        try:
            teacher_tok = AutoTokenizer.from_pretrained(teacher_path, trust_remote_code=trust_remote_code)
        except (OSError, ValueError):
            teacher_tok = None
    if teacher_tok is not None and tokenizer is not None:
        if teacher_tok.get_vocab() != tokenizer.get_vocab():
            diff = sorted(set(teacher_tok.get_vocab().items()) ^ set(tokenizer.get_vocab().items()))[:3]
            raise UserError(
                f"the teacher's tokenizer ({teacher_path}) maps tokens to ids differently from the student's "
                f"(e.g. {diff}): the logits would be compared on different tokens. Use a teacher that shares the "
                "student's tokenizer"
            )
    else:
        notes.append(
            "distillation: teacher and student vocabularies were compared by size only (a tokenizer is missing)"
        )
    return notes


def offered_fields(
    obj: Objective, teacher: nn.Module, student: nn.Module
) -> tuple[frozenset[str], list[str]]:
    """The fields this path computes for ``obj`` (``plan_fields(computed=...)``), and notes on those it cannot."""
    out = {"teacher_logits", "student_logits", "mlm_labels"}
    notes: list[str] = []
    if _declared(obj) & set(HIDDEN_FIELDS):
        ht, hs = _hidden_size(teacher), _hidden_size(student)
        if ht is not None and ht == hs:
            out.update(HIDDEN_FIELDS)
        else:
            notes.append(
                f"{obj.name}: the teacher's hidden size ({ht}) is not the student's ({hs}); hidden states are not "
                "compared"
            )
    return frozenset(out), notes


def _hidden_size(model: nn.Module) -> int | None:
    h = getattr(getattr(unwrap_model(model), "config", None), "hidden_size", None)
    return int(h) if isinstance(h, int) else None


def head_logits(model: nn.Module, rows: Tensor) -> Tensor:
    """Full-vocabulary fp32 logits of final hidden ``rows`` (N, H) through ``model``'s LM head (with the model's
    ``logit_scale`` / ``final_logit_softcapping`` where its config has them)."""
    _, head = _backbone_and_head(model)
    logits = head(rows).float()
    scale, softcap = _logit_transform(model)
    if scale is not None:
        logits = logits * scale
    if softcap is not None:
        logits = torch.tanh(logits / softcap) * softcap
    return logits


def forward_outputs(
    model: nn.Module, ids: Tensor, att: Tensor, comp: Tensor, want_hidden: bool
) -> tuple[Tensor, Tensor | None, Tensor]:
    """``(logits at the distilled positions (N, V) fp32, last hidden states (B, L-1, H) or None, positions
    (B, L-1) bool)``; position t predicts token t + 1."""
    positions = comp[:, 1:].bool() & att[:, 1:].bool()
    decoder, _ = _backbone_and_head(model)
    if decoder is not None:
        hidden = decoder(input_ids=ids, attention_mask=att, use_cache=False)[0][:, :-1]
        return head_logits(model, hidden[positions]), (hidden if want_hidden else None), positions
    out = model(input_ids=ids, attention_mask=att, use_cache=False, output_hidden_states=want_hidden)
    hidden = out.hidden_states[-1][:, :-1] if want_hidden else None
    return out.logits[:, :-1][positions].float(), hidden, positions


class DistillScorer(nn.Module):
    """The student forward of the distillation path as one module (what DDP / FSDP wrap; ``.model`` as
    :class:`~alignkit.engine.layout.PolicyScorer`)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, ids: Tensor, att: Tensor, comp: Tensor, want_hidden: bool = False
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        return forward_outputs(self.model, ids, att, comp, want_hidden)


class Distiller:
    """Builds each micro-batch's ``DistillationBatch``: the teacher once (no grad), the student through
    ``scorer``. ``teacher_forwards`` counts teacher forward passes. ``keep``: teacher outputs of up to ``keep``
    micro-batches are kept for a second pass over the same rows (SAM's closure); the teacher is frozen, so they
    are the same tensors."""

    def __init__(self, teacher: nn.Module, fields: frozenset[str], pad: int, device: torch.device) -> None:
        self.teacher, self.fields, self.pad, self.device = teacher, fields, pad, device
        self.hidden = "teacher_hidden_states" in fields
        self.teacher_forwards = 0
        self.keep = 0
        self._kept: collections.OrderedDict[tuple[int, ...], tuple[Tensor, Tensor | None]] = (
            collections.OrderedDict()
        )

    def _teacher(
        self, key: tuple[int, ...], ids: Tensor, att: Tensor, comp: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        if key in self._kept:
            return self._kept[key]
        with torch.no_grad():
            logits, hidden, _ = forward_outputs(self.teacher, ids, att, comp, self.hidden)
        self.teacher_forwards += 1
        out = (logits, hidden.float() if hidden is not None else None)
        if self.keep:
            self._kept[key] = out
            while len(self._kept) > self.keep:
                self._kept.popitem(last=False)
        return out

    def build(
        self, scorer: nn.Module, micro: Sequence[Any], autocast: Callable[[], Any] = contextlib.nullcontext
    ) -> tuple[Any, float]:
        """``(DistillationBatch, tokens)`` of the micro-batch ``micro`` (prepared SFT examples)."""
        from alignkit.objectives.distillation.distilbert import DistillationBatch

        ids, att, comp = join(
            [e.prompt_ids for e in micro],
            [e.completion_ids for e in micro],
            self.pad,
            self.device,
            masks=[e.target_mask for e in micro] if any(e.target_mask is not None for e in micro) else None,
        )
        t_logits, t_hidden = self._teacher(tuple(id(e) for e in micro), ids, att, comp)
        with autocast():
            s_logits, s_hidden, positions = scorer(ids, att, comp, self.hidden)
        kw: dict[str, Any] = {"student_logits": s_logits.float(), "teacher_logits": t_logits}
        if "mlm_labels" in self.fields:
            kw["mlm_labels"] = ids[:, 1:][positions]
        if self.hidden:
            kw.update(student_hidden=s_hidden.float(), teacher_hidden=t_hidden, hidden_mask=positions)
        return DistillationBatch(**kw), float(att.sum())
