"""Model merging on safetensors checkpoints: task arithmetic, TIES, DARE, WiSE-FT, Disperse-Then-Merge,
Self Positioning, and the online merging optimizers (OnDARE/OnTIES). Importing this package registers them.

    from alignkit.merging import Checkpoint, ties, save
    merged = ties(Checkpoint("base"), [Checkpoint("a"), Checkpoint("b")], weights=[0.5, 0.5], density=0.2)
    save(merged, "out", like="base")

The command line: ``alignkit merge --method ties --base BASE --models A B --weights 0.5 0.5 --output OUT``.
See docs/merging.md.
"""

from alignkit.merging.checkpoint import Checkpoint, StateDict, check_compatible, load, save
from alignkit.merging.dare import dare, dare_sparsify, dare_ties
from alignkit.merging.disperse_then_merge import average, disperse, disperse_then_merge
from alignkit.merging.online_merging import OnlineMergingOptimizer, ondare, onties
from alignkit.merging.self_positioning import self_positioning
from alignkit.merging.task_arithmetic import task_arithmetic
from alignkit.merging.ties import magnitude_prune, ties
from alignkit.merging.wise_ft import wise_ft, wise_ft_curve

__all__ = [
    "Checkpoint",
    "OnlineMergingOptimizer",
    "StateDict",
    "average",
    "check_compatible",
    "dare",
    "dare_sparsify",
    "dare_ties",
    "disperse",
    "disperse_then_merge",
    "load",
    "magnitude_prune",
    "ondare",
    "onties",
    "save",
    "self_positioning",
    "task_arithmetic",
    "ties",
    "wise_ft",
    "wise_ft_curve",
]
