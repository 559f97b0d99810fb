"""Shared settings of the slow effect tests (testbed runs that show an objective's effect)."""

from __future__ import annotations

from typing import Any


def effect_base_config(task: str = "sentiment") -> Any:
    """The base model of the slow effect tests (~25 s to build on 2 cores, then cached for the session): a
    ~0.3 M-parameter Llama pretrained 200 steps. Large enough that DPO's effect on ``sentiment`` is clear
    (SFT 0.081 vs DPO 0.176 gold reward, non-overlapping CIs), small enough for CI."""
    from alignkit.testbed import get_task

    settings = dict(pretrain_steps=200, hidden_size=96, num_layers=2, num_heads=2, intermediate_size=256)
    if task == "sentiment":
        settings.update(vocab_size=1024, corpus_chars=1_500_000)
    return get_task(task).base_config(**settings)


def effect_arena_config(cache_dir: Any, **overrides: Any) -> Any:
    """The arena settings of the effect tests (shared, so the sampled preference data is built once per session):
    1000 train / 300 eval prompts, 150 steps at lr 2e-4, SFT + DPO unless ``objectives`` is given."""
    from alignkit.testbed.arena import ArenaConfig

    settings: dict[str, Any] = dict(
        objectives=("sft", "dpo"),
        sweep_betas=(),
        base=effect_base_config(),
        train_prompts=1000,
        eval_prompts=300,
        steps=150,
        learning_rate=2e-4,
        output=None,
        cache_dir=cache_dir,
        progress=False,
    )
    settings.update(overrides)
    return ArenaConfig(**settings)


def train_policy(
    base: Any,
    rows: list[dict[str, Any]],
    *,
    objective: str = "dpo",
    mode: str = "paired",
    hyper_parameters: dict[str, Any] | None = None,
    steps: int = 150,
    batch_size: int = 16,
    learning_rate: float = 2e-4,
    warmup_ratio: float = 0.1,
    lr_scheduler: str = "linear",
    hooks: Any = (),
) -> Any:
    """Train a copy of ``base.model`` (the base stays the frozen reference) and return it in eval mode, frozen."""
    import copy

    import torch

    from alignkit.train import train

    policy = copy.deepcopy(base.model)
    policy.requires_grad_(True)
    policy.train()
    # reference "auto": an objective that reads a reference gets the base model's log-probs of every training row,
    # computed once before step 1 (the initial policy is a copy of the base) instead of at every step
    tr = train(
        objective=objective,
        model=policy,
        tokenizer=base.tokenizer,
        reference="auto",
        data=rows,
        mode=mode,
        hyper_parameters=hyper_parameters or {},
        max_steps=steps,
        batch_size=batch_size,
        learning_rate=learning_rate,
        lr_scheduler=lr_scheduler,
        warmup_ratio=warmup_ratio,
        seed=0,
        progress=False,
        output_dir=None,
        tensorboard=False,
        packing=False,
        hooks=hooks,
    )
    base.model.requires_grad_(False)
    torch.set_grad_enabled(True)
    model = tr.model.eval()
    model.requires_grad_(False)
    return model


def pair_rows(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Token-id rows of preference pairs, as ``alignkit.train`` reads them."""
    return [{k: p[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")} for p in pairs]
