"""Diagnostics: measurements that explain what an objective does to a model (registered with kind="diagnostic").
Importing this package registers them. Their trainer hooks are in :mod:`alignkit.diagnostics.hooks`."""

from alignkit.diagnostics import (  # noqa: F401
    class_imbalance,
    flatness,
    gradient_entanglement,
    hessian,
    judge_bias,
    loss_dynamics,
    neuron_alignment,
    shift_shapley,
    signal_propagation,
    taxonomy,
)
