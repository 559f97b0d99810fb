"""CLIP, SigLIP, alignment/uniformity, MACL, multi-view InfoNCE / DHEL, transliteration InfoNCE and CLIP+SSL:
hand values, limiting cases, gradients, and parity with open_clip, pytorch-metric-learning and official code."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import itertools
import math
import pathlib

import pytest
import torch
import torch.nn.functional as F

import alignkit as ak
from alignkit.objectives.representation import MultiViewBatch, PairBatch
from alignkit.objectives.representation.align_uniform import alignment, uniformity
from alignkit.objectives.representation.clip_ssl import ClipSSLBatch

VENDORED = pathlib.Path(__file__).parent / "data" / "open_clip_loss_3.3.0.py.txt"


def _load_module(path: pathlib.Path, name: str):
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def open_clip_loss():
    """open_clip's ``loss.py`` — the installed file when open-clip-torch is installed (``pip install --no-deps
    open-clip-torch==3.3.0``; importing the ``open_clip`` package itself needs torchvision, so only this file is
    loaded), else the verbatim copy of open_clip_torch 3.3.0's file in data/ (MIT licence, which only imports
    torch)."""
    spec = importlib.util.find_spec("open_clip")  # locates the package without importing it
    if spec is not None and spec.submodule_search_locations:
        return _load_module(pathlib.Path(next(iter(spec.submodule_search_locations))) / "loss.py", "_oc_loss")
    return _load_module(VENDORED, "_oc_loss_vendored")


def test_vendored_open_clip_loss_is_the_released_file():
    spec = importlib.util.find_spec("open_clip")
    if spec is None:
        pytest.skip("open-clip-torch not installed (pip install --no-deps open-clip-torch==3.3.0 to compare)")
    from importlib.metadata import version

    if version("open_clip_torch") != "3.3.0":
        pytest.skip(f"installed open_clip_torch {version('open_clip_torch')} is not the vendored 3.3.0")
    installed = pathlib.Path(next(iter(spec.submodule_search_locations))) / "loss.py"
    assert installed.read_text() == VENDORED.read_text()


def _pair(b=6, d=8, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, d, generator=g, dtype=dtype), torch.randn(b, d, generator=g, dtype=dtype)


# ---- SigLIP (arXiv:2303.15343) and CLIP (arXiv:2103.00020) ----


def test_siglip_hand_value_single_matched_pair():
    """B = 1, <x, y> = 1, t = 10, b = -10: -log sigmoid(10 - 10) = log 2."""
    x = torch.tensor([[1.0, 0.0]])
    assert ak.get("siglip")(PairBatch(x, x)).loss.item() == pytest.approx(math.log(2))


def test_clip_hand_value_two_orthogonal_pairs():
    """x = y = I (2x2), scale s: each row softmax(s, 0) -> loss = log(1 + e^-s) in both directions."""
    x = torch.eye(2)
    out = ak.get("clip")(PairBatch(x, x), temperature=0.5)
    assert out.loss.item() == pytest.approx(math.log1p(math.exp(-2.0)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_siglip_and_clip_equal_open_clip(open_clip_loss, dtype):
    a, b = _pair(dtype=dtype)
    xa, xb = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    t, bias = torch.tensor(7.5, dtype=dtype), torch.tensor(-4.0, dtype=dtype)
    ours = ak.get("siglip")(PairBatch(a, b, logit_scale=t, logit_bias=bias)).loss
    theirs = open_clip_loss.SigLipLoss()(xa, xb, t, bias)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
    ours = ak.get("clip")(PairBatch(a, b, logit_scale=t)).loss
    assert ours.item() == pytest.approx(open_clip_loss.ClipLoss()(xa, xb, t).item(), rel=1e-6)
    fixed = ak.get("clip")(PairBatch(a, b), temperature=0.07).loss
    assert fixed.item() == pytest.approx(open_clip_loss.ClipLoss()(xa, xb, 1 / 0.07).item(), rel=1e-6)


def test_learnable_scale_and_bias_receive_gradients_and_limits():
    a, b = _pair()
    t_prime = torch.tensor(math.log(10.0), requires_grad=True)
    bias = torch.tensor(-10.0, requires_grad=True)
    a.requires_grad_()
    out = ak.get("siglip")(PairBatch(a, b, logit_scale=t_prime.exp(), logit_bias=bias))
    out.loss.backward()
    for g in (t_prime.grad, bias.grad, a.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    # CLIP: identical embeddings everywhere -> log B; a perfectly matched orthogonal batch -> 0 as scale grows
    same = torch.ones(5, 3)
    assert ak.get("clip")(PairBatch(same, same)).loss.item() == pytest.approx(math.log(5))
    eye = torch.eye(4)
    assert ak.get("clip")(PairBatch(eye, eye), temperature=0.01).loss.item() < 1e-30
    assert ak.get("siglip")(PairBatch(eye, eye), logit_scale=100.0, logit_bias=-50.0).loss.item() < 1e-20


# ---- alignment & uniformity (arXiv:2005.10242) ----


def _official_align(x, y, alpha=2):  # SsnL/align_uniform README
    return (x - y).norm(p=2, dim=1).pow(alpha).mean()


def _official_uniform(x, t=2):
    return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()


def test_alignment_uniformity_hand_values_and_official_code():
    """Two antipodal unit vectors: squared distance 4 -> uniformity log exp(-2 * 4) = -8; identical pairs
    align to 0, antipodal pairs to 4."""
    x = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert uniformity(x) == pytest.approx(-8.0)
    assert alignment(x, x) == 0.0 and alignment(x, -x) == pytest.approx(4.0)
    a, b = _pair(b=10)
    xa, xb = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    assert alignment(a, b) == pytest.approx(_official_align(xa, xb).item())
    assert uniformity(a) == pytest.approx(_official_uniform(xa).item())
    out = ak.get("align_uniform")(PairBatch(a, b))
    want = _official_align(xa, xb) + (_official_uniform(xa) + _official_uniform(xb)) / 2
    assert out.loss.item() == pytest.approx(want.item(), rel=1e-6)


def test_uniformity_decreases_as_points_spread():
    """Points on an arc of growing width: more spread, lower (better) uniformity."""
    vals = []
    for width in (0.1, 0.5, 1.5, 3.0):
        ang = torch.linspace(0, width, 8)
        vals.append(uniformity(torch.stack([ang.cos(), ang.sin()], 1)))
    assert vals == sorted(vals, reverse=True)
    collapsed = torch.ones(6, 3)
    assert uniformity(collapsed) == pytest.approx(0.0)


def test_align_uniform_gradients_flow_to_both_views():
    a, b = _pair()
    a.requires_grad_(), b.requires_grad_()
    ak.get("align_uniform")(PairBatch(a, b)).loss.backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0 and b.grad.abs().sum() > 0


# ---- MACL (arXiv:2207.07874): the official code restated ----


class _OfficialMACLa:  # chenhaoxing/MACL macl.py
    def __init__(self, tau_init=0.1, alpha=2.0):
        self.tau_init, self.alpha = tau_init, alpha

    def __call__(self, fx, gx):
        logits = fx @ gx.T
        A = (torch.trace(logits) / fx.shape[0]).detach()
        tau = self.tau_init * self.alpha**A
        P = torch.softmax(logits / tau, dim=1)
        mask = torch.ones(P.shape).fill_diagonal_(0).bool()
        W = torch.ones(fx.shape[0]) / P.masked_select(mask).view(P.shape[0], -1).sum(-1)
        return (-W.detach() * torch.log(P).diag()).mean()


class _OfficialMACLb(_OfficialMACLa):
    def __init__(self, tau_init=0.1, beta=1.0):
        self.tau_init, self.beta = tau_init, beta

    def __call__(self, fx, gx):
        logits = fx @ gx.T
        A = (torch.trace(logits) / fx.shape[0]).detach()
        tau = self.tau_init * (1 + self.beta * A)
        P = torch.softmax(logits / tau, dim=1)
        mask = torch.ones(P.shape).fill_diagonal_(0).bool()
        W = torch.ones(fx.shape[0]) / P.masked_select(mask).view(P.shape[0], -1).sum(-1)
        return (-W.detach() * torch.log(P).diag()).mean()


@pytest.mark.parametrize("schedule,official", [("linear", _OfficialMACLb()), ("power", _OfficialMACLa())])
def test_macl_equals_official_code_values_and_gradients(schedule, official):
    a, b = _pair(b=8, seed=3)
    a1, a2 = a.clone().requires_grad_(), a.clone().requires_grad_()
    ours = ak.get("macl")(PairBatch(a1, b), schedule=schedule)
    theirs = official(F.normalize(a2, dim=-1), F.normalize(b, dim=-1))
    assert ours.loss.item() == pytest.approx(theirs.item(), rel=1e-5)
    ours.loss.backward()
    theirs.backward()
    assert torch.allclose(a1.grad, a2.grad, atol=1e-6)


def test_macl_without_adaptation_is_reweighted_infonce():
    """beta = 0: tau = tau_init; with W the (detached) weight the loss is sum W_i CE_i / B."""
    a, b = _pair(seed=5)
    out = ak.get("macl")(PairBatch(a, b), beta=0.0)
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / 0.1
    ce = F.cross_entropy(logits, torch.arange(6), reduction="none")
    w = 1 / (1 - torch.exp(-ce))
    assert out.loss.item() == pytest.approx((w * ce).mean().item(), rel=1e-5)


# ---- multi-view (arXiv:2507.06979) ----


def _brute_mv_infonce(views, tau):
    u = F.normalize(views, dim=-1)
    n, v, _ = u.shape
    out = []
    for i in range(n):
        pos = sum(torch.exp(u[i, a] @ u[i, b] / tau) for a, b in itertools.combinations(range(v), 2))
        neg = sum(
            torch.exp(u[i, a] @ u[j, b] / tau) for j in range(n) if j != i for a in range(v) for b in range(v)
        )
        out.append(-torch.log(pos / (pos + neg)))
    return torch.stack(out)


def _brute_mv_dhel(views, tau):
    u = F.normalize(views, dim=-1)
    n, v, _ = u.shape
    out = []
    for i in range(n):
        align = -sum(u[i, a] @ u[i, b] / tau for a, b in itertools.combinations(range(v), 2))
        unif = sum(
            torch.log(sum(torch.exp(u[i, a] @ u[j, a] / tau) for j in range(n) if j != i)) for a in range(v)
        )
        out.append(align + unif)
    return torch.stack(out)


@pytest.mark.parametrize("views", [2, 3])
def test_multiview_losses_equal_brute_force_and_ignore_view_order(views):
    z = torch.randn(5, views, 4, generator=torch.Generator().manual_seed(views), dtype=torch.float64)
    for name, brute in (("mv_infonce", _brute_mv_infonce), ("mv_dhel", _brute_mv_dhel)):
        out = ak.get(name)(MultiViewBatch(z), temperature=0.5)
        assert out.losses.tolist() == pytest.approx(brute(z, 0.5).tolist(), rel=1e-9)
        flipped = ak.get(name)(MultiViewBatch(z.flip(1)), temperature=0.5)
        assert flipped.loss.item() == pytest.approx(out.loss.item(), rel=1e-9)


def test_multiview_gradients_and_batch_errors():
    z = torch.randn(4, 3, 5, requires_grad=True)
    ak.get("mv_infonce")(MultiViewBatch(z)).loss.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="MultiViewBatch.views needs at least 2 views"):
        MultiViewBatch(torch.randn(4, 1, 5))


# ---- transliteration InfoNCE (arXiv:2409.17326) and CLIP + SSL (arXiv:2305.08675) ----


def test_transliteration_contrastive_limits():
    same = torch.ones(6, 4)
    assert ak.get("transliteration_contrastive")(PairBatch(same, same)).loss.item() == pytest.approx(
        math.log(6)
    )
    eye = torch.eye(4)
    out = ak.get("transliteration_contrastive")(PairBatch(eye, eye), temperature=0.01)
    assert out.loss.item() < 1e-30 and out.metrics["translit/similarity_gap"] == pytest.approx(1.0)


def test_clip_ssl_ssl_term_equals_pytorch_metric_learning_ntxent():
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning.losses import NTXentLoss

    a, b = _pair(seed=7)
    a2 = a + 0.3 * torch.randn(a.shape, generator=torch.Generator().manual_seed(1))
    batch = ClipSSLBatch(a=a, b=b, a2=a2)
    out = ak.get("clip_ssl")(batch, ssl_temperature=0.2)
    clip_part = ak.get("clip")(PairBatch(a, b), label_smoothing=0.1).loss
    ntxent = NTXentLoss(temperature=0.2)(torch.cat([a, a2]), torch.arange(6).repeat(2))
    assert out.loss.item() == pytest.approx(clip_part.item() + ntxent.item(), rel=1e-5)
    only_clip = ak.get("clip_ssl")(batch, ssl_weight=0.0, label_smoothing=0.0)
    assert only_clip.loss.item() == pytest.approx(ak.get("clip")(PairBatch(a, b)).loss.item())
    with pytest.raises(ValueError, match="ClipSSLBatch needs a2"):
        ClipSSLBatch(a=a, b=b)
