"""AED: alignment-enhanced decoding — per token, mix the model's logits with "post-alignment" logits of the same
model on a safety-reformatted context, with a weight driven by the competitive index (top-p nucleus size)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from alignkit.decoding._common import (
    CachedNextTokenLogits,
    DecodeContext,
    left_pad_mask,
    pad_id_of,
    sample_text,
)
from alignkit.registry import register

PAPER = (
    "Alignment-Enhanced Decoding: Defending via Token-Level Adaptive Refining of Probability Distributions"
)

SAFETY_PROMPT = (
    "System: You are a chat assistant designed to provide helpful and not harmful content.\n\n"
    "User: Complete the conversation.\n\nAssistant:"
)
STRATEGIES = ("interrupt", "sigmoid")

# Benign calibration prompts for S_thr, written for alignkit (the official code calibrates on 10 MMLU abstract
# algebra questions, ``defence()``: ``get_data("mmlu")[:10]``). Ordinary requests a chat model should answer;
# none of them is a prompt the defence is meant to act on. Format them like your prompts (chat template or
# ``"User: {q} Assistant:"``, the official ``prt1``) via ``calibration_texts`` if your prompts use a template.
CALIBRATION_PROMPTS: tuple[str, ...] = (
    "What is the capital of Australia?",
    "Explain in two sentences why the sky looks blue.",
    "Write a short poem about autumn leaves.",
    "How many minutes are there in three and a half hours?",
    "Give me three tips for keeping a houseplant healthy.",
    "Translate 'good morning, how are you?' into French.",
    "Which is larger, 2 to the power 10 or 10 to the power 3? Answer with a reason.",
    "Summarise the plot of Cinderella in one paragraph.",
    "Suggest a name for a friendly orange cat.",
    "What does a compiler do? Answer briefly.",
)


def nucleus_size(logits: Tensor, top_p: float = 0.9) -> Tensor:
    """S: the number of tokens in the top-p nucleus of ``softmax(logits)`` (the smallest prefix of the sorted
    distribution whose mass reaches ``top_p``; at least 1), per row of ``[..., V]``. Returns a long tensor."""
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1]; got {top_p}")
    p = torch.softmax(logits.float(), dim=-1).sort(dim=-1, descending=True).values
    before = p.cumsum(-1) - p  # mass strictly before each token
    return (before < top_p - 1e-12).sum(-1).clamp(min=1)


def competitive_index(logits: Tensor, threshold: float, top_p: float = 0.9) -> Tensor:
    """I = S / S_t: nucleus size over the calibrated threshold (I >= 1 flags competing objectives)."""
    if threshold <= 0:
        raise ValueError(f"threshold (S_t) must be > 0; got {threshold}")
    return nucleus_size(logits, top_p).float() / float(threshold)


def aed_merge(model_logits: Tensor, post_logits: Tensor, weight: Tensor | float) -> Tensor:
    """L = (1 - w) L_model + w L_post (``weight`` a scalar or a per-row ``[B]`` tensor)."""
    if model_logits.shape != post_logits.shape:
        raise ValueError(f"logits shapes differ: {tuple(model_logits.shape)} vs {tuple(post_logits.shape)}")
    w = torch.as_tensor(weight, dtype=model_logits.dtype, device=model_logits.device)
    if w.dim() == 1:
        w = w[:, None]
    return (1.0 - w) * model_logits + w * post_logits


def calibrate_threshold(model: nn.Module, tokenizer: Any, texts: Sequence[str], top_p: float = 0.9) -> int:
    """S_t: the largest next-token nucleus size of ``model`` over benign calibration ``texts`` (official
    ``get_bias``)."""
    if not texts:
        raise ValueError("texts is empty: calibration needs at least one benign text")
    best = 1
    with torch.no_grad():
        for t in texts:
            ids = torch.tensor([tokenizer(t, add_special_tokens=True)["input_ids"]])
            z = model(input_ids=ids, use_cache=False).logits[:, -1]
            best = max(best, int(nucleus_size(z, top_p).max()))
    return best


class AEDProcessor:
    """Logits processor: at each step runs ``model`` on the reformatted context (the last ``truncate`` prompt
    tokens and all generated ones, decoded to text and wrapped in ``safety_prompt``), and mixes those post-alignment
    logits in with the adaptive weight ``w_t`` (one state per row; reset with :meth:`reset`).

    The post-alignment pass keeps a KV cache across steps (:class:`CachedNextTokenLogits`: per row, the tokens
    of the re-encoded context that still match are reused, so a step runs about one new token per row). Set
    ``use_cache = False`` on an instance to re-run the whole re-formatted context every step (same logits)."""

    use_cache: bool = True

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        *,
        max_weight: float,
        threshold: float,
        top_p: float,
        decay: float,
        position: int,
        truncate: int | None,
        strategy: str,
        safety_prompt: str,
        pad_token_id: int,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}; got {strategy!r}")
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1]; got {decay}")
        if truncate is not None and truncate < 0:
            raise ValueError(f"truncate must be >= 0 or None; got {truncate}")
        self.model, self.tokenizer = model, tokenizer
        self.max_weight, self.threshold, self.top_p = float(max_weight), float(threshold), float(top_p)
        self.decay, self.position, self.truncate = float(decay), int(position), truncate
        self.strategy, self.safety_prompt, self.pad_token_id = strategy, safety_prompt, int(pad_token_id)
        self.reset()

    def reset(self) -> None:
        self.step = 0
        self.weights: Tensor | None = None
        self.history: list[Tensor] = []
        self._last_len = -1
        self._post = CachedNextTokenLogits(self.model, self.pad_token_id)

    def post_logits(self, input_ids: Tensor) -> Tensor:
        """Post-alignment logits ``[B, V]``: the same model on the safety-wrapped recent context."""
        mask = left_pad_mask(input_ids, self.pad_token_id).bool()
        texts = []
        for row, m in zip(input_ids, mask, strict=True):
            real = row[m].tolist()
            # official construct_ae_context: from (prompt length - truncate) on; None = the whole prompt
            start = 0 if self.truncate is None else max(0, len(real) - self.step - self.truncate)
            texts.append(self.tokenizer.decode(real[start:], skip_special_tokens=True))
        enc = [self.tokenizer(self.safety_prompt + t, add_special_tokens=True)["input_ids"] for t in texts]
        if self.use_cache:
            return self._post(enc)
        n = max(map(len, enc))
        ids = torch.full((len(enc), n), self.pad_token_id, dtype=torch.long)
        for i, e in enumerate(enc):
            ids[i, n - len(e) :] = torch.tensor(e)
        am = torch.zeros_like(ids)
        for i, e in enumerate(enc):
            am[i, n - len(e) :] = 1
        pos = (am.cumsum(-1) - 1).clamp(min=0)
        dev = next(self.model.parameters()).device
        with torch.no_grad():
            out = self.model(
                input_ids=ids.to(dev), attention_mask=am.to(dev), position_ids=pos.to(dev), use_cache=False
            )
        return out.logits[:, -1].float()

    def weight(self, model_logits: Tensor, post_logits: Tensor) -> Tensor:
        """w_t per row, updating the running state."""
        b = model_logits.shape[0]
        prev = self.weights if self.weights is not None and len(self.weights) == b else torch.zeros(b)
        s_orig = nucleus_size(model_logits, self.top_p).float().cpu()
        if self.strategy == "interrupt":
            active = (
                self.step <= self.position
            )  # official Weight.update: `if step > position: ATTACK = False`
            attack = (s_orig / self.threshold >= 1.0) & torch.tensor(active)
            w = torch.where(attack, torch.full_like(prev, self.max_weight), prev * self.decay)
        else:  # official topp_weight6 reads neither position nor decay
            s_post = nucleus_size(post_logits, self.top_p).float().cpu()
            w = self.max_weight * torch.sigmoid(s_orig - s_post - self.threshold)
        self.weights = w
        self.history.append(w.clone())
        return w

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        if input_ids.shape[1] != self._last_len + 1:  # a new batch of the sampler: fresh per-row state
            self.step, self.weights = 0, None
            self._post.reset()
        self._last_len = input_ids.shape[1]
        if self.max_weight == 0.0:
            self.step += 1
            return scores
        post = self.post_logits(input_ids).to(scores.device)
        w = self.weight(scores.float(), post).to(scores.device)
        self.step += 1
        return aed_merge(scores.float(), post, w).to(scores.dtype)


@register(
    name="aed",
    kind="decoder",
    family="logit_mixing",
    aliases=("alignment_enhanced_decoding",),
    paper=PAPER,
    arxiv="2408.07663",
    tags=("decoding", "training-free", "safety"),
    summary="mix logits with the model's own logits on a safety-wrapped context when the top-p nucleus is wide",
    verification="official-code-parity",
)
def aed(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    context: DecodeContext,
    *,
    max_weight: float = 1.0,
    threshold: float = 0.0,
    top_p: float = 0.9,
    decay: float = 0.9,
    position: int = 30,
    truncate: int | None = 0,
    strategy: str = "sigmoid",
) -> list[list[str]]:
    """Alignment-Enhanced Decoding: Defending via Token-Level Adaptive Refining of Probability Distributions
    (Liu, Zhou, He, Liu, Zhang, Su; EMNLP 2024, where "Defending Jailbreaks via"; arXiv:2408.07663) — AED.

    Training-free. At step t the original logits L_model come from the model on the full context; the
    post-alignment logits L_post from the *same* model on a re-formatted context (the last ``truncate`` prompt
    tokens and everything generated so far, decoded and wrapped in a safety system prompt — the model's
    "self-evaluation"). The Competitive Index I_t = S_t / S_thr (S_t = size of the top-p nucleus of the original
    distribution, S_thr = the largest nucleus measured on benign calibration texts) flags competing objectives.

    Formula:
        S_t = |top_p-nucleus(softmax(L_model,t))|,   S'_t = |top_p-nucleus(softmax(L_post,t))|
        sigmoid (default; official topp_weight6):  w_t = max_weight * sigmoid(S_t - S'_t - S_thr)
        interrupt (official sudden_interrupt):    w_t = max_weight if (S_t / S_thr >= 1 and t <= position)
                                                   else decay * w_{t-1},   w_0 = 0
        L_t = (1 - w_t) * L_model,t + w_t * L_post,t,   y_t ~ softmax(L_t)
        (max_weight = 0: the plain model; w_t = 1 at every step: the model under the safety prompt)

    Hyper-parameters:
        (defaults = the official ``defence()`` in GIGABaozi/AED ``utilz.py`` unless stated)
        max_weight: 1.0 — scale of w. ``defence()`` sets ``max_weight: 0.95`` in its config, but its strategy
            ``topp_weight6`` computes ``merge_weight = sigmoid(S - S' - bias)`` without reading it (only the
            ``warmup``/``sudden_interrupt`` strategies do); 1.0 reproduces that. For the interrupt strategy use
            ``max_weight=0.95`` (the config's value). 0 disables AED.
        threshold: S_thr, the bias (default 0.0 = calibrate: the largest top-p nucleus of the model at the end
            of each benign calibration text, official ``get_bias``). Texts: ``context.extra['calibration_texts']``,
            else :data:`CALIBRATION_PROMPTS` (10 benign prompts written for alignkit; the official code uses 10
            MMLU questions). The defended prompts are never used for calibration unless passed as
            ``calibration_texts`` (calibrating on them raises S_thr and weakens the defence).
        top_p: 0.9 — nucleus mass defining S (official ``topp``).
        decay: 0.9 — per-step decay of w in the interrupt strategy (official ``decay``; unused by topp_weight6).
        position: 30 — the interrupt strategy defends steps t <= position (official ``position``; topp_weight6
            ignores it).
        truncate: 0 — prompt tokens kept in the re-formatted context (``truncate: 0``: the official
            ``construct_ae_context`` starts at ``prompt length - truncate``, so only the generated tokens go in);
            None = the whole prompt.
        strategy: "sigmoid" (official ``weight_strategy: topp_weight6``) or "interrupt" (``sudden_interrupt``).

    Source: the official code GIGABaozi/AED ``utilz.py`` (``defence``, ``Weight.update``, ``merge_logits``:
    ``(1 - w) * origin + w * ae``; ``construct_ae_context``; ``add_system_prompt`` prompt "prt20", used as
    ``SAFETY_PROMPT``; ``get_bias``) and ``main.ipynb`` (which calls ``defence``), read. The tests restate
    ``Weight.update`` for both strategies. Departures: the official ``generate`` loop is batch size 1 — here
    each row keeps its own weight; the official calibration texts are MMLU questions in the model's prompt
    format, ours are :data:`CALIBRATION_PROMPTS` as given.
    """
    if max_weight < 0:
        raise ValueError(f"max_weight must be >= 0; got {max_weight}")
    if threshold == 0.0 and max_weight > 0:
        calib = context.extra.get("calibration_texts")
        calib = list(CALIBRATION_PROMPTS) if calib is None else list(calib)
        threshold = float(calibrate_threshold(model, tokenizer, calib, top_p))
    proc = AEDProcessor(
        model,
        tokenizer,
        max_weight=max_weight,
        threshold=threshold if threshold > 0 else math.inf,
        top_p=top_p,
        decay=decay,
        position=position,
        truncate=truncate,
        strategy=strategy,
        safety_prompt=str(context.extra.get("safety_prompt", SAFETY_PROMPT)),
        pad_token_id=pad_id_of(model, tokenizer),
    )
    return sample_text(model, tokenizer, prompts, logits_processor=proc, **context.sampling)
