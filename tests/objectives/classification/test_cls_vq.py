"""VQ straight-through fixes (Huh et al., arXiv:2305.08842): STE identity, sync update, affine codebook,
alternating optimisation; the authors' vqtorch straight-through line restated."""

import pytest
import torch

import alignkit as ak
from alignkit.objectives.classification import VectorQuantizer, VQBatch
from alignkit.objectives.classification.vq import alternating_step


def _vqtorch_ste(z, z_q, nu):
    """vqtorch/nn/vq.py VectorQuant.straight_through_approximation, restated."""
    if nu > 0:
        return z + (z_q - z).detach() + (nu * z_q) + (-nu * z_q).detach()
    return z + (z_q - z).detach()


def test_forward_value_is_the_nearest_code_and_ste_gradient_is_identity():
    torch.manual_seed(0)
    vq = VectorQuantizer(5, 3)
    z = torch.randn(7, 3, requires_grad=True)
    out, loss, idx = vq(z)
    brute = torch.tensor(
        [min(range(5), key=lambda k: float((zi - vq.codebook[k]).pow(2).sum())) for zi in z.detach()]
    )
    assert torch.equal(idx, brute) and torch.allclose(out, vq.codebook[idx])
    up = torch.randn(7, 3)
    (g,) = torch.autograd.grad((out * up).sum(), z)
    assert torch.allclose(
        g, up
    )  # sync_nu = 0: d z_out / d z = I, and nothing reaches the codebook through out
    cb_grad = torch.autograd.grad((out * up).sum(), vq.codebook, allow_unused=True)[0]
    assert cb_grad is None or cb_grad.abs().sum() == 0


def test_sync_update_sends_nu_times_the_gradient_to_the_code_and_matches_vqtorch():
    torch.manual_seed(1)
    vq = VectorQuantizer(4, 2, sync_nu=2.0)
    z = torch.randn(6, 2, requires_grad=True)
    out, _, idx = vq(z)
    ref = _vqtorch_ste(z, vq.codebook[idx], 2.0)
    assert torch.allclose(out, ref) and torch.allclose(out, vq.codebook[idx])
    up = torch.randn(6, 2)
    gz, gc = torch.autograd.grad((out * up).sum(), [z, vq.codebook])
    expect = torch.zeros(4, 2).index_add_(0, idx, 2.0 * up)
    assert torch.allclose(gz, up) and torch.allclose(gc, expect)


def test_affine_codebook_is_identity_at_init_and_moves_every_code():
    torch.manual_seed(2)
    vq = VectorQuantizer(6, 3, affine_lr=2.0)
    assert torch.allclose(vq.effective_codebook(), vq.codebook)
    z = torch.randn(4, 3) * 3 + 5
    _, loss, idx = vq(z)
    loss.backward()
    assert vq.affine_scale.grad.abs().sum() > 0 and vq.affine_bias.grad.abs().sum() > 0
    with torch.no_grad():
        vq.affine_bias.add_(1.0)
    moved = vq.effective_codebook() - vq.codebook
    assert torch.allclose(moved, torch.full((6, 3), 2.0))  # a shared shift moves unselected codes too


def test_vq_loss_hand_value_and_gradients():
    """z = [1, 0], q = [0, 0]: codebook term 0.5 (mean over D=2 of 1), commitment 0.25 * 0.5 -> 0.625.
    Gradients: d/dq = -(z - q) * 2 / D = [-1, 0]; d/dz = beta * 2 (z - q) / D = [0.25, 0]."""
    z = torch.tensor([[1.0, 0.0]], requires_grad=True)
    q = torch.tensor([[0.0, 0.0]], requires_grad=True)
    out = ak.get("vq_commitment")(VQBatch(latents=z, codes=q))
    assert out.loss.item() == pytest.approx(0.625)
    out.loss.backward()
    assert torch.allclose(q.grad, torch.tensor([[-1.0, 0.0]])) and torch.allclose(
        z.grad, torch.tensor([[0.25, 0.0]])
    )
    with pytest.raises(ValueError, match="codes"):
        VQBatch(latents=z, codes=torch.zeros(2, 2))


def test_alternating_step_updates_codebook_with_encoder_fixed():
    torch.manual_seed(3)
    enc = torch.nn.Linear(3, 2)
    vq = VectorQuantizer(4, 2)
    x = torch.randn(16, 3)

    def loss_fn():
        out, vq_loss, _ = vq(enc(x))
        return (out - x[:, :2]).pow(2).mean() + vq_loss

    enc_opt = torch.optim.SGD(enc.parameters(), lr=0.1)
    cb_opt = torch.optim.SGD(vq.codebook_parameters(), lr=0.1)
    w0, c0 = enc.weight.detach().clone(), vq.codebook.detach().clone()
    enc_after_cb = []
    orig_step = cb_opt.step

    def spy():
        orig_step()
        enc_after_cb.append(torch.equal(enc.weight, w0))

    cb_opt.step = spy
    alternating_step(loss_fn, enc_opt, cb_opt, codebook_steps=2)
    assert enc_after_cb == [True, True]  # the codebook steps leave the encoder alone
    assert not torch.equal(enc.weight, w0) and not torch.equal(vq.codebook, c0)
