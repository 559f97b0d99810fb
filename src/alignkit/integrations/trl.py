"""The TRL bridge: TRL's ``DPOTrainer`` (its data pipeline, Trainer, FSDP / DeepSpeed / QLoRA / W&B) with the loss
of any registered alignkit objective.

    from alignkit.integrations.trl import AlignkitDPOTrainer
    trainer = AlignkitDPOTrainer(model=model, args=DPOConfig(...), train_dataset=ds, processing_class=tok,
                                 objective="simpo", hyper_parameters={"beta": 2.0})
    trainer.train()

TRL computes the per-token log-probs of chosen and rejected (and of the reference, or reads precomputed sums);
the bridge builds alignkit's ``PreferenceBatch`` from them and calls the objective — so a TRL ``loss_type`` and
the alignkit objective of the same name give the same loss (tested in-process), and objectives TRL does not
have (DiscoPOP variants, FIGA, Cringe, the logic family, a ``combine``) train through TRL unchanged.
Fields the objective declares are planned as in ``alignkit train``: computed ones (WPO's ``log sum p^2``,
FIGA's edit masks) are supplied; data-column fields (preference probabilities, objective ids) are not carried by
TRL's collator and are refused if required, reported if optional. ``alignkit train`` stays the fast path.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from alignkit.data.prepare import Example
from alignkit.errors import UserError
from alignkit.registry import Objective, get
from alignkit.train.fields import plan_fields
from alignkit.types import PreferenceBatch

try:  # the bridge needs TRL; importing this module without it names the fix
    from trl import DPOTrainer
except ImportError as exc:  # pragma: no cover - trl is in the test extra
    raise ImportError("alignkit.integrations.trl needs TRL: pip install trl==1.16.0") from exc

_log = logging.getLogger("alignkit.integrations.trl")


def _resolve(objective: str | Objective) -> Objective:
    obj = objective if isinstance(objective, Objective) else get(objective)
    if not isinstance(obj, Objective):
        raise UserError(f"{obj.name!r} is a {obj.kind}, not an objective")
    if obj.batch_type is not None and not issubclass(obj.batch_type, PreferenceBatch):
        raise UserError(f"objective {obj.name!r} takes a {obj.batch_type.__name__}; DPOTrainer gives pairs")
    return obj


class AlignkitDPOTrainer(DPOTrainer):
    """``DPOTrainer`` whose loss is ``objective`` (a registered name, an ``Objective``, or ``ak.combine(...)``).

    ``hyper_parameters`` are the objective's (validated now); TRL's ``beta`` / ``loss_type`` settings are not read.
    Everything else is TRL's: arguments, data processing, reference handling (model, PEFT adapter-off, or
    ``precompute_ref_log_probs``), logging."""

    def __init__(
        self,
        *args: Any,
        objective: str | Objective = "dpo",
        hyper_parameters: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.ak_objective = _resolve(objective)
        self.ak_hp = self.ak_objective.resolve(**(hyper_parameters or {}))
        self.ak_plan = plan_fields(self.ak_objective, self.ak_hp, mode="paired", columns=set(), online=False)
        for note in self.ak_plan.notes:
            _log.warning("alignkit: %s", note)
        self.ak_state = dict(self.ak_objective.state.init) if self.ak_objective.state is not None else {}
        super().__init__(*args, **kwargs)

    def compute_loss(
        self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        mode = "train" if self.model.training else "eval"
        keys = {"completion_mask", "ref_chosen_logps", "ref_rejected_logps"}
        model_kwargs = {k: v for k, v in inputs.items() if k not in keys}
        model_kwargs["use_cache"] = False
        completion_mask = inputs["completion_mask"]
        shift_mask = completion_mask[..., 1:]
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        outputs = model(**model_kwargs, labels=labels, fused_lm_head=True)
        seq_len = shift_mask.size(1)
        per_token = outputs.log_probs[:, -seq_len:]
        b = per_token.shape[0] // 2
        mask = shift_mask.to(per_token.dtype)
        if self.precompute_ref_logps:
            ref = torch.cat([inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]]).to(per_token.dtype)
        else:
            ref = self._reference_token_logps(model_kwargs, labels, seq_len)
        kw: dict[str, Any] = dict(
            chosen_logps=per_token[:b], rejected_logps=per_token[b:], chosen_mask=mask[:b], rejected_mask=mask[b:],
            ref_chosen_logps=ref[:b], ref_rejected_logps=ref[b:],
        )  # fmt: skip
        if self.ak_plan.wants("log_sum_sq_probs"):
            lss = outputs.log_sum_sq_probs[:, -seq_len:]
            kw.update(chosen_log_sum_sq_probs=lss[:b], rejected_log_sum_sq_probs=lss[b:])
        batch = self.ak_plan.extend(PreferenceBatch(**kw), _examples(inputs["input_ids"], completion_mask, b))
        out = self.ak_objective(batch, **{**self.ak_hp, **self.ak_state})
        if self.ak_objective.state is not None:
            self.ak_state = self.ak_objective.state.update(self.ak_state, out.state)
        for k, v in out.metrics.items():
            self._metrics[mode][k].append(float(v))
        return (out.loss, outputs) if return_outputs else out.loss

    def _reference_token_logps(
        self, model_kwargs: dict[str, Any], labels: torch.Tensor, seq_len: int
    ) -> torch.Tensor:
        """TRL's own reference forward (frozen model, or the PEFT adapter switched off), per token."""
        from trl.trainer.dpo_trainer import disable_gradient_checkpointing, is_peft_model, use_adapter

        kwargs = {k: v for k, v in model_kwargs.items() if k != "output_router_logits"}
        with (
            torch.no_grad(),
            disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs),
        ):
            if is_peft_model(self.model) and self.ref_model is None:
                unwrapped = self.accelerator.unwrap_model(self.model)
                with use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None):
                    out = self.model(**kwargs, labels=labels, fused_lm_head=True)
            else:
                out = self.ref_model(**kwargs, labels=labels, fused_lm_head=True)
        return out.log_probs[:, -seq_len:]


def _examples(input_ids: torch.Tensor, completion_mask: torch.Tensor, b: int) -> list[Example]:
    """Token-id views of TRL's rows (``[chosen..., rejected...]``) for fields computed from ids (FIGA's masks)."""
    rows = []
    for i in range(b):
        c = input_ids[i][completion_mask[i].bool()].tolist()
        r = input_ids[b + i][completion_mask[b + i].bool()].tolist()
        p = input_ids[i][: int(completion_mask[i].nonzero()[0]) if completion_mask[i].any() else 0].tolist()
        rows.append(Example(p, chosen_ids=c, rejected_ids=r, where=f"batch row {i}"))
    return rows
