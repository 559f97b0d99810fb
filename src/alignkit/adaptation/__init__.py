"""Adaptation and robustness: test-time feature alignment (CAFA), covariate-shift double weighting (DW-GCS),
imbalanced semi-supervised pseudo-labels (DASO), CLIP-driven multi-label pseudo-labels (CDUL) and multi-task
information transfer. Importing this package registers them."""

from alignkit.adaptation.cafa import FeatureAlignmentBatch, cafa, class_gaussian_stats, mahalanobis
from alignkit.adaptation.cdul import cdul_label_update, cdul_pseudo_labels
from alignkit.adaptation.daso import (
    SemiSupervisedBatch,
    daso,
    daso_pseudo_labels,
    distribution_weights,
    semantic_probs,
)
from alignkit.adaptation.dwgcs import double_weights, median_sigma, rbf_kernel, weighted_mmd2
from alignkit.adaptation.task_transfer import TaskAlignment, svd_task_weights, task_covariance_similarity

__all__ = [
    "FeatureAlignmentBatch",
    "SemiSupervisedBatch",
    "TaskAlignment",
    "cafa",
    "cdul_label_update",
    "cdul_pseudo_labels",
    "class_gaussian_stats",
    "daso",
    "daso_pseudo_labels",
    "distribution_weights",
    "double_weights",
    "mahalanobis",
    "median_sigma",
    "rbf_kernel",
    "semantic_probs",
    "svd_task_weights",
    "task_covariance_similarity",
    "weighted_mmd2",
]
