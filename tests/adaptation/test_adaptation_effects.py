"""Effect tests on scikit-learn's shipped data sets, each against the unadapted baseline over 5 seeds (mean and a
t-interval of the paired difference are printed for docs/claims.md, whatever they show):

- DW-GCS (double weighting) under a covariate shift made by biased sampling along the first principal component
  of breast-cancer: weighted vs unweighted logistic regression;
- DASO on a long-tailed split of digits: FixMatch with DASO's blended pseudo-labels and semantic alignment vs
  plain FixMatch, balanced test accuracy;
- CAFA at test time on digits under a feature shift (per-pixel gain and offset): unadapted vs test-batch
  BatchNorm statistics vs CAFA (BatchNorm statistics + CAFA loss on the affine parameters).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from alignkit.adaptation import (
    FeatureAlignmentBatch,
    SemiSupervisedBatch,
    cafa,
    class_gaussian_stats,
    daso,
    double_weights,
)
from tests.claims_io import record_claims

SEEDS = (0, 1, 2, 3, 4)


def _interval(diffs: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval of paired differences across seeds."""
    a = np.asarray(diffs)
    t975 = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78, 6: 2.57}[len(a)]
    half = t975 * a.std(ddof=1) / math.sqrt(len(a))
    return float(a.mean()), float(a.mean() - half), float(a.mean() + half)


def _figures(prefix: str, base: list[float], new: list[float]) -> dict[str, float | list[float]]:
    """Means, the paired difference's mean and t-interval, and its paired t-test p-value, for the claims board."""
    from scipy import stats

    m, lo, hi = _interval([n - b for n, b in zip(new, base, strict=True)])
    p = float(stats.ttest_rel(new, base).pvalue) if np.std(np.subtract(new, base)) > 0 else float(m == 0)
    return {
        f"{prefix}_base": float(np.mean(base)),
        f"{prefix}_new": float(np.mean(new)),
        f"{prefix}_diff": m,
        f"{prefix}_diff_ci": [lo, hi],
        f"{prefix}_p": p,
    }


def _report(name: str, base: list[float], new: list[float]) -> tuple[float, float, float]:
    m, lo, hi = _interval([n - b for n, b in zip(new, base, strict=True)])
    print(
        f"\n{name}: baseline {np.mean(base):.3f} -> adapted {np.mean(new):.3f}; "
        f"difference {m:+.3f} [95% CI {lo:+.3f}, {hi:+.3f}] over {len(base)} seeds"
    )
    return m, lo, hi


# --- DW-GCS -----------------------------------------------------------------------------------------------------


def _covariate_shift_split(seed: int, n_train: int = 80, n_test: int = 80):
    from sklearn.datasets import load_breast_cancer
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    z = PCA(n_components=1, random_state=0).fit_transform(x)[:, 0]
    z = (z - z.mean()) / z.std()
    rng = np.random.default_rng(seed)
    p_train = 1 / (1 + np.exp(2.0 * z))  # training data over-sample low z, test data high z
    train = rng.choice(len(x), n_train, replace=False, p=p_train / p_train.sum())
    rest = np.setdiff1d(np.arange(len(x)), train)
    p_test = 1 / (1 + np.exp(-2.0 * z[rest]))
    test = rng.choice(rest, n_test, replace=False, p=p_test / p_test.sum())
    return x[train], y[train], x[test], y[test]


@pytest.mark.slow
def test_dwgcs_weighting_under_covariate_shift():
    from sklearn.linear_model import LogisticRegression

    base, weighted = [], []
    for seed in SEEDS:
        xtr, ytr, xte, yte = _covariate_shift_split(seed)
        features = [0, 1]  # a misspecified model (two features): the case where reweighting can matter
        beta, _ = double_weights(torch.from_numpy(xtr), torch.from_numpy(xte), D=4.0)
        plain = LogisticRegression(max_iter=1000).fit(xtr[:, features], ytr)
        w = LogisticRegression(max_iter=1000).fit(xtr[:, features], ytr, sample_weight=beta.numpy() + 1e-8)
        base.append(plain.score(xte[:, features], yte))
        weighted.append(w.score(xte[:, features], yte))
        assert np.isfinite(beta.numpy()).all() and beta.min() >= -1e-9
    m, lo, hi = _report(
        "DW-GCS (D=4) weighted LR vs unweighted LR, breast cancer, PC1-biased split", base, weighted
    )
    record_claims("adapt_dwgcs", _figures("dwgcs", base, weighted))
    assert all(0.0 <= a <= 1.0 for a in base + weighted) and lo <= m <= hi


# --- DASO -------------------------------------------------------------------------------------------------------


def _long_tailed_digits(seed: int, head_l: int = 20, head_u: int = 100, ratio: float = 10.0):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    rng = np.random.default_rng(seed)
    lab, unl, test = [], [], []
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_l = max(1, round(head_l * ratio ** (-c / 9)))
        n_u = max(1, round(head_u * ratio ** (-c / 9)))
        lab += list(idx[:n_l])
        unl += list(idx[n_l : n_l + n_u])
        test += list(idx[n_l + n_u : n_l + n_u + 30])
    return (
        torch.tensor(x[lab], dtype=torch.float32),
        torch.tensor(y[lab]),
        torch.tensor(x[unl], dtype=torch.float32),
        torch.tensor(x[test], dtype=torch.float32),
        torch.tensor(y[test]),
    )


class _Net(nn.Module):
    def __init__(self, d_in: int = 64, hidden: int = 64, classes: int = 10, bn: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden) if bn else nn.Identity(), nn.ReLU()
        )
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.body(x)
        return self.head(z), z


def _balanced_accuracy(model: _Net, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        pred = model(x)[0].argmax(-1)
    return float(np.mean([(pred[y == c] == c).float().mean().item() for c in y.unique()]))


def _fixmatch(seed: int, use_daso: bool, steps: int = 400, warmup: int = 100) -> float:
    xl, yl, xu, xt, yt = _long_tailed_digits(seed)
    torch.manual_seed(seed)
    model = _Net()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)

    def weak(x: torch.Tensor) -> torch.Tensor:
        return x + 0.05 * torch.randn(x.shape, generator=g)

    def strong(x: torch.Tensor) -> torch.Tensor:
        return (x + 0.2 * torch.randn(x.shape, generator=g)) * (torch.rand(x.shape, generator=g) > 0.3)

    counts = torch.ones(10)
    window = torch.zeros(10)
    for step in range(steps):
        il = torch.randint(len(xl), (32,), generator=g)
        iu = torch.randint(len(xu), (64,), generator=g)
        logits_l, _ = model(weak(xl[il]))
        loss = F.cross_entropy(logits_l, yl[il])
        xw, xs = weak(xu[iu]), strong(xu[iu])
        logits_w, feat_w = model(xw)
        logits_s, feat_s = model(xs)
        if use_daso and step >= warmup:
            with torch.no_grad():
                _, feat_l = model(xl)
                protos = torch.stack([feat_l[yl == c].mean(0) for c in range(10)])
            out = daso(
                SemiSupervisedBatch(
                    logits_w.detach(), logits_s, feat_w.detach(), feat_s, protos, counts / counts.sum()
                )
            )
            loss = loss + out.loss
            with torch.no_grad():  # running pseudo-label distribution (refreshed every 20 steps)
                p_lin = logits_w.softmax(-1)
                window += torch.bincount(p_lin.argmax(-1), minlength=10).float()
                if step % 20 == 19:
                    counts, window = window + 1, torch.zeros(10)
        else:
            with torch.no_grad():
                conf, target = logits_w.softmax(-1).max(-1)
            loss = loss + (F.cross_entropy(logits_s, target, reduction="none") * (conf >= 0.95)).mean()
            if use_daso:
                with torch.no_grad():
                    window += torch.bincount(target, minlength=10).float()
                    if step % 20 == 19:
                        counts, window = window + 1, torch.zeros(10)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return _balanced_accuracy(model, xt, yt)


@pytest.mark.slow
def test_daso_on_long_tailed_digits():
    base = [_fixmatch(s, use_daso=False) for s in SEEDS]
    new = [_fixmatch(s, use_daso=True) for s in SEEDS]
    m, lo, hi = _report("DASO vs FixMatch, long-tailed digits (ratio 10), balanced test accuracy", base, new)
    record_claims("adapt_daso", _figures("daso", base, new))
    assert all(0.0 <= a <= 1.0 for a in base + new) and lo <= m <= hi


# --- CAFA -------------------------------------------------------------------------------------------------------


def _cafa_run(seed: int, lr: float = 1e-3) -> tuple[float, float, float]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.tensor(x / 16.0, dtype=torch.float32)
    y = torch.tensor(y)
    rng = np.random.default_rng(seed)
    perm = torch.tensor(rng.permutation(len(x)))
    src, tgt = perm[:900], perm[900 : 900 + 13 * 64]  # whole test batches of 64
    torch.manual_seed(seed)
    model = _Net(bn=True)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(300):
        i = src[torch.randint(len(src), (64,))]
        loss = F.cross_entropy(model(x[i])[0], y[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        feats = model(x[src[:300]])[1]
    means, prec = class_gaussian_stats(feats, y[src[:300]], 10)
    gain = torch.tensor(rng.uniform(0.3, 1.7, 64), dtype=torch.float32)
    offset = torch.tensor(rng.normal(0, 0.3, 64), dtype=torch.float32)
    xt, yt = x[tgt] * gain + offset, y[tgt]

    def accuracy(m: _Net, train_bn: bool, adapt: bool) -> float:
        m = __import__("copy").deepcopy(m)
        bn = m.body[1]
        m.train(train_bn)
        params = [bn.weight, bn.bias]
        o = torch.optim.Adam(params, lr=lr)
        correct = 0
        for start in range(0, len(xt), 64):
            xb = xt[start : start + 64]
            logits, z = m(xb)
            if adapt:  # online TTA: predict and adapt on the same batch (as the paper)
                out = cafa(FeatureAlignmentBatch(z, logits, means, prec))
                o.zero_grad()
                out.loss.backward()
                o.step()
            correct += int((logits.argmax(-1) == yt[start : start + 64]).sum())
        return correct / len(xt)

    return accuracy(model, False, False), accuracy(model, True, False), accuracy(model, True, True)


@pytest.mark.slow
def test_cafa_under_test_time_feature_shift():
    runs = [_cafa_run(s) for s in SEEDS]
    unadapted, bn_only, with_cafa = ([r[i] for r in runs] for i in range(3))
    _report("test-batch BN statistics vs unadapted, shifted digits", unadapted, bn_only)
    m, lo, hi = _report("CAFA (BN stats + CAFA loss) vs unadapted, shifted digits", unadapted, with_cafa)
    _report("CAFA vs test-batch BN statistics alone, shifted digits", bn_only, with_cafa)
    fast = [_cafa_run(s, lr=1e-2)[2] for s in SEEDS]  # a 10x larger step on the BN affine parameters
    _report("CAFA (Adam lr 1e-2) vs test-batch BN statistics alone, shifted digits", bn_only, fast)
    record_claims(
        "adapt_cafa",
        _figures("cafa", unadapted, with_cafa)
        | _figures("cafa_vs_bn", bn_only, with_cafa)
        | _figures("cafa_fast_vs_bn", bn_only, fast),
    )
    assert all(0.0 <= a <= 1.0 for a in unadapted + with_cafa) and lo <= m <= hi
