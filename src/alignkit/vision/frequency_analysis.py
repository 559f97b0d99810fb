"""VFA: accuracy of a vision model on band-pass filtered images, and its alignment with a human profile."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from alignkit.registry import register

PAPER = "VFA: Vision Frequency Analysis of Foundation Models and Human"
ARXIV = ""  # no arXiv id found for this paper


def bandpass_filter(images: Tensor, low: float, high: float) -> Tensor:
    """Keep the spatial frequencies with low <= radius < high (radius in cycles per image side, normalised to
    [0, 1] at the Nyquist frequency) of images (..., H, W), by a hard mask in the 2-D FFT."""
    if not 0 <= low < high:
        raise ValueError(f"need 0 <= low < high; got {low}, {high}")
    h, w = images.shape[-2:]
    fy = torch.fft.fftfreq(h, dtype=torch.float64).abs() * 2
    fx = torch.fft.fftfreq(w, dtype=torch.float64).abs() * 2
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / (2**0.5)
    mask = ((radius >= low) & (radius < high)).to(images.dtype)
    return torch.fft.ifft2(torch.fft.fft2(images) * mask).real


@register(
    name="vfa_frequency_profile",
    kind="diagnostic",
    family="multimodal",
    paper=PAPER,
    arxiv=ARXIV,
    tags=("robustness", "human-alignment", "modality:vision"),
    verification="reconstruction",
)
def frequency_alignment(
    predict: Callable[[Tensor], Tensor],
    images: Tensor,
    labels: Tensor,
    bands: Sequence[tuple[float, float]],
    human_profile: Tensor | None = None,
) -> dict[str, Tensor]:
    """VFA: Vision Frequency Analysis of Foundation Models and Human (no arXiv id found): a model's accuracy on
    each frequency band of the images, and how well that profile correlates with humans' (the paper links human
    alignment to out-of-distribution accuracy).

    Formula:
        acc_b = mean_i [argmax predict(bandpass(x_i, band_b)) == y_i]
        alignment = pearson(acc, human_profile)

    Hyper-parameters:
        bands: (required) — (low, high) radii in [0, 1] (Nyquist = 1 on each axis, radius / sqrt 2).
        human_profile: None — human accuracy per band (the paper's psychophysics data is not shipped).

    Verification: reconstruction — built from the abstract only (band-pass accuracy profile and a correlation);
    the paper's filters, bands and alignment measure were not read. No full pipeline is provided here (no
    foundation model or human data): this is a function of the tensors the method consumes, tested on small
    synthetic tensors.
    """
    accs = []
    for low, high in bands:
        with torch.no_grad():
            pred = predict(bandpass_filter(images, low, high)).argmax(-1)
        accs.append((pred == labels).double().mean())
    profile = torch.stack(accs)
    out = {"profile": profile}
    if human_profile is not None:
        if human_profile.shape != profile.shape:
            raise ValueError(f"human_profile must have shape {tuple(profile.shape)}")
        a = profile - profile.mean()
        b = human_profile.double() - human_profile.double().mean()
        out["alignment"] = (a * b).sum() / (a.norm() * b.norm()).clamp(min=1e-12)
    return out
