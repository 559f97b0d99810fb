"""Vision, audio and text-to-image components on small synthetic tensors: hand values, limiting cases,
gradients, bad input."""

from __future__ import annotations

import math

import pytest
import torch

import alignkit as ak
from alignkit.vision import (
    AttributeBatch,
    GuidanceBatch,
    MaskAlignmentBatch,
    VideoBatch,
    attention_centroid,
    bandpass_filter,
    latent_guidance_step,
    mu_law,
    ot_targets,
    rope,
    strip_speaker_group_tokens,
)

# --- attention refocusing (17) ----------------------------------------------------------------------------------


def test_refocusing_zero_when_attention_peaks_inside_boxes():
    """4 pixels, 2 tokens: token 0's box = pixels {0, 1}, token 1's = {2, 3}. Attention 1 inside at one pixel, 0
    outside, self-attention block-diagonal: CAR = 0 and SAR = 0."""
    m = torch.tensor([[1.0, 1, 0, 0], [0, 0, 1, 1]])
    a = torch.tensor([[1.0, 0], [0.5, 0], [0, 1.0], [0, 0.2]])
    s = torch.block_diag(torch.full((2, 2), 0.5), torch.full((2, 2), 0.5))
    out = ak.get("attention_refocusing")(a, s, m)
    assert out["car"].item() == 0 and out["sar"].item() == 0


def test_refocusing_hand_value():
    """Token 0 peaks at 0.6 inside and 0.3 outside: CAR = (1 - 0.6) + 0.3 = 0.7; uniform self-attention 0.25:
    SAR = 0.25 for the token."""
    m = torch.tensor([[1.0, 1, 0, 0]])
    a = torch.tensor([[0.6], [0.1], [0.3], [0.0]])
    s = torch.full((4, 4), 0.25)
    out = ak.get("attention_refocusing")(a, s, m)
    assert out["car"].item() == pytest.approx(0.7) and out["sar"].item() == pytest.approx(0.25)


def test_latent_guidance_step_decreases_the_loss():
    torch.manual_seed(0)
    w = torch.randn(8, 4)
    m = torch.zeros(2, 4)
    m[0, :2] = 1
    m[1, 2:] = 1

    def loss(z):
        attn = torch.softmax(z @ w, dim=0).T  # (HW=4, K=2) from a latent (2, 8)
        return ak.get("attention_refocusing")(attn, torch.eye(4), m)["loss"]

    z = torch.randn(2, 8)
    z2 = latent_guidance_step(z, loss, step_size=0.1)
    assert loss(z2) < loss(z)


def test_refocusing_shapes_checked():
    with pytest.raises(ValueError, match="box_masks"):
        ak.get("attention_refocusing")(torch.rand(4, 2), torch.rand(4, 4), torch.ones(3, 4))


# --- compositional constraints (65) -----------------------------------------------------------------------------


def test_centroid_of_delta_and_spatial_hinge():
    attn = torch.zeros(2, 5, 5)
    attn[0, 1, 0] = 1  # token 0 at (x=0, y=1)
    attn[1, 3, 4] = 1  # token 1 at (x=4, y=3)
    assert attention_centroid(attn).tolist() == [[0.0, 1.0], [4.0, 3.0]]
    c = ak.get("compositional_t2i_constraints")
    ok = c(attn, [0, 1], relations=[(0, "left", 1), (0, "above", 1)], margin=1.0)
    assert ok["spatial"].item() == 0 and ok["mixing"].item() == 0 and ok["missing"].item() == 0
    bad = c(attn, [0, 1], relations=[(1, "left", 0)], margin=1.0)
    assert bad["spatial"].item() == pytest.approx(4 - 0 + 1)


def test_mixing_and_binding_on_overlapping_maps():
    attn = torch.zeros(2, 2, 2)
    attn[0, 0] = 0.5  # token 0: half its mass on each pixel of row 0
    attn[1, 0, 0] = 1.0  # token 1: pixel (0, 0)
    out = ak.get("compositional_t2i_constraints")(attn, [0, 1], bindings=[(0, 1)])
    assert out["mixing"].item() == pytest.approx(0.5) and out["binding"].item() == pytest.approx(0.5)
    assert out["missing"].item() == pytest.approx(0.5)  # 1 - max(attn[0]) + 1 - max(attn[1])
    with pytest.raises(ValueError, match="relation"):
        ak.get("compositional_t2i_constraints")(attn, [0], relations=[(0, "behind", 1)])


# --- fair diffusion (71) ----------------------------------------------------------------------------------------


def test_ot_reassigns_the_least_confident():
    """N = 4, target [0.5, 0.5], p(class 0) = .9, .8, .7, .6: the two least confident go to class 1."""
    p = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]], dtype=torch.float64)
    assert ot_targets(p, torch.tensor([0.5, 0.5])).tolist() == [0, 0, 1, 1]
    assert ot_targets(p, torch.tensor([1.0, 0.0])).tolist() == [0, 0, 0, 0]  # already matching: own argmax


def test_fair_loss_hand_value_and_gradient():
    p = torch.tensor(
        [[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]], dtype=torch.float64, requires_grad=True
    )
    out = ak.get("fair_distributional_alignment")(
        AttributeBatch(p, torch.tensor([0.5, 0.5])), confidence_threshold=0.0
    )
    expect = -(math.log(0.9) + math.log(0.8) + math.log(0.3) + math.log(0.4)) / 4
    assert out.loss.item() == pytest.approx(expect)
    out.loss.backward()
    assert torch.isfinite(p.grad).all() and p.grad[3, 1] < 0
    with pytest.raises(ValueError, match="target_dist"):
        AttributeBatch(p.detach(), torch.tensor([0.7, 0.7]))


# --- SeaS (99) --------------------------------------------------------------------------------------------------


def test_seas_zero_when_maps_equal_masks_and_symmetric():
    m = torch.zeros(1, 3, 3)
    m[0, 1, 1] = 1
    b = MaskAlignmentBatch(m.unsqueeze(1).repeat(1, 2, 1, 1), 1 - m, m)
    assert ak.get("seas_alignment")(b).loss.item() == 0
    a = torch.rand(1, 1, 3, 3)
    n = torch.rand(1, 3, 3)
    one = ak.get("seas_alignment")(MaskAlignmentBatch(a, n, m)).loss
    swapped = ak.get("seas_alignment")(MaskAlignmentBatch(n.unsqueeze(1), a[:, 0], 1 - m)).loss
    assert one.item() == pytest.approx(swapped.item())  # (anomaly, M) <-> (normal, 1 - M)


def test_seas_hand_value_and_gradient():
    m = torch.tensor([[[1.0, 0.0]]])
    a = torch.tensor([[[[0.5, 0.5]]]], requires_grad=True)
    out = ak.get("seas_alignment")(MaskAlignmentBatch(a, torch.tensor([[[0.0, 1.0]]]), m))
    assert out.loss.item() == pytest.approx((0.25 + 0.25) / 2)
    out.loss.backward()
    assert a.grad.tolist() == [[[[-0.5, 0.5]]]]


# --- grounding-aware token pruning (114) ------------------------------------------------------------------------


def test_pruned_position_ids_modes_and_rope_scores_preserved():
    keep = torch.tensor([[1, 0, 1, 1, 0, 1]])
    gap = ak.get("grounding_aware_position_ids")
    assert gap(keep)[0].tolist() == [0, 2, 3, 5]
    assert gap(keep, mode="contiguous")[0].tolist() == [0, 1, 2, 3]
    assert gap(torch.ones(1, 4))[0].tolist() == [0, 1, 2, 3]  # no pruning: arange
    torch.manual_seed(0)
    q, k = torch.randn(6, 8, dtype=torch.float64), torch.randn(6, 8, dtype=torch.float64)
    full = rope(q, torch.arange(6)) @ rope(k, torch.arange(6)).T
    idx = gap(keep)[0]
    kept = rope(q[idx], idx) @ rope(k[idx], idx).T
    assert torch.allclose(kept, full[idx][:, idx])  # GAP: retained tokens' scores unchanged
    shifted = rope(q[idx], gap(keep, mode="contiguous")[0]) @ rope(k[idx], gap(keep, mode="contiguous")[0]).T
    assert not torch.allclose(shifted, full[idx][:, idx])
    with pytest.raises(ValueError, match="mode"):
        gap(keep, mode="shift")


# --- F-CLIPScore (46) -------------------------------------------------------------------------------------------


def test_f_clipscore_limits_and_hand_value():
    score = torch.tensor([0.3, 0.3])
    attr = torch.tensor([[0.2, -0.1, -0.5], [0.1, 0.2, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    out = ak.get("f_clipscore")(score, attr, mask, lam=2.0)
    assert out["f_clipscore"].tolist() == pytest.approx([0.3 - 0.2, 0.3])  # padding's -0.5 ignored
    assert out["misaligned"].tolist() == [[False, True, False], [False, False, False]]


# --- VFA (60) ---------------------------------------------------------------------------------------------------


def test_bandpass_full_band_identity_and_complementary():
    x = torch.randn(2, 8, 8, dtype=torch.float64)
    assert torch.allclose(bandpass_filter(x, 0.0, 2.0), x)
    assert torch.allclose(bandpass_filter(x, 0.0, 0.3) + bandpass_filter(x, 0.3, 2.0), x)


def test_frequency_profile_and_alignment():
    x = torch.zeros(4, 8, 8, dtype=torch.float64)
    x[:2] = 1.0  # class 0: constant images (all energy at frequency 0)
    x[2:, ::2] = 1.0  # class 1: stripes
    y = torch.tensor([0, 0, 1, 1])

    def predict(imgs):  # a "model" that reads the mean brightness
        m = imgs.mean((-1, -2))
        return torch.stack([m - 0.75, 0.75 - m], -1)

    out = ak.get("vfa_frequency_profile")(predict, x, y, [(0.0, 0.1), (0.1, 2.0)], torch.tensor([1.0, 0.5]))
    assert out["profile"].tolist() == [1.0, 0.5]
    assert out["alignment"].item() == pytest.approx(1.0)


# --- Energy loss (59) -------------------------------------------------------------------------------------------


def test_energy_loss_limits():
    box = torch.zeros(1, 4, 4)
    box[0, :2, :] = 1  # covers half the image
    inside = torch.zeros(1, 4, 4)
    inside[0, 0, 0] = 3.0
    inside[0, 3, 3] = -5.0  # negative attribution outside does not count
    e = ak.get("energy_guidance")
    assert e(GuidanceBatch(inside, box)).loss.item() == pytest.approx(0.0)
    assert e(GuidanceBatch(torch.ones(1, 4, 4), box)).loss.item() == pytest.approx(0.5)  # 1 - f


def test_energy_loss_gradient_moves_mass_into_box():
    box = torch.zeros(1, 2, 2)
    box[0, 0, 0] = 1
    a = torch.ones(1, 2, 2, requires_grad=True)
    ak.get("energy_guidance")(GuidanceBatch(a, box)).loss.backward()
    assert a.grad[0, 0, 0] < 0 and (a.grad[0].flatten()[1:] > 0).all()
    with pytest.raises(ValueError, match="empty"):
        GuidanceBatch(torch.ones(1, 2, 2), torch.zeros(1, 2, 2))


# --- LAN-HDR (4) ------------------------------------------------------------------------------------------------


def test_mu_law_endpoints_and_temporal_invariance():
    assert mu_law(torch.tensor(0.0)).item() == 0 and mu_law(torch.tensor(1.0)).item() == pytest.approx(1.0)
    t = torch.rand(1, 3, 1, 2, 2)
    b = VideoBatch(t.clone(), t)
    assert ak.get("lan_hdr")(b).loss.item() == 0
    # a prediction whose tonemapped frames differ from the target's by the same image at every t: L_temp = 0
    shift = torch.rand(1, 1, 1, 2, 2) * 0.1
    pred = ((torch.log1p(5000 * t) / math.log1p(5000) + shift) * math.log1p(5000)).expm1() / 5000
    out = ak.get("lan_hdr")(VideoBatch(pred.clamp(min=0), t))
    assert out.metrics["loss_temporal"] == pytest.approx(0.0, abs=1e-5) and out.metrics["loss_rec"] > 0


def test_lan_hdr_gradient_and_bad_input():
    p = torch.rand(1, 2, 1, 2, 2, requires_grad=True)
    ak.get("lan_hdr")(VideoBatch(p, torch.rand(1, 2, 1, 2, 2))).loss.backward()
    assert torch.isfinite(p.grad).all()
    with pytest.raises(ValueError, match="non-negative"):
        VideoBatch(-torch.ones(1, 2, 1, 2, 2), torch.rand(1, 2, 1, 2, 2))


# --- long-form ASR speaker groups (38) --------------------------------------------------------------------------


def test_speaker_group_tokens_round_trip_and_change_points():
    segs = ["hello there", "how are you", "fine", "thanks"]
    groups = ["primary", "primary", "non-primary", "primary"]
    out = ak.get("speaker_group_targets")(segs, groups)
    assert out == "<pri> hello there how are you <npri> fine <pri> thanks"
    assert strip_speaker_group_tokens(out) == " ".join(segs)
    with pytest.raises(ValueError, match="speaker group"):
        ak.get("speaker_group_targets")(["a"], ["narrator"])
