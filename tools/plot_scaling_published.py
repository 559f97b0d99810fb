"""Regenerate docs/img/loss_to_loss.png (docs/scaling.md): the loss-to-loss laws fitted on the authors' runs, with
the held-out 3.3B models (a few seconds):

PYTHONPATH=src python tools/plot_scaling_published.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from alignkit.scaling import fit, read_runs, select  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "img"
DATA = Path(__file__).resolve().parents[1] / "shared" / "scaling"


def loss_to_loss_figure() -> None:
    runs = read_runs(DATA / "loss_to_loss.csv")
    pub = read_runs(DATA / "loss_to_loss_published.csv")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, kind in zip(axes, ("train-to-train", "train-to-test"), strict=True):
        for j, pair in enumerate(p for p, k in zip(pub["pair"], pub["kind"], strict=True) if k == kind):
            i = list(pub["pair"]).index(pair)
            sweep = select(runs, {"pair": pair, "split": "sweep"})
            held = select(runs, {"pair": pair, "split": "extrapolation"})
            r = fit("loss_to_loss", sweep, fix={"E0": pub["E0"][i], "E1": pub["E1"][i]}, n_boot=0)
            c = f"C{j}"
            label = f"{pair.split('->')[1]}: K {r.params['K']:.2f} ({pub['K'][i]:.2f}), "
            label += f"κ {r.params['kappa']:.2f} ({pub['kappa'][i]:.2f})"
            ax.scatter(sweep["loss_x"], sweep["loss_y"], s=6, color=c, alpha=0.5)
            xs = np.linspace(held["loss_x"][0], sweep["loss_x"].max(), 100)
            ax.plot(xs, r.predict({"loss_x": xs}), color=c, lw=1.2, label=label)
            ax.scatter(held["loss_x"], held["loss_y"], marker="*", s=90, color=c, edgecolor="black", lw=0.5)
        ax.set_xlabel("FineWeb-Edu validation loss (FineWeb-Edu model)")
        ax.set_ylabel("loss on data 1 (model trained on data 1)" if kind == "train-to-train" else "test loss")
        ax.set_title(f"{kind}: ours (paper); ★ = 3.3B model at 1e21 FLOPs, held out", fontsize=8)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(OUT / "loss_to_loss.png", dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    loss_to_loss_figure()
