"""Batched, seeded sampling from a causal LM (left padding + KV cache through ``model.generate``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from alignkit.engine._progress import make_progress
from alignkit.engine.logprobs import model_device, unwrap_model


def _generation_model(model: nn.Module) -> nn.Module:
    """A module with ``.generate`` (peft models keep theirs so adapters stay active)."""
    if hasattr(model, "generate"):
        return model
    inner = model.module if hasattr(model, "module") else unwrap_model(model)
    return inner


def sample(
    model: nn.Module,
    prompt_ids: list[list[int]],
    *,
    num_samples: int = 1,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    batch_size: int = 256,
    seed: int = 0,
    eos_token_id: int | list[int] | None = None,
    pad_token_id: int | None = None,
    progress: bool = True,
    description: str = "sampling",
    logits_processor: Any = None,
) -> list[list[list[int]]]:
    """Sample ``num_samples`` completions per prompt: ``out[prompt][sample]`` is a list of new token ids.

    The prompt is not included; a completion ends just after its first EOS token (kept). ``temperature=0`` is
    greedy decoding; ``top_k=0`` and ``top_p=1`` disable those filters. Deterministic given ``seed`` (each batch
    reseeds a forked RNG, so the global RNG is untouched).

    ``logits_processor`` (optional): a callable ``(input_ids, scores) -> scores`` or a list of them, applied at
    every step to the next-token logits of the whole (left-padded) sequence batch before temperature/top-k/top-p
    (the hook decoding-time methods use, see ``alignkit.decoding``). ``None`` leaves sampling unchanged.
    """
    return _sample(
        model,
        prompt_ids,
        num_samples=num_samples,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        batch_size=batch_size,
        seed=seed,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        progress=progress,
        description=description,
        logits_processor=logits_processor,
        want_logps=False,
    )[0]


def sample_with_logps(
    model: nn.Module, prompt_ids: list[list[int]], **kwargs: Any
) -> tuple[list[list[list[int]]], list[list[float]]]:
    """:func:`sample`, and the policy's own summed log-probability of each completion, ``logps[prompt][sample]``
    (``log pi(y | x)`` from the unprocessed logits of the sampling pass, EOS included, before temperature, top-k/p
    or ``logits_processor``): what a separate forward pass over the samples would give, to float rounding of the
    KV cache, without that pass. Keyword arguments are :func:`sample`'s; the completions are exactly its own."""
    return _sample(model, prompt_ids, want_logps=True, **kwargs)


def _sample(
    model: nn.Module,
    prompt_ids: list[list[int]],
    *,
    num_samples: int = 1,
    max_new_tokens: int = 32,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
    batch_size: int = 256,
    seed: int = 0,
    eos_token_id: int | list[int] | None = None,
    pad_token_id: int | None = None,
    progress: bool = True,
    description: str = "sampling",
    logits_processor: Any = None,
    want_logps: bool,
) -> tuple[list[list[list[int]]], list[list[float]]]:
    from transformers import GenerationConfig

    for i, p in enumerate(prompt_ids):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty: generation needs at least one prompt token")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1; got {num_samples}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0; got {temperature}")
    gen_model = _generation_model(model)
    base = unwrap_model(model)
    cfg = base.config
    if eos_token_id is None:
        eos_token_id = getattr(base.generation_config, "eos_token_id", None) or getattr(
            cfg, "eos_token_id", None
        )
    eos_set = set(
        eos_token_id if isinstance(eos_token_id, list) else [eos_token_id] if eos_token_id is not None else []
    )
    if pad_token_id is None:
        pad_token_id = getattr(cfg, "pad_token_id", None)
        if pad_token_id is None:
            pad_token_id = min(eos_set) if eos_set else 0
    greedy = temperature == 0
    gen_kwargs: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens,
        do_sample=not greedy,
        pad_token_id=pad_token_id,
        eos_token_id=eos_token_id,
        num_return_sequences=num_samples,
    )
    if not greedy:
        gen_kwargs.update(temperature=temperature, top_p=top_p, top_k=top_k)
    if want_logps:  # the raw (unprocessed) next-token logits of every step, for the model's own log-probs
        gen_kwargs.update(output_logits=True, return_dict_in_generate=True)
    gconf = GenerationConfig(**gen_kwargs)
    extra: dict[str, Any] = {}
    if logits_processor is not None:
        from transformers import LogitsProcessorList

        procs = logits_processor if isinstance(logits_processor, (list, tuple)) else [logits_processor]
        extra["logits_processor"] = LogitsProcessorList(procs)
    device = model_device(model)
    # Every prompt is repeated num_samples times by generate; batch over prompts.
    per_batch = max(1, batch_size // num_samples)
    out: list[list[list[int]]] = []
    logps: list[list[float]] = []
    was_training = gen_model.training
    gen_model.eval()
    try:
        with make_progress(disable=not progress) as bar:
            task = bar.add_task(description, total=len(prompt_ids))
            for b, s in enumerate(range(0, len(prompt_ids), per_batch)):
                chunk = prompt_ids[s : s + per_batch]
                width = max(len(p) for p in chunk)
                ids = torch.full((len(chunk), width), pad_token_id, dtype=torch.long)
                att = torch.zeros((len(chunk), width), dtype=torch.long)
                for i, p in enumerate(chunk):
                    ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
                    att[i, width - len(p) :] = 1
                devices = [device] if device.type == "cuda" else []
                with torch.random.fork_rng(devices=devices), torch.no_grad():
                    torch.manual_seed(seed * 1_000_003 + b)
                    gen = gen_model.generate(
                        input_ids=ids.to(device),
                        attention_mask=att.to(device),
                        generation_config=gconf,
                        **extra,
                    )
                seqs = gen.sequences if want_logps else gen
                new = seqs[:, width:].tolist()
                token_logps = _sampled_token_logps(gen.logits, seqs[:, width:]) if want_logps else None
                for i in range(len(chunk)):
                    samples, sums = [], []
                    for j in range(num_samples):
                        toks = new[i * num_samples + j]
                        cut = next((k for k, t in enumerate(toks) if t in eos_set), None)
                        if cut is not None:
                            toks = toks[: cut + 1]
                        samples.append(toks)
                        if token_logps is not None:
                            sums.append(float(token_logps[i * num_samples + j, : len(toks)].sum()))
                    out.append(samples)
                    logps.append(sums)
                bar.advance(task, len(chunk))
    finally:
        gen_model.train(was_training)
    return out, logps


def _sampled_token_logps(logits: tuple[torch.Tensor, ...], tokens: torch.Tensor) -> torch.Tensor:
    """``(rows, steps)`` log-softmax of each step's raw logits at the token sampled there (zeros past a row's end,
    where generation stopped early for every row)."""
    out = torch.zeros(tokens.shape, dtype=torch.float32)
    for t, step in enumerate(logits):
        lp = torch.log_softmax(step.float(), dim=-1)
        out[:, t] = lp.gather(1, tokens[:, t : t + 1].to(lp.device)).squeeze(1).cpu()
    return out


def generate(model: nn.Module, tokenizer: Any, prompts: list[str], **kwargs: Any) -> list[list[str]]:
    """Text in, text out: ``out[prompt][sample]`` decoded completions (special tokens skipped).

    Keyword arguments are :func:`sample`'s; EOS/pad default to the tokenizer's.
    """
    ids = [tokenizer(p, add_special_tokens=True)["input_ids"] for p in prompts]
    kwargs.setdefault("eos_token_id", tokenizer.eos_token_id)
    if kwargs.get("pad_token_id") is None:
        kwargs["pad_token_id"] = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
    comps = sample(model, ids, **kwargs)
    return [[tokenizer.decode(c, skip_special_tokens=True) for c in per] for per in comps]
