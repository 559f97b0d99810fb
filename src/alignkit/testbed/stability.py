"""Training-stability tools for the testbed's language model: the output-logit z-loss, QK-norm (a
:class:`~alignkit.testbed.model.BaseModelConfig` option), the learning-rate-sensitivity measure, and Spike No More's
embedding scaling and small initialisation.

>>> from alignkit.testbed.model import BaseModelConfig
>>> cfg = BaseModelConfig(qk_layernorm=True, z_loss=1e-4)            # Wortsman et al. 2023
>>> cfg = BaseModelConfig(embed_scale=True, small_init=True)         # Takase et al. 2023
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from alignkit.registry import register

SMALL_PROXIES = "Small-scale proxies for large-scale Transformer training instabilities"
SPIKE_NO_MORE = "Spike No More: Stabilizing the Pre-training of Large Language Models"


def z_loss_fn(logits: Tensor, mask: Tensor | None = None, *, coef: float = 1e-4) -> Tensor:
    """The output-logit z-loss of Small-scale proxies for large-scale Transformer training instabilities
    (Wortsman et al., arXiv:2309.14322; from PaLM), averaged over the (masked) positions.

    Formula:
        Z = sum_v exp(h_v),   L_z = coef * mean_positions (log Z)^2
        d L_z / d h = 2 coef log Z * softmax(h) / #positions

    Hyper-parameters:
        coef: 1e-4 — the paper's §3.1.2 (and PaLM's) coefficient.
    """
    lse = torch.logsumexp(
        logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, dim=-1
    )
    sq = lse.pow(2)
    if mask is None:
        return coef * sq.mean()
    m = mask.to(sq.dtype)
    if m.shape != sq.shape:
        raise ValueError(
            f"mask must have shape {tuple(sq.shape)} (logits without the vocabulary dim); got {tuple(m.shape)}"
        )
    return coef * (sq * m).sum() / m.sum().clamp_min(1.0)


z_loss = register(
    name="z_loss",
    kind="procedure",
    paper=SMALL_PROXIES,
    arxiv="2309.14322",
    family="stability",
    tags=("modality:text", "stability", "auxiliary-loss"),
    verification="paper-formula",
)(z_loss_fn)


def lm_loss_with_z_loss(model: Any, input_ids: Tensor, coef: float) -> Tensor:
    """Next-token cross-entropy of ``model`` on ``input_ids`` plus ``coef`` times the z-loss at the same positions."""
    logits = model(input_ids=input_ids).logits[:, :-1].float()
    targets = input_ids[:, 1:]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    return ce + z_loss_fn(logits, coef=coef)


def lr_sensitivity_fn(final_losses: Mapping[float, float], init_loss: float) -> float:
    """Learning-rate sensitivity of Small-scale proxies for large-scale Transformer training instabilities
    (Wortsman et al., arXiv:2309.14322, §2.2): how much worse than the best learning rate a sweep does, on average,
    with diverged runs counted at the loss at initialisation.

    Formula:
        S = mean_{eta in sweep} [ min(l(eta), l_0) - l* ],   l* = min_eta l(eta),  l_0 = loss at initialisation
        (a non-finite l(eta) counts as l_0)

    Hyper-parameters:
        none; the sweep (the paper: 3e-4 to 3e-1, factors of ~3) is the caller's.
    """
    if not final_losses:
        raise ValueError("final_losses is empty: give the final loss of each learning rate in the sweep")
    vals = [min(v, init_loss) if math.isfinite(v) else init_loss for v in final_losses.values()]
    best = min(vals)
    return float(sum(v - best for v in vals) / len(vals))


lr_sensitivity = register(
    name="lr_sensitivity",
    kind="diagnostic",
    paper=SMALL_PROXIES,
    arxiv="2309.14322",
    family="stability",
    tags=("modality:text", "stability", "lr-sweep"),
    verification="paper-formula",
)(lr_sensitivity_fn)


def spike_no_more_init_fn(model: Any, *, d_model: int, num_layers: int) -> None:
    """Spike No More's small initialisation (Takase, Kiyono, Kobayashi, Suzuki; arXiv:2312.16903): every linear
    and embedding weight N(0, sigma^2), the residual-branch output projections (attention o_proj, MLP down_proj)
    scaled by 1/sqrt(2N); norms stay 1, biases 0.

    Formula:
        sigma = sqrt(2 / (5 d));   W_out ~ N(0, (sigma / sqrt(2 N))^2)

    Hyper-parameters:
        d_model, num_layers: the model's d and N (the paper's §4 setting, following Nguyen & Salazar 2019 and
            Megatron-LM's output-layer scaling).
    """
    sigma = math.sqrt(2.0 / (5.0 * d_model))
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
                std = sigma / math.sqrt(2.0 * num_layers) if name.endswith(("o_proj", "down_proj")) else sigma
                module.weight.normal_(0.0, std)
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()


spike_no_more_init = register(
    name="spike_no_more_init",
    kind="procedure",
    paper=SPIKE_NO_MORE,
    arxiv="2312.16903",
    family="stability",
    tags=("modality:text", "stability", "initialisation"),
    verification="paper-formula",
)(spike_no_more_init_fn)


def _scale_hook(scale: float) -> Any:
    def hook(_module: Any, _inputs: Any, output: Tensor) -> Tensor:
        return output * scale

    return hook


def scale_embeddings_fn(model: Any, *, scale: float | None = None) -> None:
    """Spike No More's "Scaled Embed" (arXiv:2312.16903): the input embeddings are multiplied by sqrt(d) (a forward
    hook on the embedding; a tied LM head is unaffected). Idempotent.

    Formula:
        e(x) = sqrt(d) * E[x]          (keeps the embeddings' std near 1 so the residual stream is not tiny)

    Hyper-parameters:
        scale: None — sqrt(d_model) (the paper's); a number overrides it.
    """
    emb = model.get_input_embeddings()
    if getattr(emb, "_alignkit_embed_scale", None) is not None:
        return
    s = math.sqrt(emb.embedding_dim) if scale is None else float(scale)
    emb.register_forward_hook(_scale_hook(s))
    emb._alignkit_embed_scale = s


scale_embeddings = register(
    name="scaled_embed",
    kind="procedure",
    paper=SPIKE_NO_MORE,
    arxiv="2312.16903",
    family="stability",
    tags=("modality:text", "stability", "embedding"),
    verification="paper-formula",
)(scale_embeddings_fn)


def apply_stability_options(model: Any, config: Any, *, initialise: bool) -> None:
    """Apply a :class:`BaseModelConfig`'s stability options to a built (``initialise=True``) or loaded model.

    ``qk_layernorm`` is an architecture choice made in ``build_model``; ``z_loss`` acts in pretraining."""
    if initialise and config.small_init:
        spike_no_more_init_fn(model, d_model=config.hidden_size, num_layers=config.num_layers)
    if config.embed_scale:
        scale_embeddings_fn(model)


# --- small sweeps on the testbed's language model (the effect tests and docs/stability plots use these) ---------------


def train_lm(
    config: Any,
    stream: Tensor,
    heldout: Tensor,
    *,
    schedule: str = "cosine",
    warmup: int = 0,
    decay_ratio: float = 0.2,
    cooldown: str = "linear",
    clip: float | None = 1.0,
) -> dict[str, Any]:
    """Pretrain a fresh testbed model (``build_model(config)``) on ``stream`` for ``config.pretrain_steps`` steps at
    ``config.learning_rate`` with AdamW (0.9, 0.95) and an :func:`alignkit.train.schedules.lr_lambda` schedule;
    return the held-out loss at init and at the end (``nan`` if training diverged), the per-step training losses
    and the pre-clipping gradient norms."""
    from alignkit.testbed.model import _windows, build_model, heldout_loss
    from alignkit.train.schedules import lr_lambda

    model = build_model(config, config.vocab_size)
    init = heldout_loss(model, heldout, config.context, batches=2, batch_size=16)
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=config.learning_rate,
        betas=(0.9, 0.95),
    )
    lam = lr_lambda(schedule, config.pretrain_steps, warmup, decay_ratio, cooldown=cooldown)
    losses: list[float] = []
    grad_norms: list[float] = []
    model.train()
    for step in range(config.pretrain_steps):
        for g in opt.param_groups:
            g["lr"] = config.learning_rate * lam(step)
        x = _windows(stream, config.batch_size, config.context, gen)
        loss = (
            lm_loss_with_z_loss(model, x, config.z_loss)
            if config.z_loss
            else model(input_ids=x, labels=x).loss
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip else float("inf"))
        losses.append(float(loss.detach()))
        grad_norms.append(float(norm))
        if not math.isfinite(losses[-1]):
            return {"init": init, "final": float("nan"), "losses": losses, "grad_norms": grad_norms}
        opt.step()
    final = heldout_loss(model, heldout, config.context, batches=2, batch_size=16)
    return {"init": init, "final": final, "losses": losses, "grad_norms": grad_norms}


def plot_lr_sweep(
    results: Mapping[str, Mapping[float, list[float]]], init_loss: float, path: Any, title: str
) -> None:
    """Final held-out loss against learning rate, one line per variant (mean over seeds, min-max band;
    diverged runs drawn at the loss at initialisation), with each variant's LR sensitivity in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, by_lr in results.items():
        lrs = sorted(by_lr)
        vals = [[min(v, init_loss) if math.isfinite(v) else init_loss for v in by_lr[lr]] for lr in lrs]
        mean = [sum(v) / len(v) for v in vals]
        sens = [
            lr_sensitivity_fn({lr: v[i] for lr, v in zip(lrs, vals, strict=True)}, init_loss)
            for i in range(len(vals[0]))
        ]
        ax.plot(lrs, mean, marker="o", label=f"{name} (S = {sum(sens) / len(sens):.3f})")
        ax.fill_between(lrs, [min(v) for v in vals], [max(v) for v in vals], alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("final held-out loss (nats/token)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
