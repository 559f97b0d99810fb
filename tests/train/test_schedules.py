"""LR schedules: the former trainer's values kept exactly; WSD cooldown shapes (Dremov et al., arXiv:2508.01483)."""

import math

import pytest
import torch

from alignkit.train.schedules import COOLDOWN_SHAPES, cooldown_factor, lr_lambda


def _former_schedule(kind, total, warmup, decay_ratio):
    """alignkit.train.trainer._schedule as it stood before this module (copied verbatim)."""

    def f(step):
        if warmup and step < warmup:
            return (step + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        decay_start = total - max(1, int(round(decay_ratio * total)))
        if step < decay_start:
            return 1.0
        return max(0.0, 1.0 - (step - decay_start) / max(1, total - decay_start))

    return f


@pytest.mark.parametrize("kind", ["constant", "linear", "cosine", "wsd"])
@pytest.mark.parametrize(
    "total,warmup,ratio", [(100, 0, 0.1), (37, 5, 0.3), (10, 3, 0.0), (1, 0, 0.1), (200, 20, 1.0)]
)
def test_identical_to_the_former_trainer_schedule(kind, total, warmup, ratio):
    old, new = _former_schedule(kind, total, warmup, ratio), lr_lambda(kind, total, warmup, ratio)
    for step in range(total + 3):
        assert new(step) == old(step), (kind, step)


def test_matches_the_former_schedule_through_torch_lambdalr():
    p = torch.nn.Parameter(torch.zeros(1))
    lrs = []
    for fn in (_former_schedule("wsd", 50, 5, 0.2), lr_lambda("wsd", 50, 5, 0.2)):
        opt = torch.optim.SGD([p], lr=0.1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, fn)
        run = []
        for _ in range(50):
            run.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        lrs.append(run)
    assert lrs[0] == lrs[1]


@pytest.mark.parametrize("shape", sorted(COOLDOWN_SHAPES))
def test_cooldown_shapes_endpoints_and_monotone(shape):
    for floor in (0.0, 0.1):
        assert cooldown_factor(shape, 0.0, floor) == pytest.approx(1.0)
        assert cooldown_factor(shape, 1.0, floor) == pytest.approx(floor, abs=1e-12)
        vals = [cooldown_factor(shape, i / 100, floor) for i in range(101)]
        assert all(a >= b - 1e-12 for a, b in zip(vals, vals[1:], strict=False)), shape
        assert all(floor - 1e-12 <= v <= 1 + 1e-12 for v in vals)


def test_cooldown_hand_values_and_ordering():
    """At u = 1/4: linear 0.75, cosine (1 + cos(pi/4))/2 = 0.8536, 1-sqrt 0.5, 1-square 0.9375,
    mirror-cosine 1.5 - 0.8536 = 0.6464."""
    u = 0.25
    expect = {
        "linear": 0.75,
        "cosine": (1 + math.cos(math.pi / 4)) / 2,
        "1-sqrt": 0.5,
        "1-square": 0.9375,
        "mirror-cosine": 1.5 - (1 + math.cos(math.pi / 4)) / 2,
    }
    for shape, v in expect.items():
        assert cooldown_factor(shape, u) == pytest.approx(v, abs=1e-12)


@pytest.mark.parametrize("shape", ["linear", "cosine", "1-sqrt"])
def test_wsd_cooldown_matches_transformers(shape):
    """transformers.get_wsd_schedule (decay_type linear / cosine / 1-sqrt) in the stable + decay phases."""
    from transformers import get_wsd_schedule

    total, ratio, floor = 60, 0.25, 0.1
    decay = max(1, int(round(ratio * total)))
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    hf = get_wsd_schedule(
        opt,
        num_warmup_steps=0,
        num_stable_steps=total - decay,
        num_decay_steps=decay,
        decay_type=shape,
        min_lr_ratio=floor,
    )
    ours = lr_lambda("wsd", total, 0, ratio, cooldown=shape, min_ratio=floor)
    for step in range(total):
        assert ours(step) == pytest.approx(hf.lr_lambdas[0](step), abs=1e-12), step


def test_bad_arguments_name_the_choice():
    with pytest.raises(ValueError, match="cooldown"):
        lr_lambda("wsd", 10, 0, 0.1, cooldown="exp")
    with pytest.raises(ValueError, match="wsd"):
        lr_lambda("cosine", 10, 0, 0.1, cooldown="1-sqrt")
    with pytest.raises(ValueError, match="lr_scheduler"):
        lr_lambda("step", 10, 0, 0.1)
