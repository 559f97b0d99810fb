"""TRL's names for training settings, read as alignkit's: a TRL DPO YAML (``TrlParser`` style) runs with
``alignkit train --config dpo.yaml``, or fails naming the one field alignkit does not support.

Flags take the TRL names too, in underscore and dash forms (``--per_device_train_batch_size 4``,
``--per-device-train-batch-size 4``). ``loss_type`` (a name or a list, with ``loss_weights``) becomes the
objective (a list is ``alignkit.combine``); a top-level ``beta`` becomes the objective's hyper-parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from alignkit.errors import ConfigError

# TRL / transformers TrainingArguments name -> TrainConfig field
RENAMES: dict[str, str] = {
    "model_name_or_path": "model",
    "per_device_train_batch_size": "batch_size",
    "gradient_accumulation_steps": "grad_accum",
    "num_train_epochs": "epochs",
    "lr_scheduler_type": "lr_scheduler",
    "dataset_name": "data",
    "dataset_train_split": "split",
    "padding_free": "packing",
    "use_peft": "lora",
    "ref_model_name_or_path": "ref_model",
    "lora_target_modules": "lora_target_modules",
    "teacher_model_name_or_path": "teacher",  # GKDConfig / DistillationConfig
    "torch_dtype": "dtype",  # transformers' older name of ModelConfig.dtype
}
# TRL settings that mean "nothing to do" for alignkit (values that are alignkit's behaviour anyway)
_HARMLESS: dict[str, Any] = {
    "push_to_hub": False,
    "remove_unused_columns": False,
    "eval_strategy": "no",
    "do_eval": False,
    "logging_strategy": "steps",
}
# Hyper-parameters TRL keeps at the top level
_HYPER = (
    "beta",
    "label_smoothing",
    "ld_alpha",
    "use_weighting",
    "f_divergence_type",
    "f_alpha_divergence_coef",
    # the distillation objectives' loss temperature, as TRL's DistillationConfig (GKDConfig's temperature is the
    # sampling temperature of on-policy generation, which the offline path does not do: docs/distillation.md)
    "temperature",
)
# GKDConfig's on-policy settings: alignkit train distils offline (lmbda = 0, seq_kd = False) only
_OFFLINE_ONLY = {"lmbda": 0.0, "seq_kd": False}


def translate(mapping: Mapping[str, Any], source: str, fields: set[str]) -> dict[str, Any]:
    """``mapping`` with TRL names turned into TrainConfig fields (``fields``); an unsupported TRL field raises
    :class:`ConfigError` naming it (and ``source``)."""
    out: dict[str, Any] = {}
    given_hp = mapping.get("hyper_parameters")
    if given_hp is not None and not isinstance(given_hp, Mapping):
        raise ConfigError(
            f"{source}: hyper_parameters must be a mapping of the objective's hyper-parameters; got {given_hp!r}"
        )
    hp = dict(given_hp or {})
    loss_type = mapping.get("loss_type")
    weights = mapping.get("loss_weights")
    for key, value in mapping.items():
        k = key.replace("-", "_")
        if k in ("loss_type", "loss_weights", "hyper_parameters"):
            continue
        if k in _HYPER:
            hp[k] = value
        elif k in _OFFLINE_ONLY:
            if value != _OFFLINE_ONLY[k]:
                raise ConfigError(
                    f"{source}: {key}: {value!r} asks for on-policy / sequence-level distillation (student or "
                    f"teacher samples), which alignkit train does not do; it distils offline on the data's "
                    f"completions ({k}: {_OFFLINE_ONLY[k]!r})"
                )
        elif k == "teacher_model_init_kwargs":
            out.update(_teacher_init_kwargs(value, source))
        elif k == "precompute_ref_log_probs":
            if value:
                out["reference"] = "cache"
        elif k == "report_to":
            from alignkit.train.config import REPORT_TO

            targets = [value] if isinstance(value, str) else list(value or ["none"])
            bad = [t for t in targets if t not in REPORT_TO]
            if bad:
                raise ConfigError(
                    f"{source}: report_to {bad} is not supported by alignkit train (it writes history.jsonl, "
                    f"and {', '.join(REPORT_TO)}); use the TRL bridge (alignkit.integrations.trl) for other loggers"
                )
            out["report_to"] = targets
        elif k in _HARMLESS:
            if value != _HARMLESS[k]:
                raise ConfigError(f"{source}: {key}: {value!r} is not supported by alignkit train")
        elif k in RENAMES:
            out[RENAMES[k]] = value
        elif k in fields:
            out[k] = value
        else:
            raise ConfigError(
                f"{source}: unknown config field {key!r} (neither an alignkit nor a supported TRL name)"
            )
    if loss_type is not None:
        out["objective"] = objective_from_loss_type(loss_type, weights, source)
    elif weights is not None:
        raise ConfigError(f"{source}: loss_weights without loss_type")
    if hp:
        out["hyper_parameters"] = hp
    return out


def _teacher_init_kwargs(value: Any, source: str) -> dict[str, Any]:
    """TRL's ``teacher_model_init_kwargs``: only the dtype (``dtype`` / ``torch_dtype``) has an alignkit field."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: teacher_model_init_kwargs must be a mapping; got {value!r}")
    out: dict[str, Any] = {}
    for k, v in value.items():
        if k in ("dtype", "torch_dtype"):
            out["teacher_dtype"] = v
        else:
            raise ConfigError(
                f"{source}: teacher_model_init_kwargs.{k} is not supported by alignkit train (only dtype, as "
                "teacher_dtype)"
            )
    return out


def objective_from_loss_type(loss_type: Any, weights: Any, source: str) -> Any:
    """TRL's ``loss_type`` (a name, or a list mixed by ``loss_weights``) as an alignkit objective."""
    from alignkit.composite import combine

    names = [loss_type] if isinstance(loss_type, str) else list(loss_type)
    if not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{source}: loss_type must be a name or a list of names; got {loss_type!r}")
    if weights is None:
        weights = [1.0] * len(names)
    if not isinstance(weights, (list, tuple)) or len(weights) != len(names):
        raise ConfigError(f"{source}: loss_weights must give one weight per loss_type ({len(names)})")
    if len(names) == 1 and float(weights[0]) == 1.0:
        return names[0]
    return combine([(n, float(w)) for n, w in zip(names, weights, strict=True)])


def flag_aliases(field_name: str) -> tuple[str, ...]:
    """TRL flag names for a TrainConfig field, in underscore and dash forms."""
    out: list[str] = []
    for trl, f in RENAMES.items():
        if f == field_name and trl != field_name:
            out += ["--" + trl, "--" + trl.replace("_", "-")]
    if "_" in field_name:
        out.append("--" + field_name)  # TRL's underscore form of the same name
    return tuple(dict.fromkeys(out))
