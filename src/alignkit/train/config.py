"""``TrainConfig``: every setting of a training run, the same through Python, YAML and the CLI.

Each field carries its help text (and, where it has one, its valid range or choices) in its metadata: the
``alignkit train`` flags and their help are generated from it (``alignkit.cli.train``), and ``__post_init__``
validates and coerces every field against its type and range before anything is loaded or written — a wrong type
(``max_steps: "two"``, ``hyper_parameters: 5``) or value (``learning_rate: 0``, ``warmup_ratio: 5``) raises
:class:`~alignkit.errors.ConfigError` naming the field and its flag. Types are checked with pydantic's
``TypeAdapter`` on the dataclass annotations (lax mode: ``"1e-5"``, which YAML reads as a string, becomes a float).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import typing
from dataclasses import dataclass, field
from typing import Any

from alignkit.errors import ConfigError

REFERENCES = ("auto", "model", "lora", "cache", "none")
MODES = ("auto", "sft", "paired", "unpaired", "online")
SCHEDULERS = ("linear", "cosine", "wsd", "constant")
TRUNCATION_MODES = ("keep_start", "keep_end")
DTYPE_CHOICES = ("auto", "float32", "bfloat16", "float16")
REPORT_TO = ("tensorboard", "wandb", "none", "all")

_NO_DEFAULT = dataclasses.MISSING
IN_MEMORY = (
    "<in-memory"  # how to_dict writes an object that cannot be written; never a valid value to read back
)


def _f(
    default: Any = _NO_DEFAULT,
    help: str = "",  # noqa: A002 - argparse's word
    *,
    factory: Any = _NO_DEFAULT,
    flag: str | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: tuple[Any, ...] | None = None,
) -> Any:
    """A field with its CLI help, flag (default ``--name-with-dashes``) and valid range / choices."""
    meta = {"help": help, "flag": flag, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices}
    if factory is not _NO_DEFAULT:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """A training run. ``model`` is a folder / hub id or an in-memory ``PreTrainedModel``; ``data`` a file, a
    ``save_to_disk`` folder, a list of dicts or a ``datasets.Dataset``.

    ``batch_size`` is per process and per micro-batch: the global batch of one optimizer step is
    ``batch_size * grad_accum * world_size`` examples (prompts, pairs or unpaired completions).
    """

    objective: Any = _f("dpo", "registered objective name (see `alignkit list`)")
    model: Any = _f(None, "model folder (any AutoModelForCausalLM), hub id, or an in-memory model (Python)")
    tokenizer: Any = _f(None, "tokenizer folder (default: the model's)")
    data: Any = _f(
        None,
        "JSONL / JSON / Parquet / CSV file, a save_to_disk folder, a folder of data files, or a hub dataset id "
        "(Python: also a list of rows, a Dataset or an IterableDataset)",
    )
    output_dir: str | None = _f(
        None,
        "output folder (checkpoints, logs, final model); refused if it holds anything but this run, unless "
        "--overwrite; never the model or data folder",
        flag="--output",
    )
    overwrite: bool = _f(
        False, "use --output even if it holds files of something else (they may be replaced)"
    )
    ref_model: Any = _f(None, "reference model folder (default: the initial policy)")
    reference: str = _f("auto", "where reference log-probs come from", choices=REFERENCES)
    hyper_parameters: dict[str, Any] = _f(
        factory=dict,
        help="the objective's hyper-parameters as a YAML mapping ('{beta: 0.1}'); or one flag each",
    )
    mode: str = _f("auto", "training mode (auto: from the objective and reward_fn)", choices=MODES)
    reward_fn: Any = _f(None, "online mode: 'module:function' taking (prompt_ids, completion_ids) -> rewards")
    max_steps: int | None = _f(None, "optimizer steps (overrides --epochs)", ge=1)
    epochs: float = _f(1.0, "passes over the data (when --max-steps is not given)", gt=0)
    batch_size: int = _f(8, "examples per micro-batch and process", ge=1)
    grad_accum: int = _f(1, "micro-batches per optimizer step", ge=1)
    learning_rate: float = _f(5e-6, "peak AdamW learning rate", gt=0)
    lr_scheduler: str = _f("linear", "learning-rate schedule after warmup", choices=SCHEDULERS)
    warmup_ratio: float = _f(0.0, "fraction of steps of linear warmup", ge=0, le=1)
    wsd_decay_ratio: float = _f(0.1, "wsd schedule: fraction of steps of the final decay", ge=0, le=1)
    weight_decay: float = _f(0.0, "AdamW weight decay (matrices only)", ge=0)
    adam_betas: tuple[float, float] = _f((0.9, 0.999), "AdamW betas (two numbers in [0, 1))", ge=0, lt=1)
    max_grad_norm: float | None = _f(1.0, "gradient clipping norm (0 or none: no clipping)", ge=0)
    max_length: int | None = _f(
        1024,
        "max prompt+completion tokens; each longer sequence is cut as TRL 1.16 cuts it (counted in "
        "data_report.json)",
        ge=2,
    )
    max_prompt_length: int | None = _f(
        None, "cut prompts to this many tokens first (off: TRL 1.16 has no prompt limit)", ge=1
    )
    max_completion_length: int | None = _f(
        None, "cut completions to this many tokens first (off: TRL 1.16's DPO has no completion limit)", ge=1
    )
    truncation_mode: str = _f(
        "keep_start",
        "which end of a too-long sequence to keep (per sequence, as TRL)",
        choices=TRUNCATION_MODES,
    )
    dataset_config: str | None = _f(
        None, "the dataset's configuration name (load_dataset's name=) for a hub id or a dataset folder"
    )
    split: str | None = _f(
        None,
        "the split to train on, for a DatasetDict folder or a hub id (default: train); TRL's dataset_train_split",
    )
    dataset_num_proc: int | None = _f(
        None, "processes for tokenising (datasets.map num_proc; the same token ids as one process)", ge=1
    )
    lora: bool = _f(False, "train LoRA adapters (peft) instead of all weights")
    lora_r: int = _f(8, "LoRA rank", ge=1)
    lora_alpha: int = _f(16, "LoRA alpha", ge=1)
    lora_dropout: float = _f(0.0, "LoRA dropout", ge=0, lt=1)
    lora_target_modules: Any = _f("all-linear", "LoRA target modules ('all-linear' or module names)")
    seed: int = _f(0, "random seed (data order, sampling, initialisation of adapters)")
    save_steps: int | None = _f(None, "checkpoint every N steps", ge=1)
    save_total_limit: int | None = _f(None, "keep only the newest N checkpoints", ge=1)
    resume: bool = _f(False, "continue from the newest complete checkpoint of this run in --output")
    logging_steps: int = _f(1, "write logs every N steps", ge=1)
    gradient_checkpointing: bool = _f(False, "recompute activations in backward (less memory, slower)")
    bf16: bool | None = _f(
        None, "bf16 autocast compute (default: on where a CUDA GPU supports it; on CPU only when given)"
    )
    fp16: bool = _f(False, "fp16 autocast compute with a grad scaler (CUDA only; refused on CPU)")
    dtype: str = _f(
        "auto",
        "dtype of the saved model and checkpoints (auto: the input model's; full fine-tuning trains fp32 master "
        "weights, kept in checkpoints for resume)",
        choices=DTYPE_CHOICES,
    )
    load_in_4bit: bool = _f(
        False, "QLoRA: load the base model 4-bit with bitsandbytes (CUDA + bitsandbytes; needs --lora)"
    )
    bnb_4bit_quant_type: str = _f("nf4", "QLoRA: 4-bit quantisation type", choices=("nf4", "fp4"))
    use_bnb_nested_quant: bool = _f(False, "QLoRA: nested (double) quantisation of the 4-bit constants")
    skip_bad_rows: bool = _f(False, "skip bad rows with a counted warning instead of failing")
    # PTST (arXiv:2402.18540): SFT rows go through the tokenizer's chat template without a safety system prompt
    # (``alignkit.safety.ptst_rows``); generate with ``alignkit generate --ptst`` to add it at test time.
    ptst: bool = _f(False, "PTST: SFT rows through the chat template without a safety system prompt")
    progress: bool = _f(True, "show a progress bar")
    progress_label: str | None = _f(
        None, "the progress bar's label (default: 'training'; recipes: recipe/stage)"
    )
    trust_remote_code: bool = _f(False, "allow model code from the model folder / hub")
    cache_dir: str | None = _f(
        None,
        "reference log-prob cache folder (default: alignkit's cache root: $ALIGNKIT_CACHE, else "
        "$XDG_CACHE_HOME/alignkit, else ~/.cache/alignkit)",
    )
    ref_batch_size: int = _f(64, "batch size when caching reference log-probs", ge=1)
    online_max_new_tokens: int = _f(64, "online mode: tokens sampled per completion", ge=1)
    online_temperature: float = _f(1.0, "online mode: sampling temperature", ge=0)
    online_top_p: float = _f(1.0, "online mode: nucleus sampling mass", gt=0, le=1)
    online_top_k: int = _f(0, "online mode: top-k sampling (0: off)", ge=0)
    tensorboard: bool = _f(
        True, "write TensorBoard logs to <output>/tensorboard (--no-tensorboard drops it from --report-to)"
    )
    report_to: list[str] = _f(
        factory=lambda: ["tensorboard"],
        help="loggers of the per-step records besides history.jsonl: tensorboard, wandb, none or all "
        "(all: those installed)",
    )
    hooks: Any = _f((), "training hooks ('module:callable' each, called with no arguments to make a Hook)")
    # --- speed (docs/speed.md); every fast path gives the plain path's log-probs and gradients ---
    packing: bool | None = _f(
        None, "padding-free packing (default: on where the model's attention can be routed)"
    )
    shared_prompt: bool = _f(True, "paired + packing: compute each prompt once per pair")
    completion_only_head: bool = _f(
        True, "LM head on completion tokens only (off: plain full [B, L, V] logits)"
    )
    token_budget: int | None = _f(
        None, "micro-batches by packed tokens (<= budget) instead of batch_size rows", ge=1
    )
    compile: bool = _f(False, "torch.compile the decoder layers' MLP blocks")
    # --- scale-out and online policy gradient ---
    distributed: str = _f(
        "auto",
        "auto (DDP under torchrun), ddp, or fsdp (FSDP2 fully_shard, sharded checkpoints)",
        choices=("auto", "ddp", "fsdp"),
    )
    online_samples: int = _f(
        2, "online policy-gradient objectives: samples per prompt (they share a baseline)", ge=1
    )
    sorted_batching: bool = _f(
        False,
        "LongAlign sorted batching: rows sorted by length, cut into steps, steps shuffled (arXiv:2401.18058)",
    )
    disable_dropout: bool = _f(
        True, "set every nn.Dropout of policy and reference to p=0 (TRL's disable_dropout)"
    )
    sft_assistant_turns: str = _f(
        "all",
        "SFT on messages: train every assistant turn (all; TRL's assistant_only_loss) or the last message only",
        choices=("all", "last"),
    )
    optimizer: str = _f("adamw", "optimizer: adamw, sam, asam, frugal, collage_adamw (alignkit.optim)")
    optimizer_kwargs: dict[str, Any] = _f(
        factory=dict, help="the optimizer's own hyper-parameters as a YAML mapping ('{rho: 0.05}')"
    )
    wsd_cooldown: str = _f(
        "linear",
        "wsd schedule: cooldown shape (linear, cosine, 1-sqrt, 1-square, mirror-cosine)",
        choices=("linear", "cosine", "1-sqrt", "1-square", "mirror-cosine"),
    )
    wsd_min_ratio: float = _f(0.0, "wsd schedule: final learning-rate multiplier", ge=0, le=1)
    # --- distillation (docs/distillation.md; alignkit.train.teacher) ---
    teacher: Any = _f(
        None,
        "distillation objectives: the teacher model folder or hub id (TRL: teacher_model_name_or_path); its "
        "outputs are computed once per micro-batch without gradients",
    )
    teacher_dtype: str = _f(
        "float32", "dtype the teacher is loaded in", choices=("float32", "bfloat16", "float16")
    )

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def replace(self, **overrides: Any) -> TrainConfig:
        unknown = sorted(set(overrides) - set(self.field_names()))
        if unknown:
            raise TypeError(f"TrainConfig has no field {', '.join(map(repr, unknown))}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """A YAML/JSON-safe view (in-memory objects shown by type)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "objective" and not isinstance(v, str):
                v = getattr(v, "name", repr(v))
            elif f.name == "data" and isinstance(v, os.PathLike):
                v = os.fspath(v)
            elif f.name == "data" and not isinstance(v, str) and v is not None:
                rows = f" of {len(v)} rows" if hasattr(v, "__len__") and not hasattr(v, "keys") else ""
                v = f"<in-memory {type(v).__name__}{rows}>"  # an IterableDataset has no length, a DatasetDict splits
            elif f.name == "hooks":
                v = [f"{IN_MEMORY} hook {type(h).__name__}: not re-runnable from YAML>" for h in v]
            elif f.name == "reward_fn" and v is not None:
                v = callable_spec(
                    v
                ) or f"{IN_MEMORY} function {getattr(v, '__name__', type(v).__name__)}: " + (
                    "not re-runnable; pass --reward-fn module:function>"
                )
            elif isinstance(v, tuple):
                v = list(v)
            elif v is not None and not isinstance(v, (str, int, float, bool, list, dict)):
                v = f"<in-memory {type(v).__name__}>"
            out[f.name] = v
        return out


def callable_spec(fn: Any) -> str | None:
    """``"module:qualname"`` when importing it gives back ``fn`` (so a YAML config can name it), else None."""
    import importlib

    if isinstance(fn, str):
        return fn
    mod, qual = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not mod or not qual or mod == "__main__" or "<" in qual:
        return None
    try:
        obj: Any = importlib.import_module(mod)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return f"{mod}:{qual}" if obj is fn else None


def flag_of(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


@functools.cache
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


@functools.cache
def _adapter(name: str) -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(_hints()[name])


def _bounds(meta: typing.Mapping[str, Any]) -> str:
    lo = (
        f"[{meta['ge']:g}"
        if meta.get("ge") is not None
        else f"({meta['gt']:g}"
        if meta.get("gt") is not None
        else "(-inf"
    )
    hi = (
        f"{meta['le']:g}]"
        if meta.get("le") is not None
        else f"{meta['lt']:g})"
        if meta.get("lt") is not None
        else "inf)"
    )
    return f"{lo}, {hi}"


def _in_bounds(v: float, meta: typing.Mapping[str, Any]) -> bool:
    if isinstance(v, float) and math.isnan(v):
        return False
    return not (
        (meta.get("ge") is not None and v < meta["ge"])
        or (meta.get("gt") is not None and v <= meta["gt"])
        or (meta.get("le") is not None and v > meta["le"])
        or (meta.get("lt") is not None and v >= meta["lt"])
    )


def _has_in_memory_marker(v: Any) -> bool:
    if isinstance(v, str):
        return v.startswith(IN_MEMORY)
    if isinstance(v, (list, tuple)):
        return any(_has_in_memory_marker(x) for x in v)
    return False


def validate(cfg: TrainConfig) -> None:
    """Coerce every field to its annotated type and check its range / choices, in place; one
    :class:`ConfigError` lists every bad field with its flag (``learning_rate (--learning-rate): ...``)."""
    from pydantic import ValidationError

    problems: list[str] = []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        where = f"{f.name} ({flag_of(f)})"
        if _has_in_memory_marker(v):
            problems.append(
                f"{where}: {v!r} stands for an in-memory object of an earlier run that a config file cannot hold; "
                "give the value again (a path, or 'module:function')"
            )
            continue
        hint = _hints()[f.name]
        if hint is not Any:
            if isinstance(v, os.PathLike) and f.name in ("output_dir", "cache_dir"):
                v = os.fspath(v)
            if isinstance(v, bool) and hint in (int, float, int | None, float | None):
                problems.append(f"{where}: takes a number; got {v!r}")
                continue
            if f.name == "max_grad_norm" and isinstance(v, str) and v.strip().lower() in ("none", "null"):
                v = None
            if f.name == "report_to" and (isinstance(v, str) or v is None):
                v = ["none" if v is None else v]
            try:
                v = _adapter(f.name).validate_python(v)
            except ValidationError as exc:
                err = exc.errors()[0]
                problems.append(f"{where}: {err['msg'].rstrip('.').lower()}; got {v!r}")
                continue
        meta = f.metadata
        if meta.get("choices") is not None and v not in meta["choices"]:
            problems.append(f"{where}: must be one of {', '.join(map(str, meta['choices']))}; got {v!r}")
            continue
        if any(meta.get(k) is not None for k in ("ge", "gt", "le", "lt")):
            values = v if isinstance(v, tuple) else (v,)
            if any(x is not None and not _in_bounds(x, meta) for x in values):
                problems.append(f"{where}: must be in {_bounds(meta)}; got {v!r}")
                continue
        object.__setattr__(cfg, f.name, v)
    if cfg.max_grad_norm == 0:
        cfg.max_grad_norm = None
    bad = [t for t in cfg.report_to if t not in REPORT_TO] if isinstance(cfg.report_to, list) else []
    if bad:
        problems.append(
            f"report_to (--report-to): {', '.join(map(repr, bad))} is not a logger alignkit train writes to; "
            f"use {', '.join(REPORT_TO)} (other loggers: the TRL bridge, alignkit.integrations.trl)"
        )
    if isinstance(cfg.reward_fn, str) and not problems:
        from alignkit.callables import import_callable

        if ":" not in cfg.reward_fn:
            problems.append(f"reward_fn (--reward-fn): must be 'module:function'; got {cfg.reward_fn!r}")
        else:
            try:
                cfg.reward_fn = import_callable(cfg.reward_fn, "reward_fn (--reward-fn)")
            except ValueError as exc:
                problems.append(str(exc))
    if not problems and cfg.reward_fn is not None and not callable(cfg.reward_fn):
        problems.append(
            f"reward_fn (--reward-fn): must be callable or 'module:function'; got {cfg.reward_fn!r}"
        )
    if problems:
        raise ConfigError("invalid training config: " + "; ".join(problems))
