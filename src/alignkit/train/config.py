"""``TrainConfig``: every setting of a training run, the same through Python, YAML and the CLI."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

REFERENCES = ("auto", "model", "lora", "cache", "none")
MODES = ("auto", "sft", "paired", "unpaired", "online")
SCHEDULERS = ("linear", "cosine", "wsd", "constant")


@dataclass
class TrainConfig:
    """A training run. ``model`` is a folder / hub id or an in-memory ``PreTrainedModel``; ``data`` a file, a
    ``save_to_disk`` folder, a list of dicts or a ``datasets.Dataset``.

    ``batch_size`` is per process and per micro-batch: the global batch of one optimizer step is
    ``batch_size * grad_accum * world_size`` examples (prompts, pairs or unpaired completions).
    """

    objective: Any = "dpo"
    model: Any = None
    tokenizer: Any = None
    data: Any = None
    output_dir: str | None = None
    ref_model: Any = None
    reference: str = "auto"
    hyper_parameters: dict[str, Any] = field(default_factory=dict)
    mode: str = "auto"
    reward_fn: Any = None
    max_steps: int | None = None
    epochs: float = 1.0
    batch_size: int = 8
    grad_accum: int = 1
    learning_rate: float = 5e-6
    lr_scheduler: str = "linear"
    warmup_ratio: float = 0.0
    wsd_decay_ratio: float = 0.1
    weight_decay: float = 0.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    max_grad_norm: float | None = 1.0
    max_length: int | None = 1024
    max_prompt_length: int | None = 512
    truncation_mode: str = "keep_start"
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target_modules: Any = "all-linear"
    seed: int = 0
    save_steps: int | None = None
    save_total_limit: int | None = None
    resume: bool = False
    logging_steps: int = 1
    gradient_checkpointing: bool = False
    bf16: bool | None = None  # None: bf16 autocast when a CUDA GPU supports it
    skip_bad_rows: bool = False
    # PTST (arXiv:2402.18540): SFT rows go through the tokenizer's chat template without a safety system prompt
    # (``alignkit.safety.ptst_rows``); generate with ``alignkit generate --ptst`` to add it at test time.
    ptst: bool = False
    progress: bool = True
    trust_remote_code: bool = False
    cache_dir: str | None = None  # reference cache; default $ALIGNKIT_CACHE or ~/.cache/alignkit
    ref_batch_size: int = 64
    online_max_new_tokens: int = 64
    online_temperature: float = 1.0
    online_top_p: float = 1.0
    online_top_k: int = 0
    tensorboard: bool = True
    hooks: Any = ()
    # --- speed (docs/speed.md); every fast path gives the plain path's log-probs and gradients ---
    packing: bool | None = None  # padding-free packing; None: on where the model's attention can be routed
    shared_prompt: bool = True  # paired + packing: each prompt computed once per pair
    completion_only_head: bool = True  # False: the plain padded forward with full [B, L, V] logits
    token_budget: int | None = None  # micro-batches by packed tokens (<= budget) instead of batch_size rows
    compile: bool = False  # torch.compile the decoder layers' MLP blocks (opt-in)
    # --- scale-out and online policy gradient ---
    distributed: str = (
        "auto"  # auto (DDP under torchrun) | ddp | fsdp (FSDP2 fully_shard, sharded checkpoints)
    )
    online_samples: int = 2  # online policy-gradient objectives: samples per prompt (they share a baseline)
    # LongAlign (arXiv:2401.18058) sorted batching: each step's rows have similar lengths (sorted, grouped by the
    # global batch, groups in random order); less padding, and with the longalign_sft objective, its recipe.
    sorted_batching: bool = False
    # TRL's disable_dropout=True: every nn.Dropout of policy and reference set to p=0 (with dropout on, policy =
    # reference does not give DPO's log 2 at step 0, and packed and padded first steps differ)
    disable_dropout: bool = True
    # SFT on `messages`: "all" trains every assistant turn (later user turns are masked context; TRL's
    # assistant_only_loss), "last" only the final message
    sft_assistant_turns: str = "all"
    # optimiser (alignkit.optim: adamw, sam/asam, frugal, collage_adamw) and its own hyper-parameters
    optimizer: str = "adamw"
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    # WSD cooldown shape (alignkit.train.schedules: linear, cosine, 1-sqrt, 1-square, mirror-cosine) and floor
    wsd_cooldown: str = "linear"
    wsd_min_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.reference not in REFERENCES:
            raise ValueError(f"reference must be one of {REFERENCES}; got {self.reference!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got {self.mode!r}")
        if self.lr_scheduler not in SCHEDULERS:
            raise ValueError(f"lr_scheduler must be one of {SCHEDULERS}; got {self.lr_scheduler!r}")
        if self.truncation_mode not in ("keep_start", "keep_end"):
            raise ValueError(
                f"truncation_mode must be 'keep_start' or 'keep_end'; got {self.truncation_mode!r}"
            )
        if self.sft_assistant_turns not in ("all", "last"):
            raise ValueError(f"sft_assistant_turns must be 'all' or 'last'; got {self.sft_assistant_turns!r}")
        if self.distributed not in ("auto", "ddp", "fsdp"):
            raise ValueError(f"distributed must be 'auto', 'ddp' or 'fsdp'; got {self.distributed!r}")
        for name in ("batch_size", "grad_accum", "logging_steps", "online_samples"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.token_budget is not None and int(self.token_budget) < 1:
            raise ValueError(f"token_budget must be >= 1 tokens; got {self.token_budget}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1; got {self.max_steps}")
        if self.max_steps is None and not self.epochs > 0:
            raise ValueError(f"epochs must be > 0; got {self.epochs}")
        if not isinstance(self.hyper_parameters, dict):
            raise TypeError("hyper_parameters must be a dict of the objective's hyper-parameters")
        self.adam_betas = tuple(self.adam_betas)  # type: ignore[assignment]

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
                v = f"<in-memory {type(v).__name__} of {len(v)} rows>"
            elif f.name == "hooks":
                v = [type(h).__name__ for h in v]
            elif isinstance(v, tuple):
                v = list(v)
            elif v is not None and not isinstance(v, (str, int, float, bool, list, dict)):
                v = f"<in-memory {type(v).__name__}>"
            out[f.name] = v
        return out
