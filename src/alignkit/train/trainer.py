"""``train()``: one loop for SFT, paired, unpaired and online training of a causal LM with any registered objective.

The objective declares what it consumes (:class:`alignkit.spec.ObjectiveSpec`); before step 1 the trainer plans
how each declared field is supplied (:mod:`alignkit.train.fields`) or refuses, and reports optional fields it
cannot supply. A step is: (hooks) -> micro-batches (lay out, score policy / reference / KL through one scorer,
build the objective's batch with its fields, loss, backward with the weight its normalisation asks for) ->
(hooks) -> clip -> optimizer -> schedule -> objective state update -> log / checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from alignkit.data.loading import load_records
from alignkit.data.prepare import Example, prepare
from alignkit.engine.batching import build_paired, build_sft, build_unpaired
from alignkit.engine.layout import Layout, PolicyScorer, score
from alignkit.engine.logprobs import HEAD_WORKSPACE, unwrap_model
from alignkit.engine.reference import Reference
from alignkit.errors import UserError
from alignkit.optim import build_optimizer, needs_closure
from alignkit.registry import Objective, get
from alignkit.sources import check_data_source, check_model_source
from alignkit.train import distributed as D
from alignkit.train import precision as P
from alignkit.train import setup as S
from alignkit.train import teacher as T
from alignkit.train.checkpoint import (
    find_resume_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_history,
    rng_state,
    save_checkpoint,
    set_rng_state,
    write_manifest,
)
from alignkit.train.config import TrainConfig
from alignkit.train.fields import FieldPlan, number_objectives, plan_fields, read_columns
from alignkit.train.hf_save import save_model_folder
from alignkit.train.hooks import MicroBatch, TrainContext
from alignkit.train.logger import RunLogger, check_report_to, report_targets
from alignkit.train.online import online_pairs, online_scored
from alignkit.train.run_dir import prepare_output_dir, run_identity
from alignkit.train.schedules import lr_lambda

_log = logging.getLogger("alignkit.train")


@dataclass
class TrainResult:
    model: Any
    tokenizer: Any
    history: list[dict[str, Any]]
    output_dir: str | None
    seconds: float
    data_report: dict[str, Any] = field(default_factory=dict)
    reference: str = "none"
    fast_paths: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def train(config: TrainConfig | None = None, **overrides: Any) -> TrainResult:
    """Train a causal LM with a registered objective. See :class:`TrainConfig` and ``docs/training.md``.

    ``ak.train(objective="dpo", model=path_or_model, data=rows, max_steps=100, hyper_parameters={"beta": 0.1})``
    """
    cfg = (config or TrainConfig()).replace(**overrides) if overrides else (config or TrainConfig())
    with (
        contextlib.ExitStack() as stack
    ):  # undoes packed attention and frees the head buffers however it ends
        stack.callback(HEAD_WORKSPACE.clear)
        return _Trainer(cfg, stack).run()


class _ObjectiveState:
    """The objective's running state: fed in as keyword arguments, updated once per step from the summed
    ``LossOutput.state`` of every micro-batch on every rank, saved in checkpoints."""

    def __init__(self, obj: Objective, restored: dict[str, Any] | None) -> None:
        self.spec = obj.state
        self.values: dict[str, float] = dict(self.spec.init) if self.spec is not None else {}
        if restored and self.spec is not None:
            self.values.update({k: v for k, v in restored.items() if k in self.values})
        self.stats: dict[str, float] = {}

    def add(self, stats: dict[str, float]) -> None:
        for k, v in stats.items():
            self.stats[k] = self.stats.get(k, 0.0) + float(v)

    def end_step(self, world: int) -> None:
        if self.spec is not None:
            self.values = self.spec.update(self.values, D.all_reduce_sum(self.stats, world))
        self.stats = {}


class _Trainer:
    def __init__(self, cfg: TrainConfig, stack: contextlib.ExitStack) -> None:
        self.cfg, self.stack = cfg, stack

    # --- setup: each piece returns what it decides ------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg, t0 = self.cfg, time.time()
        if cfg.model is None:
            raise UserError("TrainConfig.model is required (a folder, a hub id or a PreTrainedModel)")
        if cfg.data is None:
            raise UserError("TrainConfig.data is required (a file, a save_to_disk folder or a list of rows)")
        rank, world, local_rank = S.dist_env()
        self.rank, self.world = rank, world
        self.dist = D.strategy(cfg.distributed, world)
        self.device = device = S.device_for(local_rank)
        S.seed_all(cfg.seed)
        obj = cfg.objective if isinstance(cfg.objective, Objective) else get(cfg.objective)
        if not isinstance(obj, Objective):
            raise UserError(f"{obj.name!r} is a {obj.kind}, not an objective")
        self.obj, self.hp = obj, obj.resolve(**cfg.hyper_parameters)
        self.mode = mode = T.resolve_mode(cfg, obj) or S.resolve_mode(cfg, obj)  # distillation: "sft"
        self.online = S.online_kind(obj) if mode == "online" else None
        if self.dist == "fsdp" and (cfg.lora or mode == "online"):
            raise UserError(
                "distributed='fsdp' supports full fine-tuning of offline data; use DDP for LoRA/online"
            )
        # what this machine cannot run is refused now, before anything is written
        P.check_compute(cfg, device)
        P.check_4bit(cfg)
        check_report_to(report_targets(cfg))
        if self.dist == "fsdp" and (cfg.fp16 or cfg.load_in_4bit):
            raise UserError("distributed='fsdp' runs with --bf16 or fp32; --fp16 and --load-in-4bit need DDP")

        for what, spec in (("model", cfg.model), ("ref_model", cfg.ref_model), ("teacher", cfg.teacher)):
            if spec is not None:
                check_model_source(
                    spec, what
                )  # a missing folder or an unreachable hub id fails now, in one line
        check_data_source(cfg.data, "data (--data)")
        self.identity = run_identity(cfg)
        if (
            cfg.output_dir and rank == 0
        ):  # the output-folder rules (docs/training.md), before anything is written
            inputs = {
                "model": cfg.model,
                "ref_model": cfg.ref_model,
                "tokenizer": cfg.tokenizer,
                "data": cfg.data,
                "teacher": cfg.teacher,
            }
            prepare_output_dir(
                cfg.output_dir, self.identity, resume=cfg.resume, overwrite=cfg.overwrite, inputs=inputs
            )
        D.barrier(world)
        self.save_dtype = P.saved_dtype(cfg.dtype, P.source_dtype(cfg.model, cfg.trust_remote_code))
        self.compute = P.compute_dtype(cfg, device)
        self.autocast = P.autocast_factory(self.compute, device)
        self.scaler = P.grad_scaler(self.compute, device)  # fp16 on CUDA
        if cfg.load_in_4bit:
            model_path = str(cfg.model)
            model = P.load_4bit(cfg, model_path, self.compute or self.save_dtype, device)
        else:
            model, model_path = S.load_model(cfg, cfg.model, "model")
        tokenizer = S.load_tokenizer(cfg, model_path)
        self.tokenizer = tokenizer
        self.pad = S.pad_token_id(tokenizer, model)
        self.distiller, self.computed, distill_notes = None, frozenset(), []
        if cfg.teacher is not None:  # the distillation path (alignkit.train.teacher): checked before the data
            teacher, teacher_path = T.load_teacher(cfg, device)
            distill_notes = T.check_vocabulary(teacher, teacher_path, model, tokenizer, cfg.trust_remote_code)
            self.computed, more = T.offered_fields(obj, teacher, model)
            distill_notes += more
            self.distiller = T.Distiller(teacher, self.computed, self.pad, device)
        examples, report, plan = self._data(tokenizer, unwrap_model(model).config.vocab_size)
        plan.notes += distill_notes
        self.examples, self.plan = examples, plan
        if not cfg.load_in_4bit:  # a quantised model is placed by its device_map
            model.to(device)
        if cfg.lora:
            model = S.attach_lora(model, cfg)
        if cfg.gradient_checkpointing:
            unwrap_model(model).gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
            unwrap_model(model).config.use_cache = False
        model.train()
        self.model = model

        kind = S.reference_kind(cfg, obj, mode)
        ref_model, ref_path = S.reference_model(cfg, kind, model, device)
        n_dropout = 0
        if cfg.disable_dropout:
            n_dropout = S.disable_dropout(model, ref_model)
            if n_dropout and rank == 0:
                _log.info(
                    "alignkit: dropout disabled in %d module(s) (disable_dropout=True, as TRL)", n_dropout
                )
        self.layouter, self.fast = S.fast_paths(
            cfg.replace(packing=False) if self.distiller else cfg, model, ref_model, mode, pad=self.pad,
            device=device, stack=self.stack,
        )  # fmt: skip
        self.fast["distributed"] = self.dist
        if self.distiller is not None:
            self.fast["packing_off"] = "distillation: teacher and student run on padded rows"
        self.fast["dropout_disabled"] = n_dropout if cfg.disable_dropout else 0
        self.fast["compute_dtype"] = str(self.compute).removeprefix("torch.") if self.compute else "float32"
        self.fast["grad_scaler"] = self.compute is torch.float16 and device.type == "cuda"
        self.fast["saved_dtype"] = "adapter as peft keeps it" if cfg.lora else str(self.save_dtype)[6:]
        self.fast["load_in_4bit"] = bool(cfg.load_in_4bit)
        reference = Reference(kind, model if kind == "lora" else ref_model)
        if kind == "cache":
            S.fill_reference_cache(
                cfg, reference, examples, mode=mode, policy=model, policy_path=model_path, ref_model=ref_model,
                ref_path=ref_path, pad=self.pad, packed=self.layouter.packing, progress=cfg.progress and rank == 0,
            )  # fmt: skip
        self.reference = reference
        self.fast["reference"] = kind
        if rank == 0:
            self._announce_fast_paths(Path(cfg.output_dir) if cfg.output_dir else None)
            for note in plan.notes:
                _log.warning("alignkit: %s", note)

        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not params:
            raise UserError("the model has no trainable parameters")
        scorer = (
            T.DistillScorer(model) if self.distiller else PolicyScorer(model, not cfg.completion_only_head)
        )
        self.scorer = D.wrap(scorer, self.dist, device)
        params = [(n, p) for n, p in self.scorer.named_parameters() if p.requires_grad]  # sharded under FSDP
        groups = [
            {"params": [p for _, p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
            {"params": [p for _, p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        groups = [g for g in groups if g["params"]]
        if cfg.optimizer == "bloop":
            raise UserError(
                "optimizer 'bloop' combines a main and an auxiliary loss (Bloop.backward(main, aux)); the trainer has "
                "one loss. Use it through the Python API (alignkit.optim.Bloop)."
            )
        if cfg.optimizer != "adamw" or cfg.optimizer_kwargs:
            optimizer = build_optimizer(
                cfg.optimizer, groups, lr=cfg.learning_rate, betas=cfg.adam_betas, **cfg.optimizer_kwargs
            )
        elif self.dist == "fsdp":
            optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=cfg.adam_betas, foreach=False)
        else:
            optimizer = S.adamw(groups, cfg.learning_rate, cfg.adam_betas)
        if self.scaler is not None and needs_closure(optimizer):
            raise UserError(
                f"optimizer {cfg.optimizer!r} re-evaluates the loss (SAM); it does not run with --fp16"
            )
        self.g_batch = cfg.batch_size * cfg.grad_accum * world
        n_items = len(examples)
        total = (
            cfg.max_steps
            if cfg.max_steps is not None
            else max(1, math.ceil(cfg.epochs * n_items / self.g_batch))
        )
        warmup = int(round(cfg.warmup_ratio * total))
        schedule = lr_lambda(
            cfg.lr_scheduler,
            total,
            warmup,
            cfg.wsd_decay_ratio,
            cooldown=cfg.wsd_cooldown,
            min_ratio=cfg.wsd_min_ratio,
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        if self.distiller is not None and needs_closure(
            optimizer
        ):  # SAM's 2nd pass: the same teacher outputs
            self.distiller.keep = cfg.batch_size * cfg.grad_accum
        out_dir = Path(cfg.output_dir) if cfg.output_dir else None
        start, history, restored = self._resume(out_dir, optimizer, scheduler, total)
        self.state = _ObjectiveState(obj, restored)
        if out_dir is not None and rank == 0:
            import yaml

            (out_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
            report_d = {**report.to_dict(), "field_notes": plan.notes}
            (out_dir / "data_report.json").write_text(json.dumps(report_d, indent=1))
        D.barrier(world)

        self.ctx = TrainContext(
            config=cfg, model=model, ddp_model=self.scorer, optimizer=optimizer, scheduler=scheduler,
            objective=obj, hyper_parameters=self.hp, reference=reference, tokenizer=tokenizer, device=device,
            pad_token_id=self.pad, rank=rank, world_size=world, total_steps=total,
        )  # fmt: skip
        self._loop(start, total, history, optimizer, scheduler, out_dir, n_items)
        if out_dir is not None:
            self._save_final(out_dir, optimizer, scheduler, total, tokenizer)
            if rank == 0:  # with the run's packed / padded micro-batch counts
                (out_dir / "fast_paths.json").write_text(json.dumps(self.fast, indent=1))
        return TrainResult(
            model=model, tokenizer=tokenizer, history=history, output_dir=str(out_dir) if out_dir else None,
            seconds=time.time() - t0, data_report=report.to_dict(), reference=kind, fast_paths=dict(self.fast),
            notes=list(plan.notes),
        )  # fmt: skip

    def _data(self, tokenizer: Any, vocab: int) -> tuple[list[Example], Any, FieldPlan]:
        """Read the rows once, plan the objective's fields against their columns, tokenise."""
        cfg, mode = self.cfg, self.mode
        records = load_records(cfg.data, split=cfg.split, config=cfg.dataset_config)
        if cfg.ptst:
            records = load_records(S.ptst_train_rows(records, mode, tokenizer))
        columns = set.intersection(*(set(r.fields) for r in records)) if records else set()
        plan = plan_fields(
            self.obj, self.hp, mode=mode, columns=columns, online=mode == "online", computed=self.computed
        )
        if "objective_ids" in plan.columns:
            number_objectives(plan, [r.fields.get("objective") for r in records])
        prepared = prepare(
            records,
            mode="unpaired" if self.online == "scored" and mode != "online" else mode,
            tokenizer=tokenizer,
            max_length=cfg.max_length,
            max_prompt_length=cfg.max_prompt_length,
            max_completion_length=cfg.max_completion_length,
            truncation_mode=cfg.truncation_mode,
            num_proc=cfg.dataset_num_proc,
            skip_bad_rows=cfg.skip_bad_rows,
            vocab_size=vocab,
            with_kl=mode == "unpaired" and plan.wants("kl_logps"),
            kl_group=cfg.batch_size,
            assistant_turns=cfg.sft_assistant_turns,
            extra_columns=(lambda f: read_columns(f, plan)) if plan.columns else None,
        )
        return prepared.examples, prepared.report, plan

    def _resume(
        self, out_dir: Path | None, optimizer: Any, scheduler: Any, total: int
    ) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
        cfg, rank = self.cfg, self.rank
        start, history, restored = 0, [], {}  # the folder was made and cleaned by prepare_output_dir
        if cfg.resume:
            if out_dir is None:
                raise UserError("resume=True needs output_dir (where the checkpoints are)")
            point = find_resume_checkpoint(out_dir, identity=self.identity.fingerprint, total_steps=total)
            if point is None:
                _log.warning("resume=True but %s holds no checkpoint; starting from scratch", out_dir)
                return start, restore_history(out_dir, 0, rewrite=rank == 0), restored
            path = point.path
            if self.dist == "fsdp":
                D.load_sharded(path, self.scorer, optimizer)
                scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
                st = json.loads((path / "trainer_state.json").read_text())
                rng_file = path / f"rng_state_{rank}.pt"
                st["rng"] = torch.load(rng_file, weights_only=True) if rng_file.exists() else None
            else:
                st = load_checkpoint(path, self.model, optimizer, scheduler, rank)
            start, restored = st["step"], st.get("objective_state", {})
            if self.scaler is not None and st.get("grad_scaler"):
                self.scaler.load_state_dict(st["grad_scaler"])
            if st.get("rng") is not None:
                set_rng_state(st["rng"])
            history = restore_history(out_dir, start, rewrite=rank == 0)
        elif out_dir is not None and rank == 0 and (out_dir / "history.jsonl").exists():
            (out_dir / "history.jsonl").unlink()
        return start, history, restored

    # --- the loop ---------------------------------------------------------------------------------------------
    def _loop(
        self,
        start: int,
        total: int,
        history: list,
        optimizer: Any,
        scheduler: Any,
        out_dir: Path | None,
        n: int,
    ) -> None:
        cfg, ctx, rank, world = self.cfg, self.ctx, self.rank, self.world
        hooks = list(cfg.hooks or ())
        for h in hooks:
            h.on_train_begin(ctx)
        logger = RunLogger(cfg, out_dir, total, start, rank)
        perms: dict[int, list[int]] = {}

        lengths = [len(e.prompt_ids) + len(e.completion_ids or e.chosen_ids or []) for e in self.examples]

        def stream(i: int) -> int:
            epoch, off = divmod(i, n)
            if epoch not in perms:
                perms[epoch] = S.epoch_order(
                    lengths, self.g_batch, cfg.seed * 7919 + epoch, cfg.sorted_batching
                )
            return perms[epoch][off]

        trainable = [p for p in self.scorer.parameters() if p.requires_grad]
        try:
            for step in range(start + 1, total + 1):
                ts = time.time()
                ctx.step = step
                for h in hooks:
                    h.on_step_begin(ctx)
                global_idx = [stream(i) for i in range((step - 1) * self.g_batch, step * self.g_batch)]
                per_rank = cfg.batch_size * cfg.grad_accum
                local = [self.examples[i] for i in global_idx[rank * per_rank : (rank + 1) * per_rank]]
                groups, online = self._online(local, step)
                if online is not None:
                    local = online[0]
                metrics, tokens = self._accumulate(local, groups, hooks)
                if online is not None:
                    metrics["online/reward_mean"] = online[1]
                if self.scaler is not None:  # hooks and clipping see the true gradients
                    self.scaler.unscale_(optimizer)
                for h in hooks:
                    h.on_after_backward(ctx)
                clip = cfg.max_grad_norm if cfg.max_grad_norm else float("inf")
                grad_norm = float(torch.nn.utils.clip_grad_norm_(trainable, clip))
                lr = scheduler.get_last_lr()[0]
                if needs_closure(optimizer):  # SAM: the same micro-batches again at the perturbed weights

                    def closure(
                        local: list[Example] = local, groups: list[int] | None = groups, clip: float = clip
                    ) -> torch.Tensor:
                        loss = self._accumulate(local, groups, hooks, second_pass=True)[0]["loss"]
                        torch.nn.utils.clip_grad_norm_(trainable, clip)
                        return torch.tensor(loss)

                    optimizer.step(closure)
                elif self.scaler is not None:  # skips the step when the scaled gradients overflowed
                    self.scaler.step(optimizer)
                    self.scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                self.state.end_step(world)
                if world > 1:
                    metrics, tokens = self._reduce(metrics, tokens)
                record = {"step": step, "epoch": step * self.g_batch / n, "loss": metrics.pop("loss")}
                record.update(learning_rate=lr, grad_norm=grad_norm)
                record["tokens_per_second"] = tokens / max(time.time() - ts, 1e-9)
                record.update(metrics)
                record.update({f"state/{k}": float(v) for k, v in self.state.values.items()})
                for h in hooks:
                    h.on_step_end(ctx, record)
                history.append(record)
                logger.log(record, write=step % cfg.logging_steps == 0 or step == total)
                if out_dir is not None and cfg.save_steps and step % cfg.save_steps == 0 and step < total:
                    self._save(out_dir, step, optimizer, scheduler, total)
        finally:
            logger.close()
        for h in hooks:
            h.on_train_end(ctx)

    def _online(
        self, local: list[Example], step: int
    ) -> tuple[list[int] | None, tuple[list[Example], float] | None]:
        if self.online is None:
            return None, None
        seed = self.cfg.seed * 1_000_003 + step * 101 + self.rank
        with D.gathered(self.scorer, self.dist):
            if self.online == "pairs":
                pairs, mean = online_pairs(self.model, local, self.cfg, seed, self.pad)
                return None, (pairs, mean)
            scored, groups, mean = online_scored(self.model, local, self.cfg, seed, self.pad)
        return groups, (scored, mean)

    def _accumulate(
        self, local: list[Example], groups: list[int] | None, hooks: list[Any], second_pass: bool = False
    ) -> tuple[dict[str, float], float]:
        """Forward/backward every micro-batch of this rank, each weighted so the step equals one big batch.

        Per-example losses weigh a micro-batch by its share of the step's examples; per-token losses by its
        share of the step's target tokens (counted over every rank). A mix of both (``combine``) weighs each
        part by its own share. ``second_pass`` (SAM's closure): gradients only; state statistics are not added
        again."""
        obj, world = self.obj, self.world
        n_global = len(local) * world
        tok_local = sum(e.n_targets() for e in local)
        tok_global = D.all_reduce_sum({"t": tok_local}, world)["t"]
        sums: dict[str, float] = {}
        wsum: dict[str, float] = {}
        tokens = step_loss = 0.0
        micros = self._micro_batches(local, groups)
        for k, (micro, mgroups) in enumerate(micros):
            weights = {
                "example": len(micro) * world / n_global,
                "token": sum(e.n_targets() for e in micro) * world / max(tok_global, 1),
            }
            with D.no_sync(self.scorer, self.dist, last=k == len(micros) - 1):
                batch, n_tokens = self._build(micro, mgroups)
                tokens += n_tokens
                out = obj(batch, **{**self.hp, **self.state.values})
                parts = out.by_normalisation or {obj.normalisation: out.loss}
                loss = sum(weights[kind] * part for kind, part in parts.items())
                extras: dict[str, float] = {}
                if hooks:
                    mb = MicroBatch(micro, batch, weights[obj.normalisation])
                    for h in hooks:
                        extra = h.extra_loss(self.ctx, mb, out)
                        if extra is not None:
                            loss = loss + weights[obj.normalisation] * extra
                            extras[f"hook/{type(h).__name__}"] = float(extra.detach())
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            if not second_pass:
                self.state.add(out.state)
            step_loss += float(loss.detach())  # each part already carries its share of the step
            w = weights[obj.normalisation]
            for key, v in {**out.metrics, **extras}.items():
                sums[key] = sums.get(key, 0.0) + w * float(v)
                wsum[key] = wsum.get(key, 0.0) + w
        return {"loss": step_loss, **{k: sums[k] / wsum[k] for k in sums}}, tokens

    def _micro_batches(
        self, local: list[Example], groups: list[int] | None
    ) -> list[tuple[list[Example], list[int] | None]]:
        """``batch_size`` rows each (online samples: ``batch_size`` prompts' samples, never split), or
        (``token_budget``) consecutive runs of at most that many packed tokens."""
        cfg = self.cfg
        per = cfg.batch_size * (cfg.online_samples if self.online == "scored" else 1)
        if cfg.token_budget is None:
            return [
                (local[i : i + per], groups[i : i + per] if groups is not None else None)
                for i in range(0, len(local), per)
            ]
        shared = self.layouter.shared_prompt
        micros: list[tuple[list[Example], list[int] | None]] = []
        cur: list[int] = []
        used = 0
        for i, e in enumerate(local):
            if e.chosen_ids is not None:
                n = len(e.prompt_ids) + len(e.chosen_ids) + len(e.rejected_ids or [])
                n += 0 if shared and e.rejected_prompt_ids is None else len(e.rejected_prompt)
            else:
                n = len(e.prompt_ids) + len(e.completion_ids or [])
            if cur and used + n > cfg.token_budget:
                micros.append(([local[j] for j in cur], [groups[j] for j in cur] if groups else None))
                cur, used = [], 0
            cur.append(i)
            used += n
        if cur:
            micros.append(([local[j] for j in cur], [groups[j] for j in cur] if groups else None))
        return micros

    # --- one builder per mode: layout -> policy / reference / KL through one scorer -> the objective's batch ---
    def _policy(self, layout: Layout) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        with self.autocast():
            return self.scorer(layout, self.plan.wants("log_sum_sq_probs"))

    def _build(self, micro: list[Example], groups: list[int] | None) -> tuple[Any, float]:
        if self.distiller is not None:
            return self.distiller.build(self.scorer, micro, self.autocast)
        lay = self.layouter
        if self.mode == "paired" or self.online == "pairs":
            layout = lay.pairs(
                [e.prompt_ids for e in micro], [e.chosen_ids for e in micro], [e.rejected_ids for e in micro],
                [e.rejected_prompt for e in micro],
            )  # fmt: skip
            logps, mask, lss = self._policy(layout)
            batch = build_paired(logps, mask, lss, self.reference.logps(layout))
        elif self.mode == "sft":
            layout = lay.rows(
                [e.prompt_ids for e in micro],
                [e.completion_ids for e in micro],
                [e.target_mask for e in micro],
            )
            logps, mask, _ = self._policy(layout)
            return build_sft(logps, mask), layout.tokens
        else:
            layout = lay.rows([e.prompt_ids for e in micro], [e.completion_ids for e in micro])
            logps, mask, _ = self._policy(layout)
            kl = ref_kl = None
            if micro[0].kl_completion_ids is not None:
                kl_layout = lay.rows([e.prompt_ids for e in micro], [e.kl_completion_ids for e in micro])
                with torch.no_grad(), self.autocast():
                    kl = score(self.model, kl_layout).sums().float()
                kref = self.reference.logps(kl_layout)
                ref_kl = kref if kref.dim() == 1 else kref.double().sum(-1).float()
            labels = [e.label for e in micro]
            batch = build_unpaired(logps, mask, labels, self.reference.logps(layout), kl, ref_kl)
        return self.plan.extend(batch, micro, group_ids=groups), layout.tokens

    # --- saving ----------------------------------------------------------------------------------------------
    def _save(self, out_dir: Path, step: int, optimizer: Any, scheduler: Any, total: int) -> None:
        states: list[dict[str, Any]] = [rng_state()]
        if self.world > 1:
            import torch.distributed as dist

            gathered: list[Any] = [None] * self.world
            dist.all_gather_object(gathered, states[0])
            states = gathered
        trainer_state = {"step": step, "total_steps": total, "objective_state": self.state.values}
        if self.scaler is not None:
            trainer_state["grad_scaler"] = self.scaler.state_dict()
        if self.dist == "fsdp":
            self._save_fsdp(out_dir, step, optimizer, scheduler, trainer_state, states)
        elif self.rank == 0:
            save_checkpoint(
                out_dir,
                step,
                self.model,
                optimizer,
                scheduler,
                trainer_state,
                states,
                self.cfg.save_total_limit,
                identity=self.identity.fingerprint,
                dtype=self.save_dtype,
                tokenizer=self.tokenizer,
            )
        D.barrier(self.world)

    def _save_fsdp(
        self, out_dir: Path, step: int, optimizer: Any, scheduler: Any, trainer_state: dict, states: list
    ) -> None:
        """A sharded checkpoint written like the plain one: into a temporary folder renamed when complete."""
        import os
        import shutil

        final, tmp = out_dir / f"checkpoint-{step}", out_dir / f".tmp-checkpoint-{step}-fsdp"
        if self.rank == 0 and tmp.exists():
            shutil.rmtree(tmp)
        D.barrier(self.world)
        D.save_sharded(tmp, self.scorer, optimizer)
        full = D.full_state_dict(self.scorer)  # collective: the save_pretrained folder beside the shards
        if self.rank == 0:
            save_model_folder(unwrap_model(self.model), tmp, dtype=self.save_dtype, state_dict=full)
            if self.tokenizer is not None:
                self.tokenizer.save_pretrained(str(tmp))
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            for r, st in enumerate(states):
                torch.save(st, tmp / f"rng_state_{r}.pt")
            (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=1))
            write_manifest(
                tmp, step=step, total_steps=trainer_state["total_steps"], identity=self.identity.fingerprint
            )
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            limit = self.cfg.save_total_limit
            if limit:
                for _, p in list_checkpoints(out_dir)[:-limit]:
                    shutil.rmtree(p, ignore_errors=True)

    def _save_final(self, out_dir: Path, optimizer: Any, scheduler: Any, total: int, tokenizer: Any) -> None:
        if self.cfg.save_steps:
            self._save(out_dir, total, optimizer, scheduler, total)
        if self.dist == "fsdp":  # gathered on every rank (collective), written by rank 0
            state_dict = D.full_state_dict(self.scorer)
            if self.rank == 0:
                save_model_folder(
                    unwrap_model(self.model), out_dir, dtype=self.save_dtype, state_dict=state_dict
                )
        elif self.rank == 0:  # in the saved dtype (a bf16 model comes back bf16); LoRA: the adapter
            save_model_folder(self.model, out_dir, dtype=self.save_dtype)
        if self.rank == 0:
            if tokenizer is not None:
                tokenizer.save_pretrained(str(out_dir))
        D.barrier(self.world)

    def _announce_fast_paths(self, out_dir: Path | None) -> None:
        """The fast paths and precision chosen: logged; for a run with an output folder also printed once (stderr)
        and written to ``fast_paths.json`` (in-memory runs, as the arena's many, stay quiet)."""
        import sys

        shown = {k: v for k, v in self.fast.items() if not k.endswith("_micro_batches")}
        line = "alignkit fast paths: " + ", ".join(f"{k}={v}" for k, v in shown.items())
        _log.info(line)
        if out_dir is not None:
            print(line, file=sys.stderr)
            (out_dir / "fast_paths.json").write_text(json.dumps(self.fast, indent=1))

    def _reduce(self, metrics: dict[str, float], tokens: float) -> tuple[dict[str, float], float]:
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, (metrics, tokens))
        keys = dict.fromkeys(k for m, _ in gathered for k in m)
        out = {}
        for k in keys:
            vals = [m[k] for m, _ in gathered if k in m]
            out[k] = sum(vals) / len(vals)
        return out, sum(t for _, t in gathered)
