"""``alignkit train``: train a causal LM with a registered objective (flags, a YAML config, or both).

Objective hyper-parameters are flags too (``--beta 0.1``, ``--label-smoothing 0.1``), checked against the chosen
objective's defaults. A YAML ``--config`` holds ``TrainConfig`` fields (``hyper_parameters:`` a mapping); flags
given on the command line override it. The resolved config is written to ``<output>/config.yaml``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from alignkit.cli import import_callable

_HP_PREFIX = "hp__"

# flag -> (TrainConfig field, type, help)
_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--objective", "objective", str, "registered objective name (see `alignkit list`)"),
    ("--model", "model", str, "model folder (any AutoModelForCausalLM) or hub id"),
    ("--tokenizer", "tokenizer", str, "tokenizer folder (default: the model's)"),
    ("--data", "data", str, "JSONL / JSON / Parquet / CSV file or a save_to_disk folder"),
    ("--output", "output_dir", str, "output folder (checkpoints, logs, final model)"),
    ("--ref-model", "ref_model", str, "reference model folder (default: the initial policy)"),
    ("--reference", "reference", str, "auto | model | lora | cache | none"),
    ("--mode", "mode", str, "auto | sft | paired | unpaired | online"),
    ("--reward-fn", "reward_fn", str, "online mode: 'module:function' taking (prompt_ids, completion_ids)"),
    ("--max-steps", "max_steps", int, "optimizer steps (overrides --epochs)"),
    ("--epochs", "epochs", float, "passes over the data"),
    ("--batch-size", "batch_size", int, "examples per micro-batch and process"),
    ("--grad-accum", "grad_accum", int, "micro-batches per optimizer step"),
    ("--learning-rate", "learning_rate", float, "peak AdamW learning rate"),
    ("--lr-scheduler", "lr_scheduler", str, "linear | cosine | wsd | constant"),
    ("--warmup-ratio", "warmup_ratio", float, "fraction of steps of linear warmup"),
    ("--weight-decay", "weight_decay", float, "AdamW weight decay (matrices only)"),
    ("--max-grad-norm", "max_grad_norm", float, "gradient clipping norm (0: none)"),
    ("--max-length", "max_length", int, "max prompt+completion tokens"),
    ("--max-prompt-length", "max_prompt_length", int, "max prompt tokens (longer prompts are errors)"),
    ("--truncation-mode", "truncation_mode", str, "keep_start | keep_end"),
    ("--lora-r", "lora_r", int, "LoRA rank"),
    ("--lora-alpha", "lora_alpha", int, "LoRA alpha"),
    ("--seed", "seed", int, "random seed"),
    ("--save-steps", "save_steps", int, "checkpoint every N steps"),
    ("--save-total-limit", "save_total_limit", int, "keep only the newest N checkpoints"),
    ("--logging-steps", "logging_steps", int, "write logs every N steps"),
    ("--cache-dir", "cache_dir", str, "reference log-prob cache folder"),
    ("--online-max-new-tokens", "online_max_new_tokens", int, "online mode: tokens sampled per completion"),
    ("--online-temperature", "online_temperature", float, "online mode: sampling temperature"),
]
_SWITCHES: list[tuple[str, str, str]] = [
    ("--lora", "lora", "train LoRA adapters (peft) instead of all weights"),
    ("--resume", "resume", "continue from the newest checkpoint in --output"),
    ("--gradient-checkpointing", "gradient_checkpointing", "recompute activations in backward"),
    ("--skip-bad-rows", "skip_bad_rows", "skip bad rows with a counted warning instead of failing"),
    ("--trust-remote-code", "trust_remote_code", "allow model code from the model folder / hub"),
    ("--ptst", "ptst", "PTST: SFT rows through the chat template without a safety system prompt"),
]


def _hp_names() -> dict[str, Any]:
    from alignkit.registry import list_objectives

    names: dict[str, Any] = {}
    for obj in list_objectives():
        for k, v in obj.defaults.items():
            names.setdefault(k, v)
    return names


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model with an objective (SFT, paired, unpaired, online)",
        description="Train any local AutoModelForCausalLM. Objective hyper-parameters are flags (--beta 0.1).",
    )
    p.add_argument("--config", help="YAML file of TrainConfig fields; flags override it")
    for flag, dest, typ, text in _FLAGS:
        p.add_argument(flag, dest=dest, type=typ, help=text, default=argparse.SUPPRESS)
    for flag, dest, text in _SWITCHES:
        p.add_argument(flag, dest=dest, action="store_true", help=text, default=argparse.SUPPRESS)
    p.add_argument("--no-progress", dest="progress", action="store_false", default=argparse.SUPPRESS)
    p.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", default=argparse.SUPPRESS)
    hp = p.add_argument_group("objective hyper-parameters (checked against the chosen objective)")
    taken = {f for f, *_ in _FLAGS} | {f for f, *_ in _SWITCHES}
    for name in sorted(_hp_names()):
        flag = "--" + name.replace("_", "-")
        if flag in taken:
            continue
        hp.add_argument(flag, dest=_HP_PREFIX + name, metavar="VALUE", default=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _convert(name: str, raw: str, default: Any) -> Any:
    value = yaml.safe_load(raw)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"--{name.replace('_', '-')} takes true/false; got {raw!r}")
    elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif isinstance(default, (int, float)) and not isinstance(value, (int, float)):
        raise ValueError(f"--{name.replace('_', '-')} takes a number; got {raw!r}")
    return value


def _reward_fn(spec: Any) -> Any:
    if not isinstance(spec, str):
        return spec
    if ":" not in spec:
        raise ValueError(f"--reward-fn must be 'module:function'; got {spec!r}")
    return import_callable(spec, "--reward-fn")


def resolve_config(args: argparse.Namespace) -> Any:
    """YAML config (if any) overlaid with the flags given on the command line."""
    from alignkit.registry import Objective, get
    from alignkit.train.config import TrainConfig

    fields: dict[str, Any] = {}
    if getattr(args, "config", None):
        path = Path(args.config)
        if not path.exists():
            raise FileNotFoundError(f"config file {path} does not exist")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a config must be a mapping of TrainConfig fields")
        unknown = sorted(set(loaded) - set(TrainConfig.field_names()))
        if unknown:
            raise ValueError(f"{path}: unknown config field(s) {', '.join(unknown)}")
        fields.update(loaded)
    given = vars(args)
    hp = dict(fields.get("hyper_parameters") or {})
    for key, value in given.items():
        if key.startswith(_HP_PREFIX):
            hp[key[len(_HP_PREFIX) :]] = value
        elif key in TrainConfig.field_names():
            fields[key] = value
    obj = get(fields.get("objective", "dpo"))
    if not isinstance(obj, Objective):
        raise ValueError(f"{obj.name!r} is a {obj.kind}, not an objective")
    unknown = sorted(set(hp) - set(obj.defaults))
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        takes = ", ".join("--" + k.replace("_", "-") for k in sorted(obj.defaults)) or "(none)"
        raise ValueError(f"objective {obj.name!r} has no hyper-parameter {flags}; it takes: {takes}")
    fields["hyper_parameters"] = {
        k: _convert(k, v, obj.defaults[k])
        if isinstance(v, str) and not isinstance(obj.defaults[k], str)
        else v
        for k, v in hp.items()
    }
    if fields.get("max_grad_norm") == 0:
        fields["max_grad_norm"] = None
    if "reward_fn" in fields:
        fields["reward_fn"] = _reward_fn(fields["reward_fn"])
    for required in ("model", "data"):
        if fields.get(required) is None:
            raise ValueError(f"--{required} is required (or set {required}: in --config)")
    return TrainConfig(**fields)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from alignkit.train import train

    cfg = resolve_config(args)
    result = train(cfg)
    console = Console(stderr=True)
    last = result.history[-1] if result.history else {}
    console.print(
        f"trained {len(result.history)} steps in {result.seconds:.1f}s; final loss {last.get('loss', float('nan')):.4f}"
        + (f"; saved to {result.output_dir}" if result.output_dir else "")
    )
    return 0
