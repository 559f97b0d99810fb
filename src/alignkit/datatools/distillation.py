"""Dataset distillation by matching smooth expert trajectories (Shen et al., arXiv:2310.10541): learn a tiny
synthetic set whose few training steps move a student along the path of an expert trained on the real data.

    from alignkit.datatools.distillation import digits_split, train_expert, distill
    (xtr, ytr), (xte, yte) = digits_split()
    traj = train_expert(xtr, ytr)                       # smooth (gradient-clipped) expert checkpoints
    syn_x, syn_y, lr = distill(traj, xtr, ytr, images_per_class=5)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from alignkit.registry import register

PAPER = "Efficient Dataset Distillation through Alignment with Smooth and High-Quality Expert Trajectories"


def mlp_shapes(d_in: int, hidden: int, n_classes: int) -> list[tuple[int, ...]]:
    return [(d_in, hidden), (hidden,), (hidden, n_classes), (n_classes,)]


def mlp_forward(theta: Tensor, x: Tensor, shapes: list[tuple[int, ...]]) -> Tensor:
    """A two-layer ReLU MLP whose parameters are one flat vector (so trajectories are vectors)."""
    parts, i = [], 0
    for s in shapes:
        n = int(np.prod(s))
        parts.append(theta[i : i + n].reshape(s))
        i += n
    w1, b1, w2, b2 = parts
    return torch.relu(x @ w1 + b1) @ w2 + b2


def init_params(shapes: list[tuple[int, ...]], seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in shapes:
        if len(s) == 2:
            out.append(torch.randn(s, generator=g) * (2.0 / s[0]) ** 0.5)
        else:
            out.append(torch.zeros(s))
    return torch.cat([p.reshape(-1) for p in out])


def digits_split(
    test_size: float = 0.3, seed: int = 0
) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """scikit-learn's 8x8 digits, scaled to [0, 1], split into train / test (stratified)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.data.astype(np.float32) / 16.0
    xtr, xte, ytr, yte = train_test_split(
        x, d.target, test_size=test_size, random_state=seed, stratify=d.target
    )
    return (torch.tensor(xtr), torch.tensor(ytr)), (torch.tensor(xte), torch.tensor(yte))


def train_expert(
    x: Tensor,
    y: Tensor,
    *,
    hidden: int = 32,
    epochs: int = 20,
    lr: float = 0.1,
    batch_size: int = 64,
    clip: float = 1.0,
    seed: int = 0,
) -> list[Tensor]:
    """An expert trajectory: SGD on the real data with gradient clipping (the paper's smoothing), one flat
    checkpoint per epoch (``epochs + 1`` tensors, the first being the initialisation)."""
    shapes = mlp_shapes(x.shape[1], hidden, int(y.max()) + 1)
    theta = init_params(shapes, seed).requires_grad_(True)
    g = torch.Generator().manual_seed(seed)
    traj = [theta.detach().clone()]
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            idx = perm[i : i + batch_size]
            loss = torch.nn.functional.cross_entropy(mlp_forward(theta, x[idx], shapes), y[idx])
            (grad,) = torch.autograd.grad(loss, theta)
            norm = grad.norm()
            if norm > clip:
                grad = grad * (clip / norm)
            with torch.no_grad():
                theta -= lr * grad
        traj.append(theta.detach().clone())
    return traj


@register(
    name="trajectory_matching",
    kind="data_rule",
    family="distillation",
    paper=PAPER,
    arxiv="2310.10541",
    aliases=("mtt_loss", "dataset_distillation"),
    tags=("modality:image", "dataset-distillation"),
    verification="reconstruction",
)
def trajectory_matching_loss(student_end: Tensor, expert_start: Tensor, expert_target: Tensor) -> Tensor:
    """Efficient Dataset Distillation through Alignment with Smooth and High-Quality Expert Trajectories
    (arXiv:2310.10541).

    Matching training trajectories (MTT): start a student at an expert checkpoint theta*_t, take N steps on the
    synthetic set, and compare where it lands with the expert M epochs later, normalised by how far the expert
    moved. The paper's additions: experts trained with gradient clipping (smooth trajectories), a
    representative (k-means) initialisation of the synthetic set, a balanced inner loss, and matching the
    intermediate student steps too (``intermediate=True`` in :func:`distill`).

    Formula:
        theta_hat_{i+1} = theta_hat_i - lr * grad L(theta_hat_i; synthetic set),  theta_hat_0 = theta*_t, i < N
        L_match = ||theta_hat_N - theta*_{t+M}||^2 / ||theta*_t - theta*_{t+M}||^2
        (intermediate) mean_k ||theta_hat_{kN/K} - theta*_{t+kM/K}||^2 / ||theta*_t - theta*_{t+kM/K}||^2

    Hyper-parameters (of :func:`distill`; paper values are for CIFAR-scale ConvNets, ours for digits MLPs):
        expert_epochs M: 2 — ours.
        syn_steps N: 10 — ours.
        max_start_epoch: 10 — ours.
        images_per_class: 5 — ours.
        lr_img 0.1, lr_lr 1e-3, initial syn lr 0.05 — ours.
        clip 1.0 (expert gradient clipping) — ours; the paper clips expert gradients for smoothness.

    Matching at the target exactly gives 0; a student that does not move gives 1.
    """
    den = (expert_start - expert_target).pow(2).sum()
    if float(den) == 0:
        raise ValueError("expert_start and expert_target are equal: the expert did not move")
    return (student_end - expert_target).pow(2).sum() / den


def unrolled_student(
    theta0: Tensor, syn_x: Tensor, syn_y: Tensor, lr: Tensor, n_steps: int, shapes: list[tuple[int, ...]]
) -> list[Tensor]:
    """``n_steps`` full-batch GD steps on the synthetic set, differentiable w.r.t. ``syn_x`` and ``lr``
    (create_graph); returns every iterate (n_steps + 1)."""
    thetas = [theta0]
    theta = theta0
    for _ in range(n_steps):
        loss = torch.nn.functional.cross_entropy(mlp_forward(theta, syn_x, shapes), syn_y)
        (g,) = torch.autograd.grad(loss, theta, create_graph=True)
        theta = theta - lr * g
        thetas.append(theta)
    return thetas


def representative_init(x: Tensor, y: Tensor, images_per_class: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """k-means centres of each class's real images (the paper's representative initialisation)."""
    from sklearn.cluster import KMeans

    xs, ys = [], []
    for c in torch.unique(y).tolist():
        xc = x[y == c].numpy()
        km = KMeans(n_clusters=images_per_class, n_init=3, random_state=seed).fit(xc)
        xs.append(torch.tensor(km.cluster_centers_, dtype=torch.float32))
        ys.append(torch.full((images_per_class,), c, dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)


def distill(
    trajectory: list[Tensor],
    x: Tensor,
    y: Tensor,
    *,
    hidden: int = 32,
    images_per_class: int = 5,
    iterations: int = 200,
    syn_steps: int = 10,
    expert_epochs: int = 2,
    max_start_epoch: int = 10,
    lr_img: float = 0.1,
    lr_lr: float = 1e-3,
    syn_lr: float = 0.05,
    intermediate: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Learn ``images_per_class`` synthetic images per class (and the student's learning rate) by trajectory
    matching against ``trajectory`` (from :func:`train_expert`). Returns ``x``, ``y``, ``lr`` and the
    ``losses`` per iteration."""
    if len(trajectory) < expert_epochs + 2:
        raise ValueError("the trajectory is shorter than expert_epochs + 2 checkpoints")
    shapes = mlp_shapes(x.shape[1], hidden, int(y.max()) + 1)
    syn_x, syn_y = representative_init(x, y, images_per_class, seed)
    syn_x = syn_x.clone().requires_grad_(True)
    log_lr = torch.tensor(float(np.log(syn_lr)), requires_grad=True)
    opt = torch.optim.SGD(
        [{"params": [syn_x], "lr": lr_img}, {"params": [log_lr], "lr": lr_lr}], momentum=0.5
    )
    rng = np.random.default_rng(seed)
    last = min(max_start_epoch, len(trajectory) - 1 - expert_epochs)
    losses = []
    for _ in range(iterations):
        t = int(rng.integers(0, last + 1))
        start, target = trajectory[t], trajectory[t + expert_epochs]
        thetas = unrolled_student(
            start.clone().requires_grad_(True), syn_x, syn_y, log_lr.exp(), syn_steps, shapes
        )
        loss = trajectory_matching_loss(thetas[-1], start, target)
        if intermediate and expert_epochs > 1:
            mids = []
            for k in range(1, expert_epochs):
                mids.append(
                    trajectory_matching_loss(thetas[k * syn_steps // expert_epochs], start, trajectory[t + k])
                )
            loss = (loss + torch.stack(mids).sum()) / expert_epochs
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return {"x": syn_x.detach(), "y": syn_y, "lr": float(log_lr.detach().exp()), "losses": losses}


def train_on(
    x: Tensor, y: Tensor, *, hidden: int = 32, steps: int = 300, lr: float = 0.05, seed: int = 0
) -> Tensor:
    """Full-batch GD on a (small) training set from a fresh initialisation; returns the flat parameters."""
    shapes = mlp_shapes(x.shape[1], hidden, 10)
    theta = init_params(shapes, seed).requires_grad_(True)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(mlp_forward(theta, x, shapes), y)
        (g,) = torch.autograd.grad(loss, theta)
        with torch.no_grad():
            theta -= lr * g
    return theta.detach()


def accuracy(theta: Tensor, x: Tensor, y: Tensor, hidden: int = 32) -> float:
    shapes = mlp_shapes(x.shape[1], hidden, 10)
    with torch.no_grad():
        return float((mlp_forward(theta, x, shapes).argmax(-1) == y).float().mean())
