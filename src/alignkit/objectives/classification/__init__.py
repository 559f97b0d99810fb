"""Classification, regression and robustness losses over logits / predictions (family "classification").

Batch: :class:`ClassificationBatch` (logits or predictions, targets, optional extra views). One paper per file.
"""

from alignkit.objectives.classification import (  # noqa: F401
    augmix,
    calibration,
    comp_sum,
    jaccard,
    rankmixup,
    regression_by_classification,
    score,
    squentropy,
    vq,
    z_error,
)
from alignkit.objectives.classification._batch import ClassificationBatch  # noqa: F401
from alignkit.objectives.classification._examples import install as _install_examples
from alignkit.objectives.classification.vq import VectorQuantizer, VQBatch  # noqa: F401

_install_examples()
