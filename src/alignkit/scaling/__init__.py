"""Scaling laws from the seed papers, as registered components (kind ``scaling_law``), and the tools to fit them
to a CSV of runs with bootstrap intervals, plot the fit and predict. Importing this package registers the laws.

    from alignkit.scaling import fit, read_runs
    result = fit("chinchilla", read_runs("runs.csv"))      # or: alignkit scaling fit --law chinchilla --csv ...
"""

from alignkit.scaling import (  # noqa: F401 - importing registers the laws
    continual_pretraining,
    downstream,
    llm_line,
    loss_to_loss,
    repeated_data,
    time_matters,
)
from alignkit.scaling.continual_pretraining import lr_areas
from alignkit.scaling.fit import FitResult, fit, fit_groups, predict, read_runs, select
from alignkit.scaling.plot import plot_fit
from alignkit.scaling.repeated_data import effective_params

__all__ = [
    "FitResult",
    "effective_params",
    "fit",
    "fit_groups",
    "lr_areas",
    "plot_fit",
    "predict",
    "read_runs",
    "select",
]
