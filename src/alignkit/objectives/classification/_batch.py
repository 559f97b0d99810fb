"""The batch of the classification / regression family: a classifier's logits (or a regressor's predictions), the
targets, and optional extra views of the same examples.

Objectives of this family are pure functions of these tensors; the model that made them (an MLP on scikit-learn's
digits, a CNN, a transformer head) is the caller's. Every field is validated here, and errors name the field.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from alignkit.spec import register_field

# Batch attribute -> registered field name (alignkit.spec.FIELDS). Prefixed so they cannot clash with LM fields.
FIELD_OF: dict[str, str] = {
    "logits": "class_logits",
    "targets": "class_targets",
    "predictions": "class_predictions",
    "views": "class_views",
    "view_weights": "class_view_weights",
    "base_logits": "class_base_logits",
}

# class_logits is declared once in alignkit.spec (shared with the adaptation family)
register_field(
    "class_targets",
    "targets (ClassificationBatch.targets): class ids (B,) int, soft labels (B, C) float, or regression values",
    column="label (an int class id, a list of C probabilities, or a number)",
)
register_field(
    "class_predictions",
    "a regressor's predictions (B,) / (B, D), or class probabilities (B, C) (ClassificationBatch.predictions)",
)
register_field(
    "class_views",
    "logits (B, C) of other views of the same examples: AugMix augmentations, adversarial or mixed inputs",
)
register_field("class_view_weights", "per-view coefficients (B, V), e.g. the mixup lambda of each mixed view")
register_field(
    "class_base_logits",
    "the frozen classifier's logits (B, C) before a post-hoc calibrator (ClassificationBatch.base_logits)",
)


def _check_float(name: str, t: Tensor, dims: tuple[int, ...]) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"ClassificationBatch.{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() not in dims:
        raise ValueError(
            f"ClassificationBatch.{name} must have {' or '.join(map(str, dims))} dims, got {tuple(t.shape)}"
        )
    if not t.is_floating_point():
        raise TypeError(f"ClassificationBatch.{name} must be a floating tensor, got {t.dtype}")


@dataclass
class ClassificationBatch:
    """Inputs of a classification / regression loss.

    ``logits``: (B, C) raw scores. ``targets``: (B,) integer class ids, (B, C) soft labels (rows sum to 1), or
    floating regression values (B,) / (B, D). ``predictions``: a regressor's outputs, (B,) / (B, D), or class
    probabilities (B, C). ``views``: logits (B, C) of other views of the same B examples (AugMix's augmented
    copies, SCORE's adversarial inputs, RankMixup's mixed inputs). ``view_weights``: (B, V) coefficients of the
    views (RankMixup: the mixup lambda). ``base_logits``: (B, C) logits of the frozen classifier a post-hoc
    calibrator rescales (correctness is read from them).
    """

    logits: Tensor | None = None
    targets: Tensor | None = None
    predictions: Tensor | None = None
    views: tuple[Tensor, ...] = ()
    view_weights: Tensor | None = None
    base_logits: Tensor | None = None

    def __post_init__(self) -> None:
        if self.logits is None and self.predictions is None:
            raise ValueError("ClassificationBatch needs logits or predictions; both are None")
        if self.logits is not None:
            _check_float("logits", self.logits, (2,))
        if self.predictions is not None:
            _check_float("predictions", self.predictions, (1, 2))
        n = (self.logits if self.logits is not None else self.predictions).shape[0]
        if self.predictions is not None and self.predictions.shape[0] != n:
            raise ValueError(
                f"ClassificationBatch.predictions has {self.predictions.shape[0]} rows but logits have {n}"
            )
        if self.targets is not None:
            if not isinstance(self.targets, Tensor):
                raise TypeError(
                    f"ClassificationBatch.targets must be a torch.Tensor, got {type(self.targets).__name__}"
                )
            if self.targets.shape[0] != n:
                raise ValueError(
                    f"ClassificationBatch.targets has {self.targets.shape[0]} rows, expected {n}"
                )
            if not self.targets.is_floating_point():
                if self.targets.dim() != 1:
                    raise ValueError(
                        f"ClassificationBatch.targets: integer class ids must be 1-D (B,), got {tuple(self.targets.shape)}"
                    )
                if self.logits is not None and self.targets.numel():
                    c = self.logits.shape[1]
                    if int(self.targets.min()) < 0 or int(self.targets.max()) >= c:
                        raise ValueError(
                            f"ClassificationBatch.targets: class ids must be in [0, {c}); got "
                            f"[{int(self.targets.min())}, {int(self.targets.max())}]"
                        )
        if not isinstance(self.views, tuple):
            self.views = tuple(self.views)
        for i, v in enumerate(self.views):
            _check_float(f"views[{i}]", v, (2,))
            if self.logits is not None and v.shape != self.logits.shape:
                raise ValueError(
                    f"ClassificationBatch.views[{i}] has shape {tuple(v.shape)}; logits have {tuple(self.logits.shape)}"
                )
        if self.view_weights is not None:
            _check_float("view_weights", self.view_weights, (2,))
            if self.view_weights.shape != (n, len(self.views)):
                raise ValueError(
                    f"ClassificationBatch.view_weights must be (B, V) = ({n}, {len(self.views)}), "
                    f"got {tuple(self.view_weights.shape)}"
                )
        if self.base_logits is not None:
            _check_float("base_logits", self.base_logits, (2,))
            if self.logits is not None and self.base_logits.shape != self.logits.shape:
                raise ValueError(
                    f"ClassificationBatch.base_logits has shape {tuple(self.base_logits.shape)}; "
                    f"logits have {tuple(self.logits.shape)}"
                )

    # --- accessors that name the missing field -------------------------------------------------------------------

    def need(self, name: str) -> Tensor:
        """The field ``name``, or a ValueError naming it when it is missing."""
        value = getattr(self, name)
        if value is None or (name == "views" and not value):
            raise ValueError(
                f"this objective needs ClassificationBatch.{name} (field {FIELD_OF[name]!r}); it is missing"
            )
        return value

    def class_ids(self) -> Tensor:
        """Integer targets (B,); soft-label targets are refused with an error naming the field."""
        t = self.need("targets")
        if t.is_floating_point():
            raise ValueError(
                "this objective needs integer class ids in ClassificationBatch.targets, got floats"
            )
        return t

    def soft_targets(self, num_classes: int) -> Tensor:
        """Targets as (B, C) probabilities: one-hot for class ids, the rows themselves for soft labels."""
        t = self.need("targets")
        if not t.is_floating_point():
            return torch.nn.functional.one_hot(t, num_classes).to(self.need("logits").dtype)
        if t.dim() != 2 or t.shape[1] != num_classes:
            raise ValueError(
                f"ClassificationBatch.targets: soft labels must be (B, {num_classes}); got {tuple(t.shape)}"
            )
        return t
