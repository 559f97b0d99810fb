"""Distillation: DistilBERT's triple loss and GKD's generalized JSD (objectives on teacher/student tensors; both run
in ``alignkit train --teacher``), Weight-Inherited
Distillation's compactors (a procedure), and the loop that distils a real teacher (all-MiniLM-L6-v2) into a
shallower student. Importing this package registers them."""

from alignkit.objectives.distillation.distilbert import (
    DistillationBatch,
    distilbert,
    hidden_cosine,
    soft_target_kl,
)
from alignkit.objectives.distillation.gkd import generalized_jsd, gkd
from alignkit.objectives.distillation.train import (
    compare_to_teacher,
    distillation_batch,
    distillation_loss,
    load_minilm_teacher,
    mask_tokens,
    sentence_embeddings,
    student_forward,
    student_from_teacher,
    teacher_outputs,
    tied_logits,
    train_student,
)
from alignkit.objectives.distillation.wid import (
    CompactedFFN,
    Compactor,
    wid_fold,
    wid_hard_prune,
    wid_mask_count,
    wid_squeeze_step,
)

__all__ = [
    "CompactedFFN",
    "Compactor",
    "DistillationBatch",
    "compare_to_teacher",
    "distilbert",
    "distillation_batch",
    "distillation_loss",
    "generalized_jsd",
    "gkd",
    "hidden_cosine",
    "load_minilm_teacher",
    "mask_tokens",
    "sentence_embeddings",
    "soft_target_kl",
    "student_forward",
    "student_from_teacher",
    "teacher_outputs",
    "tied_logits",
    "train_student",
    "wid_fold",
    "wid_hard_prune",
    "wid_mask_count",
    "wid_squeeze_step",
]
