"""``alignkit train``: train a causal LM with a registered objective (flags, a YAML config, or both).

Every ``TrainConfig`` field is a flag, generated from the field's metadata (help text, default, choices); objective
hyper-parameters are flags too (``--beta 0.1``, ``--label-smoothing 0.1``), checked once against the chosen
objective's ranges. A YAML ``--config`` holds ``TrainConfig`` fields (``hyper_parameters:`` a mapping); flags given
on the command line override it. Everything is validated before a model is loaded or a file written. The resolved
config is written to ``<output>/config.yaml``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from alignkit.cli import import_callable

_HP_PREFIX = "hp__"
_ALIASES = {"output_dir": ("--output-dir",)}


def _config_flags(p: argparse.ArgumentParser) -> set[str]:
    """One flag per ``TrainConfig`` field, generated from its type and metadata (help, default, choices)."""
    import dataclasses
    import typing

    from alignkit.integrations.trl_config import flag_aliases
    from alignkit.train.config import TrainConfig, flag_of

    hints = typing.get_type_hints(TrainConfig)
    group = p.add_argument_group("training (every TrainConfig field; defaults in brackets)")
    taken: set[str] = set()
    for f in dataclasses.fields(TrainConfig):
        flag = flag_of(f)
        meta = f.metadata
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        text = meta.get("help", "")
        if meta.get("choices"):
            text += f"; one of {', '.join(map(str, meta['choices']))}"
        text = f"{text} [{default!r}]".replace("%", "%%")
        kw: dict[str, Any] = {"dest": f.name, "help": text, "default": argparse.SUPPRESS}
        hint = hints[f.name]
        if hint in (bool, bool | None):
            kw["action"] = argparse.BooleanOptionalAction
            taken.add("--no-" + flag[2:])
        elif f.name == "adam_betas":
            kw.update(nargs=2, metavar=("BETA1", "BETA2"))
        elif f.name in ("lora_target_modules", "hooks", "report_to"):
            kw.update(nargs="+", metavar="VALUE")
        else:
            kw["metavar"] = "YAML" if f.name == "hyper_parameters" else f.name.upper()
            if hint in (int, float):  # the same type as the flag of that name in every other command
                kw["type"] = hint
        aliases = [
            a for a in (*_ALIASES.get(f.name, ()), *flag_aliases(f.name)) if a != flag and a not in taken
        ]
        group.add_argument(flag, *aliases, **kw)
        taken.update((flag, *aliases))
    return taken


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
    taken = _config_flags(p)
    trl = p.add_argument_group("TRL names (a TRL DPO config runs unchanged; see docs/training.md)")
    trl.add_argument("--loss_type", "--loss-type", nargs="+", default=argparse.SUPPRESS,
                     help="TRL's loss_type: one name or several (mixed by --loss_weights); sets the objective")  # fmt: skip
    trl.add_argument("--loss_weights", "--loss-weights", nargs="+", type=float, default=argparse.SUPPRESS,
                     help="TRL's loss_weights, one per --loss_type")  # fmt: skip
    taken.update(("--loss-type", "--loss_type", "--loss-weights", "--loss_weights"))
    hp = p.add_argument_group("objective hyper-parameters (checked against the chosen objective's ranges)")
    for name in sorted(_hp_names()):
        flag = "--" + name.replace("_", "-")
        if flag in taken:
            continue
        hp.add_argument(flag, dest=_HP_PREFIX + name, metavar="VALUE", default=argparse.SUPPRESS)
    p.set_defaults(func=run)


def _load_yaml(path: Path) -> dict[str, Any]:
    from alignkit.errors import ConfigError, InputPathError
    from alignkit.train.config import TrainConfig

    if not path.is_file():
        raise InputPathError(f"config file {path} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}{at}: invalid YAML ({getattr(exc, 'problem', None) or exc})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a config must be a mapping of TrainConfig fields")
    from alignkit.integrations.trl_config import translate

    return translate(loaded, str(path), set(TrainConfig.field_names()))  # TRL's names too


def _hooks(specs: Any) -> Any:
    """``--hooks module:callable ...``: each callable, called with no arguments, makes a Hook."""
    if not isinstance(specs, list) or not all(isinstance(x, str) for x in specs):
        return specs
    from alignkit.errors import ConfigError

    hooks = []
    for spec in specs:
        if ":" not in spec or spec.startswith("<"):
            raise ConfigError(f"hooks (--hooks): each must be 'module:callable'; got {spec!r}")
        try:
            hooks.append(import_callable(spec, "--hooks")())
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return hooks


def _yaml_scalar(raw: Any) -> Any:
    """A hyper-parameter flag's text as YAML reads it (``true``, ``0.1``, ``[0.6, 1.0]``)."""
    if not isinstance(raw, str):
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def resolve_config(args: argparse.Namespace) -> Any:
    """YAML config (if any) overlaid with the flags given on the command line, validated as a whole.

    Every field is coerced and range-checked by ``TrainConfig``, and the hyper-parameters once, against the chosen
    objective (``Objective.resolve``), before a model is loaded or a file written.
    """
    from alignkit.errors import ConfigError
    from alignkit.registry import Objective, get
    from alignkit.train.config import TrainConfig

    fields: dict[str, Any] = {}
    source = "flags"
    if getattr(args, "config", None):
        source = str(args.config)
        fields.update(_load_yaml(Path(args.config)))
    given = dict(vars(args))
    if "loss_type" in given or "loss_weights" in given:
        from alignkit.integrations.trl_config import objective_from_loss_type

        if "loss_type" not in given:
            raise ConfigError("--loss_weights needs --loss_type")
        lt = given.pop("loss_type")
        fields["objective"] = objective_from_loss_type(
            lt[0] if len(lt) == 1 else lt, given.pop("loss_weights", None), "flags"
        )
    hp = fields.get("hyper_parameters")
    if hp is not None and not isinstance(hp, dict):
        raise ConfigError(
            f"{source}: hyper_parameters must be a mapping of the objective's hyper-parameters; got {hp!r}"
        )
    hp = dict(hp or {})
    if "hyper_parameters" in given:
        flag_hp = _yaml_scalar(given.pop("hyper_parameters"))
        if not isinstance(flag_hp, dict):
            raise ConfigError("--hyper-parameters takes a YAML mapping, e.g. '{beta: 0.1}'")
        hp.update(flag_hp)
    for key, value in given.items():
        if key.startswith(_HP_PREFIX):
            hp[key[len(_HP_PREFIX) :]] = _yaml_scalar(value)
        elif key in TrainConfig.field_names():
            fields[key] = value
    if "hooks" in fields:
        fields["hooks"] = _hooks(fields["hooks"])
    if isinstance(fields.get("lora_target_modules"), list) and len(fields["lora_target_modules"]) == 1:
        fields["lora_target_modules"] = fields["lora_target_modules"][0]
    objective = fields.get("objective", "dpo")
    if not isinstance(objective, (str, Objective)):
        raise ConfigError(f"objective (--objective): a registered objective name; got {objective!r}")
    obj = get(objective) if isinstance(objective, str) else objective
    if not isinstance(obj, Objective):
        raise ConfigError(f"{obj.name!r} is a {obj.kind}, not an objective")
    unknown = sorted(set(hp) - set(obj.defaults))
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
        takes = ", ".join("--" + k.replace("_", "-") for k in sorted(obj.hyper_parameters)) or "(none)"
        raise ConfigError(f"objective {obj.name!r} has no hyper-parameter {flags}; it takes: {takes}")
    resolved = obj.resolve(**hp)  # coerced and range-checked, once
    fields["hyper_parameters"] = {k: resolved[k] for k in hp}
    for required in ("model", "data"):
        if fields.get(required) is None:
            raise ConfigError(f"--{required} is required (or set {required}: in --config)")
    return TrainConfig(**fields)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from alignkit.cli._quiet import quiet_transformers
    from alignkit.sources import check_model_source
    from alignkit.train import train

    quiet_transformers()  # transformers' own tqdm bars would interleave with the run's rich bar
    cfg = resolve_config(args)
    for flag, spec in (
        ("--model", cfg.model),
        ("--ref-model", cfg.ref_model),
        ("--teacher", cfg.teacher),
    ):  # at once, not after a hub retry
        if spec is not None:
            check_model_source(spec, flag)
    result = train(cfg)
    console = Console(stderr=True)
    last = result.history[-1] if result.history else {}
    console.print(
        f"trained {len(result.history)} steps in {result.seconds:.1f}s; final loss {last.get('loss', float('nan')):.4f}"
        + (f"; saved to {result.output_dir}" if result.output_dir else "")
    )
    return 0
