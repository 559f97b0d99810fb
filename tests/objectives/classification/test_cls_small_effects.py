"""Small effect tests (seconds, synthetic data) of two seed objectives, recorded for the claims board:

- Z-Error (arXiv:2506.02154): masking batch z-score outliers makes regression robust to corrupted targets;
- regression + classification (arXiv:2308.10603): an auxiliary cross-entropy on the binned target helps a
  regression network when the targets are imbalanced.

3 seeds each, the mean over seeds and a 95% t-interval of the paired difference (2 degrees of freedom)."""

from __future__ import annotations

import math
import statistics

import torch

import alignkit as ak
from alignkit.objectives.classification import ClassificationBatch
from tests.claims_io import record_claims

SEEDS = (0, 1, 2)
T95 = 4.303  # two-sided 95% t quantile, 2 degrees of freedom


def _interval(xs: list[float]) -> list[float]:
    m, h = statistics.fmean(xs), T95 * statistics.stdev(xs) / math.sqrt(len(xs))
    return [m - h, m + h]


def _mlp(seed: int, d_in: int, d_out: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d_in, 32), torch.nn.Tanh(), torch.nn.Linear(32, d_out))


def _corrupted_regression(seed: int, n: int = 600, d: int = 8, share: float = 0.1):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g)
    x = torch.randn(2 * n, d, generator=g)
    y = torch.sin(x @ w / math.sqrt(d)) + 0.05 * torch.randn(2 * n, generator=g)
    ytr = y[:n].clone()
    bad = torch.randperm(n, generator=g)[: int(share * n)]
    ytr[bad] += 10.0 * torch.randn(len(bad), generator=g)  # gross label errors on 10% of the training set
    return x[:n], ytr, x[n:], y[n:]


def test_z_error_is_robust_to_corrupted_regression_targets():
    """10% of 600 training targets get N(0, 10²) noise added; an MLP (8-32-1), Adam lr 1e-2, 300 steps, batch 64,
    plain MSE vs Z-Error (tau 2); clean test MSE on 600 fresh points."""
    res: dict[str, list[float]] = {"mse": [], "z_error": []}
    for seed in SEEDS:
        xtr, ytr, xte, yte = _corrupted_regression(seed)
        for name in res:
            model = _mlp(seed, xtr.shape[1], 1)
            opt = torch.optim.Adam(model.parameters(), lr=1e-2)
            g = torch.Generator().manual_seed(100 + seed)
            for _ in range(300):
                idx = torch.randint(0, len(ytr), (64,), generator=g)
                pred = model(xtr[idx]).squeeze(-1)
                if name == "mse":
                    loss = ((pred - ytr[idx]) ** 2).mean()
                else:
                    loss = ak.get("z_error")(ClassificationBatch(predictions=pred, targets=ytr[idx])).loss
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                res[name].append(float(((model(xte).squeeze(-1) - yte) ** 2).mean()))
    diff = [a - b for a, b in zip(res["mse"], res["z_error"], strict=True)]
    # the log-ratio too: a difference of MSEs scales with the MSE, so it varies across seeds with the outliers drawn
    log_ratio = [math.log(a / b) for a, b in zip(res["mse"], res["z_error"], strict=True)]
    print("z-error test MSE:", res, "MSE - Z-Error:", statistics.fmean(diff), _interval(diff))
    record_claims(
        "cls_z_error",
        {
            "mse": statistics.fmean(res["mse"]),
            "z_error": statistics.fmean(res["z_error"]),
            "diff": statistics.fmean(diff),
            "diff_ci": _interval(diff),
            "log_ratio": statistics.fmean(log_ratio),
            "log_ratio_ci": _interval(log_ratio),
            "seeds_better": sum(d > 0 for d in diff),
        },
        tolerance=1e-3,
    )
    assert all(math.isfinite(v) for vs in res.values() for v in vs)


def _imbalanced_regression(seed: int, n: int = 800, d: int = 6):
    """Targets in [0, 1], heavily imbalanced: most of the mass near 0 (y = u^4 of a smooth function u)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g)
    x = torch.randn(2 * n, d, generator=g)
    u = torch.sigmoid(x @ w / math.sqrt(d) * 2.0)
    y = u**4
    return x[:n], y[:n], x[n:], y[n:]


def test_classification_head_helps_imbalanced_regression():
    """An MLP with a regression output and a 10-bin classification head (6-32-11), Adam lr 1e-2, 300 full-batch
    steps on 800 imbalanced targets; MSE alone vs MSE + lam · CE on the bins; test MSE of the regression output,
    overall and on the rare upper half of the target range (y > 0.5)."""
    lam = 1.0  # the objective's default: the paper adds the two losses unweighted
    res: dict[str, list[float]] = {"mse": [], "reg_cls": [], "mse_rare": [], "reg_cls_rare": []}
    for seed in SEEDS:
        xtr, ytr, xte, yte = _imbalanced_regression(seed)
        rare = yte > 0.5
        for name, weight in (("mse", 0.0), ("reg_cls", lam)):
            model = _mlp(seed, xtr.shape[1], 11)
            opt = torch.optim.Adam(model.parameters(), lr=1e-2)
            for _ in range(300):
                out = model(xtr)
                batch = ClassificationBatch(predictions=out[:, 0], targets=ytr, logits=out[:, 1:])
                loss = ak.get("reg_cls")(batch, lam=weight).loss
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                err = (model(xte)[:, 0] - yte) ** 2
            res[name].append(float(err.mean()))
            res[f"{name}_rare"].append(float(err[rare].mean()))
    diff = [a - b for a, b in zip(res["mse"], res["reg_cls"], strict=True)]
    diff_rare = [a - b for a, b in zip(res["mse_rare"], res["reg_cls_rare"], strict=True)]
    print("reg+cls test MSE:", res)
    record_claims(
        "cls_reg_plus_cls",
        {k: statistics.fmean(v) for k, v in res.items()}
        | {"diff": statistics.fmean(diff), "diff_ci": _interval(diff)}
        | {"diff_rare": statistics.fmean(diff_rare), "diff_rare_ci": _interval(diff_rare)}
        | {"seeds_better": sum(d > 0 for d in diff)},
        tolerance=1e-6,  # the test MSEs are ~1e-4: an absolute 1e-3 would accept anything
    )
    assert all(math.isfinite(v) for vs in res.values() for v in vs)
