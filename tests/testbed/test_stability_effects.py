"""Slow effect tests of the stability options on the testbed's language model: the LR sweep with and without
QK-norm + z-loss (arXiv:2309.14322), Spike No More's scaled embedding + small init (arXiv:2312.16903), and WSD
cooldown shapes (arXiv:2508.01483), and loss spikes at lr 3 without clipping. A 2-layer d=64 Llama on 120k characters of Shakespeare, 80 steps per run,
3 seeds. Plots go to $ALIGNKIT_PLOTS_DIR when set (docs/ holds the committed ones). Run with ``-s`` for numbers."""

from __future__ import annotations

import math
import os
import statistics
from pathlib import Path

import pytest

from alignkit.testbed.model import BaseModelConfig, encode_documents, train_tokenizer
from alignkit.testbed.stability import lr_sensitivity_fn, plot_lr_sweep, train_lm
from tests.claims_io import record_claims

pytestmark = pytest.mark.slow
SEEDS = (0, 1, 2)
LRS = (0.01, 0.1, 1.0)
STEPS = 80
T95 = 4.303  # two-sided 95% t quantile, 2 degrees of freedom


def fmt(xs: list[float]) -> str:
    m = statistics.fmean(xs)
    h = T95 * statistics.stdev(xs) / math.sqrt(len(xs))
    return f"{m:.3f} [{m - h:.3f}, {m + h:.3f}]"


def figures(res: dict[str, list[float]]) -> dict[str, list[float] | float]:
    """Mean over seeds and 95% t-interval of each entry (``name``, ``name_ci``), for the claims board."""
    out: dict[str, list[float] | float] = {}
    for k, xs in res.items():
        m, h = statistics.fmean(xs), T95 * statistics.stdev(xs) / math.sqrt(len(xs))
        out |= {k: m, f"{k}_ci": [m - h, m + h]}
    return out


def _plots_dir(tmp_path: Path) -> list[Path]:
    out = [tmp_path]
    if os.environ.get("ALIGNKIT_PLOTS_DIR"):
        out.append(Path(os.environ["ALIGNKIT_PLOTS_DIR"]))
    return out


@pytest.fixture(scope="module")
def corpus():
    from alignkit.testbed.corpus import pretraining_documents

    docs = pretraining_documents(120_000)
    tok = train_tokenizer(docs, 320)
    stream = encode_documents(tok, docs)
    n = int(stream.numel() * 0.9)
    return stream[:n], stream[n:], len(tok)


def _config(vocab: int, lr: float, seed: int, **options) -> BaseModelConfig:
    return BaseModelConfig(
        hidden_size=64,
        num_layers=2,
        num_heads=4,
        intermediate_size=128,
        vocab_size=vocab,
        context=32,
        batch_size=8,
        pretrain_steps=STEPS,
        learning_rate=lr,
        seed=seed,
        **options,
    )


def _sweep(corpus, **options) -> tuple[dict[float, list[float]], float]:
    train, held, vocab = corpus
    by_lr: dict[float, list[float]] = {lr: [] for lr in LRS}
    init = 0.0
    for lr in LRS:
        for seed in SEEDS:
            r = train_lm(_config(vocab, lr, seed, **options), train, held)
            by_lr[lr].append(r["final"])
            init = r["init"]
    return by_lr, init


@pytest.fixture(scope="module")
def baseline(corpus):
    return _sweep(corpus)


def _sensitivities(by_lr: dict[float, list[float]], init: float) -> list[float]:
    return [lr_sensitivity_fn({lr: by_lr[lr][i] for lr in LRS}, init) for i in range(len(SEEDS))]


def _report(tag: str, results: dict[str, dict[float, list[float]]], init: float) -> dict[str, list[float]]:
    sens = {}
    for name, by_lr in results.items():
        sens[name] = _sensitivities(by_lr, init)
        rows = "  ".join(f"lr {lr:g}: {fmt(by_lr[lr])}" for lr in LRS)
        print(f"{tag} {name}: {rows}  LR sensitivity {fmt(sens[name])}")
    return sens


def test_qk_norm_and_z_loss_lr_sensitivity(corpus, baseline, tmp_path):
    """Paper: QK-layernorm + z-loss lower LR sensitivity (a wider range of LRs trains well)."""
    base, init = baseline
    qkz, _ = _sweep(corpus, qk_layernorm=True, z_loss=1e-4)
    sens = _report("89", {"baseline": base, "qk-norm + z-loss": qkz}, init)
    diff = [a - b for a, b in zip(sens["baseline"], sens["qk-norm + z-loss"], strict=True)]
    print(f"89 sensitivity reduction (baseline - qk/z), paired by seed: {fmt(diff)}")
    record_claims(
        "stability_qk_zloss",
        figures({"sens_base": sens["baseline"], "sens_qkz": sens["qk-norm + z-loss"], "reduction": diff})
        | {"diverged": sum(not math.isfinite(v) for by in (base, qkz) for vs in by.values() for v in vs)},
        tolerance=0.01,
    )
    for d in _plots_dir(tmp_path):
        plot_lr_sweep(
            {"baseline": base, "qk-norm + z-loss": qkz},
            init,
            d / "stability_qk_zloss_lr_sweep.png",
            "2-layer d=64 Llama, 80 steps, 3 seeds: QK-norm + z-loss (arXiv:2309.14322)",
        )
    assert (tmp_path / "stability_qk_zloss_lr_sweep.png").is_file()
    assert all(
        math.isfinite(v) for by in (base, qkz) for vs in by.values() for v in vs
    )  # no run diverged here


def test_spike_no_more_lr_sensitivity(corpus, baseline, tmp_path):
    """Paper: scaled embeddings + small init keep pre-LN training stable at large learning rates."""
    base, init = baseline
    snm, _ = _sweep(corpus, small_init=True, embed_scale=True)
    sens = _report("98", {"baseline": base, "scaled embed + small init": snm}, init)
    diff = [a - b for a, b in zip(sens["baseline"], sens["scaled embed + small init"], strict=True)]
    print(f"98 sensitivity reduction (baseline - spike-no-more), paired by seed: {fmt(diff)}")
    record_claims(
        "stability_spike_no_more",
        figures(
            {"sens_base": sens["baseline"], "sens_snm": sens["scaled embed + small init"], "reduction": diff}
        )
        | {"loss_lr001_base": statistics.fmean(base[0.01]), "loss_lr001_snm": statistics.fmean(snm[0.01])},
        tolerance=0.01,
    )
    for d in _plots_dir(tmp_path):
        plot_lr_sweep(
            {"baseline": base, "scaled embed + small init": snm},
            init,
            d / "stability_spike_no_more_lr_sweep.png",
            "2-layer d=64 Llama, 80 steps, 3 seeds: Spike No More (arXiv:2312.16903)",
        )
    assert (tmp_path / "stability_spike_no_more_lr_sweep.png").is_file()
    assert all(math.isfinite(v) for vs in snm.values() for v in vs)


def test_wsd_cooldown_shapes(corpus, tmp_path):
    """Paper: the cooldown shape matters; 1-sqrt-like shapes beat linear. WSD with a 40% cooldown, lr 0.1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train, held, vocab = corpus
    shapes = ("linear", "cosine", "1-sqrt", "1-square", "mirror-cosine")
    finals: dict[str, list[float]] = {}
    for shape in shapes:
        finals[shape] = [
            train_lm(_config(vocab, 0.1, seed), train, held, schedule="wsd", decay_ratio=0.4, cooldown=shape)[
                "final"
            ]
            for seed in SEEDS
        ]
        print(f"103 {shape}: final held-out loss {fmt(finals[shape])}")
    d_sqrt = [a - b for a, b in zip(finals["linear"], finals["1-sqrt"], strict=True)]
    print(f"103 linear - 1-sqrt, paired by seed: {fmt(d_sqrt)}")
    record_claims(
        "stability_wsd_cooldown",
        figures({"linear": finals["linear"], "sqrt": finals["1-sqrt"], "linear_minus_sqrt": d_sqrt}),
        tolerance=0.01,
    )
    for d in _plots_dir(tmp_path):
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        for i, s in enumerate(shapes):
            ax.errorbar(
                [i],
                [statistics.fmean(finals[s])],
                yerr=[
                    [statistics.fmean(finals[s]) - min(finals[s])],
                    [max(finals[s]) - statistics.fmean(finals[s])],
                ],
                fmt="o",
                capsize=4,
            )
        ax.set_xticks(range(len(shapes)), shapes)
        ax.set_ylabel("final held-out loss (mean, min-max over 3 seeds)")
        ax.set_title("WSD cooldown shapes (arXiv:2508.01483), 80 steps, 40% cooldown", fontsize=9)
        fig.tight_layout()
        fig.savefig(d / "wsd_cooldown_shapes.png", dpi=120)
        plt.close(fig)
    assert (tmp_path / "wsd_cooldown_shapes.png").is_file()
    assert all(math.isfinite(v) for vs in finals.values() for v in vs)


def test_loss_spikes_at_a_high_lr_without_clipping(corpus):
    """lr 3.0, no gradient clipping, 80 steps: the regime where the loss spikes. Per run: the largest training loss
    after step 10 (spike height) and the number of steps after step 10 whose loss exceeds the loss at init."""
    train, held, vocab = corpus
    arms = {
        "baseline": {},
        "qk-norm + z-loss": {"qk_layernorm": True, "z_loss": 1e-4},
        "scaled embed + small init": {"small_init": True, "embed_scale": True},
    }
    peak: dict[str, list[float]] = {}
    above: dict[str, list[float]] = {}
    for name, options in arms.items():
        peak[name], above[name] = [], []
        for seed in SEEDS:
            r = train_lm(_config(vocab, 3.0, seed, **options), train, held, clip=None)
            late = [v if math.isfinite(v) else float("inf") for v in r["losses"][10:]]
            peak[name].append(min(max(late), 1e6))
            above[name].append(float(sum(v > r["init"] for v in late)))
        print(
            f"spikes {name}: peak loss after step 10 {fmt(peak[name])}  steps above init loss {fmt(above[name])}"
        )
    record_claims(
        "stability_spikes",
        figures({"peak_base": peak["baseline"], "peak_qkz": peak["qk-norm + z-loss"]})
        | figures({"peak_snm": peak["scaled embed + small init"]}),
        tolerance=0.02,
    )
    assert all(math.isfinite(v) for vs in peak.values() for v in vs)
