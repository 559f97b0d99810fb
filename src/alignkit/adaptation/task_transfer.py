"""Information transfer in multi-task learning: the task covariance similarity, per-task alignment modules
before a shared module, and SVD-based task reweighting."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from alignkit.registry import register

PAPER = "Understanding and Improving Information Transfer in Multi-Task Learning"
ARXIV = "2005.00944"


def _psd_sqrt(c: Tensor) -> Tensor:
    vals, vecs = torch.linalg.eigh(c)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


@register(
    name="task_covariance_similarity",
    kind="metric",
    family="adaptation",
    paper=PAPER,
    arxiv=ARXIV,
    tags=("multi-task", "transfer", "modality:any"),
    verification="reconstruction",
)
def task_covariance_similarity(x_i: Tensor, x_j: Tensor) -> float:
    """Understanding and Improving Information Transfer in Multi-Task Learning (arXiv:2005.00944): how aligned
    two tasks' input covariances are — the paper's theory says misaligned task data cause negative transfer.

    Formula:
        C_i = X_i^T X_i,  C_j = X_j^T X_j
        sim = ||C_i^{1/2} C_j^{1/2}||_F / sqrt(||C_i||_F ||C_j||_F)  =  sqrt(tr(C_i C_j)) / sqrt(||C_i||_F ||C_j||_F)
        (1 for proportional covariances, 0 for orthogonal data subspaces; invariant to rescaling either task)

    Hyper-parameters:
        (none)

    Verification: reconstruction — the normalisation is ours, chosen so the score is a cosine between
    covariances (in [0, 1], scale-invariant); the paper's exact normalisation was not read.
    """
    if x_i.dim() != 2 or x_j.dim() != 2 or x_i.shape[1] != x_j.shape[1]:
        raise ValueError(
            f"x_i and x_j must be (n_i, d) and (n_j, d); got {tuple(x_i.shape)}, {tuple(x_j.shape)}"
        )
    ci, cj = x_i.double().T @ x_i.double(), x_j.double().T @ x_j.double()
    num = torch.linalg.matrix_norm(_psd_sqrt(ci) @ _psd_sqrt(cj))
    den = (torch.linalg.matrix_norm(ci) * torch.linalg.matrix_norm(cj)).sqrt()
    if den == 0:
        raise ValueError("a task's inputs are all zero")
    return float(num / den)


class TaskAlignment(nn.Module):
    """Per-task alignment matrices R_i (identity at the start) applied to each task's embedding before the
    shared module: ``shared(R_i E(x))`` — the paper's covariance-alignment improvement (arXiv:2005.00944)."""

    def __init__(self, dim: int, num_tasks: int) -> None:
        super().__init__()
        if dim < 1 or num_tasks < 1:
            raise ValueError("dim and num_tasks must be >= 1")
        self.weight = nn.Parameter(torch.eye(dim).repeat(num_tasks, 1, 1))

    def forward(self, x: Tensor, task: int) -> Tensor:
        if not 0 <= task < self.weight.shape[0]:
            raise ValueError(f"task must be in [0, {self.weight.shape[0]}); got {task}")
        return x @ self.weight[task].T


@register(
    name="svd_task_weights",
    kind="procedure",
    family="adaptation",
    paper=PAPER,
    arxiv=ARXIV,
    tags=("multi-task", "transfer", "modality:any"),
    verification="reconstruction",
)
def svd_task_weights(task_vectors: Tensor, *, rank: int = 1) -> Tensor:
    """Understanding and Improving Information Transfer in Multi-Task Learning (arXiv:2005.00944): SVD-based
    task reweighting — tasks whose single-task solutions lie in the shared top singular subspace get more weight,
    outlying (e.g. noisy) tasks less.

    Formula:
        Theta = [theta_1 ... theta_k] (d x k),  U_r = top-r left singular vectors of Theta
        w_i = ||U_r^T theta_i|| / ||theta_i||,   then normalised to sum to k

    Hyper-parameters:
        rank: 1 — r (ours; the paper chooses it per data set).

    Verification: reconstruction — the rule is rebuilt from the abstract ("an SVD-based task reweighting
    scheme"); the paper's exact weights were not read.
    """
    if task_vectors.dim() != 2:
        raise ValueError(f"task_vectors must be (k, d) (one row per task); got {tuple(task_vectors.shape)}")
    k = task_vectors.shape[0]
    if not 1 <= rank <= min(task_vectors.shape):
        raise ValueError(f"rank must be in [1, {min(task_vectors.shape)}]; got {rank}")
    theta = task_vectors.double().T
    u, _, _ = torch.linalg.svd(theta, full_matrices=False)
    proj = (u[:, :rank].T @ theta).norm(dim=0) / theta.norm(dim=0).clamp(min=1e-12)
    return (proj / proj.sum() * k).to(task_vectors.dtype)
