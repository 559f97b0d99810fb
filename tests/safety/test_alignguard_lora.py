"""AlignGuard-LoRA (arXiv:2508.02079) on a peft LoRA model: the Fisher-guided split acts on the A/B updates."""

from __future__ import annotations

import math

import torch
from peft import LoraConfig, get_peft_model

import alignkit as ak
from alignkit.engine.tiny import tiny_llama
from alignkit.safety import AlignGuardHook, fisher_diagonal
from alignkit.safety._common import trainable
from tests.claims_io import record_claims
from tests.safety._util import REFUSALS, TOK, sft_rows


def lora_model(seed: int = 0):
    torch.manual_seed(seed)
    base = tiny_llama(vocab_size=len(TOK), hidden_size=16, num_layers=1)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"], lora_dropout=0.0)
    model = get_peft_model(base, cfg)
    torch.manual_seed(seed + 1)
    with torch.no_grad():  # B = 0 at init; give B a small value so A receives Fisher mass too (mid-training)
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    return model


def alignment_fisher(model) -> dict[str, torch.Tensor]:
    def loss(pair):
        p, c = pair
        x = torch.tensor([p + c])
        labels = x.clone()
        labels[:, : len(p)] = -100
        return model(input_ids=x, labels=labels).loss

    return fisher_diagonal(model, loss, REFUSALS)


def train(model, hooks=(), steps: int = 12):
    return ak.train(
        objective="sft", model=model, tokenizer=TOK, data=sft_rows(16), batch_size=4, max_steps=steps,
        learning_rate=2e-2, progress=False, tensorboard=False, hooks=list(hooks),
    )  # fmt: skip


def test_fisher_on_peft_model_covers_exactly_the_lora_parameters():
    model = lora_model()
    fisher = alignment_fisher(model)
    names = [n for n, _ in trainable(model)]
    assert sorted(fisher) == sorted(names) and all("lora_A" in n or "lora_B" in n for n in names)
    assert all((v >= 0).all() and v.abs().sum() > 0 for v in fisher.values())
    # peft's own init (B = 0): the gradient w.r.t. A vanishes, so A's Fisher is exactly 0 and all of A's update
    # counts as "task" (s = 0) — a LoRA-specific property of computing the Fisher at the adapter's init
    torch.manual_seed(0)
    raw = get_peft_model(
        tiny_llama(vocab_size=len(TOK), hidden_size=16, num_layers=1),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0),
    )
    f0 = alignment_fisher(raw)
    assert all(float(v.abs().sum()) == 0.0 for n, v in f0.items() if "lora_A" in n)
    assert any(float(v.abs().sum()) > 0.0 for n, v in f0.items() if "lora_B" in n)


def test_alignguard_on_lora_keeps_base_frozen_and_zero_lambdas_are_plain():
    plain_model, hooked_model = lora_model(), lora_model()
    frozen = {n: p.detach().clone() for n, p in hooked_model.named_parameters() if not p.requires_grad}
    fisher = alignment_fisher(hooked_model)
    plain = train(plain_model)
    off = train(lora_model(), [AlignGuardHook(fisher, lam_a=0, lam_t=0, lam_c=0)])
    assert [h["loss"] for h in plain.history] == [h["loss"] for h in off.history]
    on = train(hooked_model, [AlignGuardHook(fisher)])
    for n, p in on.model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n  # only the adapters move
    assert all(math.isfinite(h["grad_norm"]) for h in on.history)
    assert on.history[-1]["alignguard/fisher"] > 0 and on.history[-1]["alignguard/task"] > 0


def test_fisher_guided_split_shrinks_the_alignment_critical_part_of_the_lora_update():
    """With only the Fisher regulariser on (lam_a large, lam_t = lam_c = 0), the Fisher-weighted size of the
    A/B update (sum F dW^2) shrinks against plain LoRA fine-tuning, while the low-Fisher part keeps moving."""
    fisher = alignment_fisher(lora_model())
    fmax = max(float(v.max()) for v in fisher.values())
    fisher = {n: v / fmax for n, v in fisher.items()}  # s unchanged; puts lam_a on a readable scale

    def parts(model):
        start = dict(trainable(lora_model()))
        crit = task = 0.0
        for n, p in trainable(model):
            d = (p - start[n]).detach()
            crit += float((fisher[n] * d**2).sum())
            task += float((((1 - fisher[n]) * d) ** 2).sum())
        return crit, task

    plain_c, plain_t = parts(train(lora_model()).model)
    guard_c, guard_t = parts(
        train(lora_model(), [AlignGuardHook(fisher, lam_a=100.0, lam_t=0, lam_c=0)]).model
    )
    print(
        f"Fisher-weighted update: plain {plain_c:.3g}, AlignGuard {guard_c:.3g}; task part {plain_t:.3g}, {guard_t:.3g}"
    )
    record_claims(
        "safety_alignguard_mechanism",
        {"plain_crit": plain_c, "guard_crit": guard_c, "plain_task": plain_t, "guard_task": guard_t},
        tolerance=0.02,
    )
    assert guard_c < 0.5 * plain_c
    assert guard_t > 0.5 * plain_t
