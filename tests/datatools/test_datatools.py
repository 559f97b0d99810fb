"""Control+Shift (arXiv:2409.07940) shift intensity and dataset distillation by trajectory matching
(arXiv:2310.10541) on scikit-learn's digits."""

import numpy as np
import pytest
import torch

import alignkit as ak
from alignkit.datatools.control_shift import controlled_shift_latents, latent_for_task, shifted_split
from alignkit.datatools.distillation import (
    accuracy,
    digits_split,
    distill,
    mlp_shapes,
    representative_init,
    train_expert,
    train_on,
    trajectory_matching_loss,
    unrolled_student,
)
from alignkit.testbed.tasks import Prompt
from tests.claims_io import record_claims


def test_registered():
    assert ak.get("controllable_shift").kind == "data_rule" and ak.get("mtt_loss").arxiv == "2310.10541"


@pytest.mark.parametrize("s", [0.0, 0.3, 1.0])
def test_latent_shift_intensity_is_the_overlap(s):
    zt, zs = controlled_shift_latents(20000, 20000, 3, intensity=s, seed=1)
    # P(z_1 >= 0) is (1 - s)/2 under train and (1 + s)/2 under test; TV between the two = s
    assert (zt[:, 0] >= 0).mean() == pytest.approx((1 - s) / 2, abs=0.01)
    assert (zs[:, 0] >= 0).mean() == pytest.approx((1 + s) / 2, abs=0.01)
    # other coordinates are untouched standard normals
    assert abs(zt[:, 1].mean()) < 0.03 and zt[:, 1].std() == pytest.approx(1.0, abs=0.03)
    if s == 1.0:
        assert zt[:, 0].max() <= 0 <= zs[:, 0].min()  # disjoint supports


def test_shifted_split_on_testbed_prompts():
    pool = [Prompt(text=f"{i}+1=", ids=[i], meta={"answer": i + 1}) for i in range(400)]
    lat = latent_for_task("arith")
    tr0, te0 = shifted_split(pool, lat, intensity=0.0, n_train=100, n_test=100)
    tr1, te1 = shifted_split(pool, lat, intensity=1.0, n_train=100, n_test=100)
    assert max(lat(p) for p in tr1) < min(lat(p) for p in te1)  # s = 1: train below the median, test above
    gap0 = abs(np.mean([lat(p) for p in te0]) - np.mean([lat(p) for p in tr0]))
    gap1 = np.mean([lat(p) for p in te1]) - np.mean([lat(p) for p in tr1])
    assert gap0 < 40 < 150 < gap1  # pool answers 1..400: no shift ~ 0, full shift ~ 200
    assert not {id(p) for p in tr1} & {id(p) for p in te1}  # no item in both sets
    with pytest.raises(ValueError, match="intensity"):
        shifted_split(pool, lat, intensity=1.5, n_train=1, n_test=1)
    with pytest.raises(ValueError, match="too small"):
        shifted_split(pool, lat, intensity=1.0, n_train=300, n_test=10)


def test_matching_loss_limits_and_gradients():
    a, b = torch.zeros(5), torch.ones(5)
    assert float(trajectory_matching_loss(b, a, b)) == 0.0  # student lands on the target
    assert float(trajectory_matching_loss(a, a, b)) == 1.0  # student did not move
    assert float(trajectory_matching_loss(torch.full((5,), 0.5), a, b)) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="did not move"):
        trajectory_matching_loss(a, a, a)
    shapes = mlp_shapes(4, 3, 2)
    theta0 = torch.randn(sum(int(np.prod(s)) for s in shapes), requires_grad=True)
    sx = torch.randn(6, 4, requires_grad=True)
    lr = torch.tensor(0.1, requires_grad=True)
    thetas = unrolled_student(theta0, sx, torch.tensor([0, 1] * 3), lr, 3, shapes)
    assert len(thetas) == 4 and torch.equal(thetas[0], theta0)
    assert float(
        trajectory_matching_loss(thetas[0].detach(), theta0.detach(), theta0.detach() + 1)
    ) == pytest.approx(1.0)
    trajectory_matching_loss(thetas[-1], theta0.detach(), theta0.detach() + 1).backward()
    assert sx.grad is not None and torch.isfinite(sx.grad).all() and sx.grad.abs().sum() > 0
    assert lr.grad is not None and torch.isfinite(lr.grad)


@pytest.mark.slow
def test_distilled_digits_beat_random_real_images():
    """5 synthetic images per class, distilled by trajectory matching, against 5 random real images per class and
    against the k-means initialisation, each trained from 3 fresh initialisations (test accuracy)."""
    (xtr, ytr), (xte, yte) = digits_split()
    traj = train_expert(xtr, ytr, epochs=14)
    r = distill(traj, xtr, ytr, iterations=120)
    assert np.mean(r["losses"][-20:]) < np.mean(r["losses"][:20])
    kx, ky = representative_init(xtr, ytr, 5)
    dist, rand, km = [], [], []
    for s in range(3):
        dist.append(accuracy(train_on(r["x"], r["y"], seed=s), xte, yte))
        km.append(accuracy(train_on(kx, ky, seed=s), xte, yte))
        g = torch.Generator().manual_seed(s)
        idx = torch.cat(
            [
                torch.nonzero(ytr == c).flatten()[torch.randperm(int((ytr == c).sum()), generator=g)[:5]]
                for c in range(10)
            ]
        )
        rand.append(accuracy(train_on(xtr[idx], ytr[idx], seed=s), xte, yte))
    print(f"distilled {dist} k-means {km} random {rand}")
    record_claims("data_distillation", {"distilled": dist, "kmeans": km, "random": rand}, tolerance=0.005)
    assert min(dist) > max(rand) and np.mean(dist) > np.mean(rand) + 0.04
