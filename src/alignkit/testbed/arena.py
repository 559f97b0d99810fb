"""``alignkit arena``: several objectives trained on the same preference data, budget and seeds, judged by the
gold reward of a testbed task.

>>> from alignkit.testbed.arena import ArenaConfig, run_arena
>>> result = run_arena(ArenaConfig(output="arena-out"))   # ~4 min cold on a 2-core CPU (the base model ships)

Phases (each timed, each with a progress bar):

1. **base model** — :func:`~alignkit.testbed.model.get_base_model` (cached under :func:`alignkit.cache.cache_root`);
2. **preference data** — K samples for each train prompt from the SFT (= base) policy, gold rewards,
   Bradley–Terry-labelled best-vs-worst pairs; the SFT policy's eval samples; held-out eval pairs; reference
   log-probs. Cached next to the base model, keyed by these settings;
3. **<objective> beta=<b> seed=<s>** — :func:`alignkit.train.train` from the base model, then
   :func:`~alignkit.eval.evaluate_policy` (gold reward, KL to the base, win rate against SFT, ranking accuracy,
   idealized ranking accuracy, likelihood displacement);
4. **report** — ``results.json``, ``report.md``, ``frontier.png`` (gold reward vs KL over the beta sweep) and
   ``training_curves.png``.

The per-objective settings (:data:`OBJECTIVE_SETTINGS`) are chosen for this scale: 32-token continuations of a
~1 M-parameter model, 100 steps of 16 pairs. The registry's defaults are the papers' settings for 7B models
(e.g. rpo's beta 0.01, simpo's beta 2.0 with gamma 1.0) and are not all sensible here.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alignkit.testbed.model import BaseModel, BaseModelConfig, get_base_model
from alignkit.testbed.preferences import build_pairs, pair_summary, read_jsonl, unpaired_view, write_jsonl
from alignkit.testbed.tasks import Prompt, Task, get_task

DEFAULT_OBJECTIVES: tuple[str, ...] = ("sft", "dpo", "ipo", "simpo", "kto", "orpo", "rpo")

#: Per-objective settings used by the arena: hyper-parameters (``beta`` is the one ``--betas`` overrides) and an
#: optional learning rate. Chosen for 32-token continuations of a ~1 M-parameter model (see docs/testbed.md).
OBJECTIVE_SETTINGS: dict[str, dict[str, Any]] = {
    # DPO at the DPO paper's beta; lr 1e-4, 100 x 16 pairs (~1.6 epochs) per the prototype.
    "dpo": {"hyper_parameters": {"beta": 0.1}},
    # IPO regresses the per-token log-ratio margin onto 1/(2 tau): tau = 0.1 asks for a 5-nat per-token margin
    # and wrecks a tiny model; tau = 1 asks for 0.5 nat/token (~16 nats per sequence).
    "ipo": {"hyper_parameters": {"beta": 1.0}},
    # SimPO: per-token-mean reward; the paper's beta 2.0 with a smaller target margin gamma.
    "simpo": {"hyper_parameters": {"beta": 2.0, "gamma": 0.5}},
    # KTO on the unpaired view (chosen -> desirable, rejected -> undesirable), DPO's beta.
    "kto": {"hyper_parameters": {"beta": 0.1}},
    # ORPO's lambda (called beta) as in the paper; it includes the SFT term on the chosen completion.
    "orpo": {"hyper_parameters": {"beta": 0.1}},
    # RPO = DPO + eta * beta * NLL(chosen); the official beta 0.01 is for 7B models, use DPO's 0.1 here.
    "rpo": {"hyper_parameters": {"beta": 0.1, "eta": 1.0}},
    # iREPO on hard labels regresses beta * h onto logit(1 - eps) = 6.9: beta 0.1 asks for a 69-nat sequence
    # margin (IPO's failure mode at tau 0.1); beta 1.0 asks for 6.9 nats, under the ~16 of the IPO setting above.
    "irepo": {"hyper_parameters": {"beta": 1.0, "eps": 1e-3}},
    # Pairwise Cringe has no beta (the arena passes beta only to objectives that take one): ParlAI's alpha 1.0,
    # margin 0; without sampled contrast tokens its contrast is the unlikelihood term.
    "pairwise_cringe": {"hyper_parameters": {"alpha": 1.0, "margin": 0.0}},
}
#: Below these counts of training / held-out pairs an arena's comparison means nothing (issue #23: a cold-cache
#: 3-digit arith arena built 7 training and 0 eval pairs and reported 0.000 for every objective as if normal).
#: 100 pairs are ~6 batches of the default 16; 20 held-out pairs give ranking accuracy a CI narrower than ±0.25.
MIN_TRAIN_PAIRS = 100
MIN_EVAL_PAIRS = 20
#: Extra betas of the sweep objective, for the gold-reward-vs-KL frontier.
DEFAULT_SWEEP_BETAS: tuple[float, ...] = (0.03, 0.5)


@dataclass
class ArenaConfig:
    """Settings of an arena run. ``betas`` maps objective -> list of betas (overrides the settings table)."""

    task: str = "sentiment"
    objectives: Sequence[str] = DEFAULT_OBJECTIVES
    betas: dict[str, list[float]] = field(default_factory=dict)
    sweep_objective: str = "dpo"
    sweep_betas: Sequence[float] = DEFAULT_SWEEP_BETAS
    seeds: Sequence[int] = (0,)
    steps: int = 100
    batch_size: int = 16
    learning_rate: float = 1e-4
    warmup_ratio: float = 0.1
    train_prompts: int = 1000
    eval_prompts: int = 300
    samples_per_prompt: int = 4
    #: samples per eval prompt (gold reward, KL, win rate; the held-out pairs are built from the SFT policy's). 2, not
    #: 4, since issue #15: evaluation was a third of each run's time, and 300 prompts x 2 samples keep DPO's gain over
    #: SFT separated (docs/testbed.md, "Measured"); the effect tests keep 4 (tests/effect.py).
    eval_samples: int = 2
    pair_strategy: str = "best_worst"
    bt_temperature: float = 0.1
    label_noise: float = 0.0
    data_seed: int = 0
    displacement_pairs: int = 256
    base: BaseModelConfig | None = None
    output: str | Path | None = "arena"
    cache_dir: str | Path | None = None
    rebuild: bool = False
    progress: bool = True
    #: keep each trained model (eval mode, frozen) in :attr:`ArenaResult.models`, for code that goes on to use the
    #: arena's policies (the effect tests, a notebook); off by default, as every run's model then stays in memory
    keep_models: bool = False

    def __post_init__(self) -> None:
        self.objectives = tuple(self.objectives)
        self.seeds = tuple(int(s) for s in self.seeds)
        self.sweep_betas = tuple(float(b) for b in self.sweep_betas)
        if not self.objectives:
            raise ValueError("ArenaConfig.objectives is empty")
        if not self.seeds:
            raise ValueError("ArenaConfig.seeds is empty")
        from alignkit.registry import Objective, get

        for name in self.objectives:
            if name != "sft" and not isinstance(get(name), Objective):
                raise ValueError(f"ArenaConfig.objectives: {name!r} is not an objective")
        for name, bs in self.betas.items():
            if name not in self.objectives:
                raise ValueError(f"ArenaConfig.betas names {name!r}, which is not among the objectives")
            for b in bs:
                if not (isinstance(b, (int, float)) and b > 0):
                    raise ValueError(f"ArenaConfig.betas[{name!r}] must hold positive numbers; got {b!r}")
        for name in (
            "steps",
            "batch_size",
            "train_prompts",
            "eval_prompts",
            "eval_samples",
            "displacement_pairs",
        ):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"ArenaConfig.{name} must be a positive integer; got {v!r}")
        if self.samples_per_prompt < 2:
            raise ValueError(
                f"ArenaConfig.samples_per_prompt must be >= 2 to form pairs; got {self.samples_per_prompt}"
            )
        if self.learning_rate <= 0:
            raise ValueError(f"ArenaConfig.learning_rate must be positive; got {self.learning_rate}")
        get_task(self.task)

    def runs(self) -> list[tuple[str, float | None, int, bool]]:
        """(objective, beta, seed, is_sweep) for every run, in order; the SFT baseline has beta None."""
        out: list[tuple[str, float | None, int, bool]] = []
        for seed in self.seeds:
            for name in self.objectives:
                if name == "sft":
                    if seed == self.seeds[0]:
                        out.append(("sft", None, seed, False))
                    continue
                betas = self.betas.get(name) or [self.settings(name)["hyper_parameters"].get("beta", 0.1)]
                for b in betas:
                    out.append((name, float(b), seed, False))
                if name == self.sweep_objective and name not in self.betas:
                    for b in self.sweep_betas:
                        if b not in betas:
                            out.append((name, float(b), seed, True))
        return out

    @staticmethod
    def settings(name: str) -> dict[str, Any]:
        s = OBJECTIVE_SETTINGS.get(name, {})
        return {
            "hyper_parameters": dict(s.get("hyper_parameters", {})),
            **{k: v for k, v in s.items() if k != "hyper_parameters"},
        }


@dataclass
class ArenaData:
    """The shared data of an arena run (cached): prompts, pairs, the SFT policy's eval samples, reference log-probs."""

    train_prompts: list[Prompt]
    eval_prompts: list[Prompt]
    pairs: list[dict[str, Any]]
    eval_pairs: list[dict[str, Any]]
    sft_samples: Any  # alignkit.eval.Samples
    ref_eval_pair_logps: tuple[np.ndarray, np.ndarray]
    displacement_pairs: list[dict[str, Any]]
    ref_displacement_logps: tuple[np.ndarray, np.ndarray]
    path: Path
    from_cache: bool = False


@dataclass
class ArenaResult:
    task: str
    results: list[dict[str, Any]]
    details: list[dict[str, Any]]
    phases: list[dict[str, Any]]
    histories: dict[str, list[dict[str, Any]]]
    output: Path | None
    files: list[Path]
    #: why the comparison is degenerate (:func:`degeneracy`); empty when it is not
    warnings: list[str] = field(default_factory=list)
    #: with ``ArenaConfig.keep_models``: each trained model by ``(objective, beta, seed)`` (SFT is the base model)
    models: dict[tuple[str, float | None, int], Any] = field(default_factory=dict)

    @property
    def degenerate(self) -> bool:
        return bool(self.warnings)

    def to_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "degenerate": self.degenerate,
            "warnings": self.warnings,
            "results": self.results,
            "details": self.details,
            "phases": self.phases,
        }


# --- phases ---------------------------------------------------------------------------------------------------


class _Phases:
    def __init__(self, console: Any) -> None:
        self.console = console
        self.records: list[dict[str, Any]] = []

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self.console is not None:
            self.console.rule(f"[bold]{name}")
        t0 = time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        self.records.append({"phase": name, "seconds": round(dt, 2)})
        if self.console is not None:
            self.console.print(f"[green]✓[/green] {name}: [bold]{dt:.1f} s[/bold]")


def _data_key(cfg: ArenaConfig, base: BaseModel, task: Task) -> str:
    payload = {
        "v": 1,
        "base": base.config.key(),
        "task": task.name,
        "max_new_tokens": task.max_new_tokens,
        **{
            k: getattr(cfg, k)
            for k in (
                "train_prompts",
                "eval_prompts",
                "samples_per_prompt",
                "eval_samples",
                "pair_strategy",
                "bt_temperature",
                "label_noise",
                "data_seed",
                "displacement_pairs",
            )
        },
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare_data(cfg: ArenaConfig, base: BaseModel, task: Task) -> ArenaData:
    """Phase 2: sample, score and pair (or load the cached result of the same settings)."""
    from alignkit.eval.evaluate import Samples, pair_logps, sample_and_score

    path = base.path / f"data-{_data_key(cfg, base, task)}"
    tok = base.tokenizer
    train_prompts = task.prompts(tok, "train", cfg.train_prompts, seed=cfg.data_seed)
    eval_prompts = task.prompts(tok, "eval", cfg.eval_prompts, seed=cfg.data_seed)
    meta_file = path / "meta.json"
    if meta_file.is_file():
        try:
            meta = json.loads(meta_file.read_text())
            if all(_sha(path / n) == d for n, d in meta["files"].items()):
                pairs = read_jsonl(path / "pairs.jsonl")
                eval_pairs = read_jsonl(path / "eval_pairs.jsonl")
                extra = json.loads((path / "eval.json").read_text())
                disp = pairs[: cfg.displacement_pairs]
                return ArenaData(
                    train_prompts,
                    eval_prompts,
                    pairs,
                    eval_pairs,
                    Samples.from_dict(extra["sft_samples"]),
                    (np.array(extra["ref_eval_pair_logps"][0]), np.array(extra["ref_eval_pair_logps"][1])),
                    disp,
                    (np.array(extra["ref_disp_logps"][0]), np.array(extra["ref_disp_logps"][1])),
                    path,
                    from_cache=True,
                )
        except (OSError, KeyError, ValueError, TypeError):
            pass  # corrupt: rebuild below
    model = base.model
    train_samples = sample_and_score(
        model,
        tok,
        task,
        train_prompts,
        num_samples=cfg.samples_per_prompt,
        seed=cfg.data_seed,
        progress=cfg.progress,
        description="sampling preference data",
    )
    pairs = build_pairs(
        train_prompts,
        train_samples.ids,
        train_samples.rewards,
        tok,
        strategy=cfg.pair_strategy,  # type: ignore[arg-type]
        temperature=cfg.bt_temperature,
        label_noise=cfg.label_noise,
        seed=cfg.data_seed,
    )
    if not pairs:
        raise ValueError(
            "no preference pairs: every prompt's samples tied on the gold reward; raise train_prompts or "
            "samples_per_prompt"
        )
    sft_samples = sample_and_score(
        model,
        tok,
        task,
        eval_prompts,
        num_samples=cfg.eval_samples,
        seed=cfg.data_seed + 1,
        progress=cfg.progress,
        description="sampling SFT eval",
    )
    eval_pairs = build_pairs(
        eval_prompts,
        sft_samples.ids,
        sft_samples.rewards,
        tok,
        strategy=cfg.pair_strategy,  # type: ignore[arg-type]
        temperature=cfg.bt_temperature,
        label_noise=cfg.label_noise,
        seed=cfg.data_seed + 2,
    )
    disp = pairs[: cfg.displacement_pairs]
    ref_eval = pair_logps(model, eval_pairs, tok.eos_token_id) if eval_pairs else (np.zeros(0), np.zeros(0))
    ref_disp = pair_logps(model, disp, tok.eos_token_id)
    path.mkdir(parents=True, exist_ok=True)
    write_jsonl(pairs, path / "pairs.jsonl")
    write_jsonl(unpaired_view(pairs), path / "unpaired.jsonl")
    write_jsonl(eval_pairs, path / "eval_pairs.jsonl")
    (path / "eval.json").write_text(
        json.dumps(
            {
                "sft_samples": sft_samples.to_dict(),
                "ref_eval_pair_logps": [ref_eval[0].tolist(), ref_eval[1].tolist()],
                "ref_disp_logps": [ref_disp[0].tolist(), ref_disp[1].tolist()],
            }
        )
    )
    files = {n: _sha(path / n) for n in ("pairs.jsonl", "unpaired.jsonl", "eval_pairs.jsonl", "eval.json")}
    meta_file.write_text(
        json.dumps({"settings": dataclasses.asdict(cfg) | {"base": None}, "files": files}, default=str)
    )
    return ArenaData(
        train_prompts, eval_prompts, pairs, eval_pairs, sft_samples, ref_eval, disp, ref_disp, path
    )


def degeneracy(data: ArenaData, results: Sequence[dict[str, Any]] = ()) -> list[str]:
    """Why the arena's comparison is degenerate (empty: it is not): too few training or held-out pairs
    (:data:`MIN_TRAIN_PAIRS`, :data:`MIN_EVAL_PAIRS`), an SFT policy whose eval samples all get the same gold reward
    (the base model never, or always, solves the task: nothing to improve or to learn from), or every finished run
    with the same mean gold reward."""
    out = []
    if len(data.pairs) < MIN_TRAIN_PAIRS:
        out.append(
            f"only {len(data.pairs)} training pairs (fewer than {MIN_TRAIN_PAIRS}): most prompts' samples tie on the "
            "gold reward, so the objectives train on (almost) nothing"
        )
    if len(data.eval_pairs) < MIN_EVAL_PAIRS:
        out.append(
            f"only {len(data.eval_pairs)} held-out pairs (fewer than {MIN_EVAL_PAIRS}): ranking accuracy and "
            "displacement are not measured"
        )
    flat = [float(x) for r in data.sft_samples.rewards for x in r]
    if flat and max(flat) - min(flat) < 1e-12:
        out.append(
            f"every SFT eval sample has gold reward {flat[0]:.3f}: the base model "
            f"{'never' if flat[0] <= 0 else 'always'} solves the task, so there is nothing to compare"
        )
    means = [r["gold_reward_mean"] for r in results if r.get("gold_reward_mean") is not None]
    if len(means) > 1 and max(means) - min(means) < 1e-12:
        out.append(
            f"all {len(means)} runs have the same mean gold reward ({means[0]:.3f}): the objectives tie"
        )
    return out


def _warn(console: Any, reasons: Sequence[str]) -> None:
    import warnings

    msg = "degenerate arena — " + "; ".join(reasons)
    warnings.warn(msg, stacklevel=3)
    if console is not None:
        console.print(f"[bold red]WARNING: {msg}. Its figures do not compare the objectives.[/bold red]")


def _train_rows(name: str, pairs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    from alignkit.registry import get
    from alignkit.types import UnpairedBatch

    obj = get(name)
    if getattr(obj, "batch_type", None) is UnpairedBatch:
        rows = [
            {"prompt_ids": r["prompt_ids"], "completion_ids": r["completion_ids"], "label": r["label"]}
            for r in unpaired_view(pairs)
        ]
        return rows, "unpaired"
    rows = [
        {"prompt_ids": p["prompt_ids"], "chosen_ids": p["chosen_ids"], "rejected_ids": p["rejected_ids"]}
        for p in pairs
    ]
    return rows, "paired"


def _row(objective: str, beta: float | None, seed: int, ev: Any, seconds: float) -> dict[str, Any]:
    def m(x: dict[str, Any] | None) -> float | None:
        return None if x is None else _finite(x["mean"])

    return {
        "objective": objective,
        "beta": beta,
        "seed": seed,
        "gold_reward_mean": m(ev.gold_reward),
        "gold_reward_ci95": [_finite(v) for v in ev.gold_reward["ci95"]],
        "kl_mean": m(ev.kl),
        "win_rate": m(ev.win_rate),
        "ranking_accuracy": m(ev.ranking_accuracy),
        "seconds": round(seconds, 2),
    }


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _detail(ev: Any, extra: dict[str, Any]) -> dict[str, Any]:
    d = ev.to_dict()
    out: dict[str, Any] = {
        "kl_ci95": d["kl"]["ci95"] if d["kl"] else None,
        "win_rate_ci95": d["win_rate"]["ci95"] if d["win_rate"] else None,
        "ranking_accuracy_ci95": d["ranking_accuracy"]["ci95"] if d["ranking_accuracy"] else None,
        "idealized_ranking_accuracy": d["idealized_ranking_accuracy"],
        "displacement": d["displacement"],
        "task_metrics": d["task_metrics"],
        "eval_seconds": d["seconds"],
    }
    if ev.samples is not None:
        out["examples"] = [[t for t in per[:1]] for per in ev.samples.texts[:3]]
    out.update(extra)
    return out


def run_arena(cfg: ArenaConfig | None = None, *, console: Any = None, **overrides: Any) -> ArenaResult:
    """Run the arena (see the module docstring) and write its report to ``cfg.output`` (if not None)."""
    import torch

    from alignkit.eval.evaluate import evaluate_policy

    cfg = dataclasses.replace(cfg, **overrides) if cfg is not None else ArenaConfig(**overrides)
    if console is None and cfg.progress:
        from rich.console import Console

        console = Console()
    _quiet_transformers()
    task = get_task(cfg.task)
    phases = _Phases(console)
    results: list[dict[str, Any]] = []
    details: list[dict[str, Any]] = []
    histories: dict[str, list[dict[str, Any]]] = {}
    models: dict[tuple[str, float | None, int], Any] = {}

    with phases.phase("base model"):
        base = get_base_model(
            task, cfg.base, cache_dir=cfg.cache_dir, rebuild=cfg.rebuild, progress=cfg.progress
        )
        if console is not None:
            s = base.stats
            how = (
                "shipped with alignkit, copied to the cache"
                if base.from_shipped
                else ("loaded from cache" if base.loaded_from_cache else "built")
            )
            console.print(
                f"{how}: {base.path}  ({s.get('parameters', 0) / 1e6:.2f} M params, "
                f"held-out loss {s.get('heldout_loss') or float('nan'):.2f} nats/token)"
            )
    with phases.phase("preference data"):
        data = prepare_data(cfg, base, task)
        if console is not None:
            summ = pair_summary(data.pairs)
            console.print(
                f"{'loaded from cache' if data.from_cache else 'built'}: {summ['pairs']} pairs "
                f"(mean gold margin {summ['mean_margin']:.3f}, {summ['agree_with_gold']:.0%} agree with gold), "
                f"{len(data.eval_pairs)} eval pairs -> {data.path}"
            )
        early = degeneracy(data)
        if early:
            _warn(console, early)
    sft_rewards = data.sft_samples.rewards
    out_dir = Path(cfg.output) if cfg.output is not None else None
    runs = list(cfg.runs())
    for objective, beta, seed, is_sweep in runs:
        label = "sft" if objective == "sft" else f"{objective} beta={beta:g} seed={seed}"
        with phases.phase(label):
            t0 = time.perf_counter()
            extra: dict[str, Any] = {"sweep": is_sweep}
            if objective == "sft":
                ev = evaluate_policy(
                    base.model,
                    base.tokenizer,
                    task,
                    data.eval_prompts,
                    ref_model=base.model,
                    samples=data.sft_samples,
                    baseline_rewards=sft_rewards,
                    pairs=data.eval_pairs,
                    ref_pair_logps=data.ref_eval_pair_logps,  # the SFT policy is the reference
                    progress=cfg.progress,
                )
                extra.update(hyper_parameters={}, learning_rate=None, train_seconds=0.0)
            else:
                from alignkit.registry import get
                from alignkit.train import train

                settings = cfg.settings(objective)
                hp = dict(settings["hyper_parameters"])
                if "beta" in get(objective).defaults:
                    hp["beta"] = beta
                lr = settings.get("learning_rate", cfg.learning_rate)
                rows, mode = _train_rows(objective, data.pairs)
                policy = copy.deepcopy(base.model)
                policy.requires_grad_(True)
                policy.train()
                t_train = time.perf_counter()
                tr = train(
                    objective=objective,
                    model=policy,
                    tokenizer=base.tokenizer,
                    # The reference is the base model, which every run starts from: its log-probs of the training
                    # pairs are computed by the first run and read back from the arena's data folder by the others
                    # (alignkit.train's on-disk reference cache, keyed by the weights and the tokenised pairs).
                    reference="auto",
                    cache_dir=data.path,
                    data=rows,
                    mode=mode,
                    hyper_parameters=hp,
                    max_steps=cfg.steps,
                    batch_size=cfg.batch_size * (2 if mode == "unpaired" else 1),
                    learning_rate=lr,
                    lr_scheduler="linear",
                    warmup_ratio=cfg.warmup_ratio,
                    seed=seed,
                    progress=cfg.progress,
                    output_dir=None,
                    tensorboard=False,
                    # Padding-free packing loops over segments: for 16 short pairs it is ~10x slower on CPU than
                    # plain padded batches (measured: 2.7 vs 0.27 s/step), so the arena turns it off.
                    packing=False,
                )
                train_seconds = time.perf_counter() - t_train
                base.model.requires_grad_(False)
                model = tr.model
                model.eval()
                histories[label] = [
                    {k: v for k, v in h.items() if isinstance(v, (int, float))} for h in tr.history
                ]
                ev = evaluate_policy(
                    model,
                    base.tokenizer,
                    task,
                    data.eval_prompts,
                    ref_model=base.model,
                    num_samples=cfg.eval_samples,
                    seed=cfg.data_seed + 1 + 100 * seed,
                    baseline_rewards=sft_rewards,
                    pairs=data.eval_pairs,
                    ref_pair_logps=data.ref_eval_pair_logps,
                    beta=beta,
                    train_pairs=data.displacement_pairs,
                    ref_train_pair_logps=data.ref_displacement_logps,
                    progress=cfg.progress,
                    description=f"eval {objective}",
                )
                extra.update(
                    hyper_parameters=hp,
                    learning_rate=lr,
                    train_seconds=round(train_seconds, 2),
                    final_loss=_finite(tr.history[-1].get("loss")) if tr.history else None,
                )
                if cfg.keep_models:
                    model.requires_grad_(False)
                    models[(objective, beta, seed)] = model
                del model, policy, tr
                torch.set_grad_enabled(True)
            seconds = time.perf_counter() - t0
            results.append(_row(objective, beta, seed, ev, seconds))
            details.append({"objective": objective, "beta": beta, "seed": seed, **_detail(ev, extra)})
        if out_dir is not None:  # a stopped arena still leaves every finished run in results.json
            partial = ArenaResult(task.name, results, details, phases.records, histories, out_dir, [])
            _write_json(
                out_dir / "results.json", _results_json(partial, cfg, base, data, runs_planned=len(runs))
            )
    result = ArenaResult(task.name, results, details, phases.records, histories, out_dir, [], models=models)
    result.warnings = degeneracy(data, results)
    if result.warnings and result.warnings != early:
        _warn(console, result.warnings)
    if out_dir is not None:
        from alignkit.testbed.report import write_report

        with phases.phase("report"):
            result.files = write_report(result, cfg, base, data)
        # rewrite results.json so that it includes the report phase's seconds
        _write_json(out_dir / "results.json", _results_json(result, cfg, base, data))
    if console is not None:
        from alignkit.testbed.report import print_summary

        print_summary(result, console)
    return result


def _write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (a reader, or a kill mid-write, never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def _results_json(
    result: ArenaResult, cfg: ArenaConfig, base: BaseModel, data: ArenaData, runs_planned: int | None = None
) -> dict[str, Any]:
    """``results.json``; ``complete`` is False (with ``runs_planned``) while runs are still to come."""
    settings = dataclasses.asdict(cfg)
    settings["base"] = dataclasses.asdict(base.config)
    settings["output"] = str(cfg.output) if cfg.output is not None else None
    settings["cache_dir"] = str(cfg.cache_dir) if cfg.cache_dir is not None else None
    settings["objective_settings"] = {n: cfg.settings(n) for n in cfg.objectives if n != "sft"}
    warnings = result.warnings or degeneracy(data, result.results)
    return {
        "task": result.task,
        "degenerate": bool(warnings),
        "warnings": warnings,
        "complete": runs_planned is None,
        **({"runs_planned": runs_planned} if runs_planned is not None else {}),
        "results": result.results,
        "details": result.details,
        "phases": result.phases,
        "settings": settings,
        "base_model": {"path": str(base.path), "stats": base.stats},
        "data": {"path": str(data.path), **pair_summary(data.pairs), "eval_pairs": len(data.eval_pairs)},
    }


def _quiet_transformers() -> None:
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except Exception:  # pragma: no cover - cosmetic only
        pass


def overlap(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether two intervals ``[lo, hi]`` overlap."""
    return not (a[1] < b[0] or b[1] < a[0])
