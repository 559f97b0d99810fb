"""Online merging optimizers (OnDARE, OnTIES): merge every optimizer update with the SFT-minus-base delta.

``OnlineMergingOptimizer`` wraps any inner optimizer (``ondare``/``onties`` build it around AdamW, as the paper):
the inner optimizer proposes an update delta, the wrapper rolls it back and applies instead the merge of the
sparsified delta with the reference task vector tau_ref = theta_SFT - theta_base, fixed at construction::

    opt = alignkit.get("ondare")(policy.named_parameters(), base=Checkpoint(base_dir), reference=Checkpoint(sft_dir))
    loss.backward(); opt.step(); opt.zero_grad()
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch

from alignkit.merging.checkpoint import StateDict, source_of
from alignkit.merging.dare import dare_sparsify
from alignkit.registry import register

PAPER = "Online Merging Optimizers for Boosting Rewards and Mitigating Tax in Alignment"


def topk_sparsify(delta: torch.Tensor, reserve_p: float, *, rescale: bool = False) -> torch.Tensor:
    """Keep the ``int(reserve_p * numel)`` largest-magnitude entries (official ``magnitude_mask_``).

    As the official code: nothing is dropped when ``reserve_p >= 1`` or when that count is below 1; with
    ``rescale`` the kept entries are scaled by ``||delta||_1 / ||kept||_1`` (when ``||delta||_1 >= 1e-8``).
    """
    k = int(reserve_p * delta.numel())
    if reserve_p >= 1 or k < 1:
        return delta
    top = torch.argsort(delta.reshape(-1).abs(), descending=True)[:k]
    mask = torch.zeros(delta.numel(), dtype=delta.dtype, device=delta.device)
    mask[top] = 1
    out = delta * mask.reshape(delta.shape)
    org = delta.abs().sum()
    if rescale and org >= 1e-8:
        out = out * (org / out.abs().sum())
    return out


class OnlineMergingOptimizer(torch.optim.Optimizer):
    """Wraps ``inner``; every ``online_step``-th step replaces the accumulated update by its online merge.

    mode "dare" (OnDARE):  delta~ = DARE(delta, keep prob reserve_p)   [rescaled by 1/reserve_p]
                           (rescale: delta~ *= ||delta||_1 / (||delta~||_1 + eps), clamped to +-clip_val)
                           theta += alpha * tau_ref + (1 - alpha) * delta~        (use_merge)
                           theta += delta~                                        (not use_merge)
    mode "ties" (OnTIES):  delta~ = top-reserve_p magnitudes of delta
                           s = sgn(tau_ref + delta~) (>= 0 -> +1); zero the entries of tau_ref, delta~ whose sign != s
                           theta += alpha * tau_ref' + (1 - alpha) * delta~'      (use_merge; else theta += delta~')
    then decoupled weight decay theta -= lr * weight_decay * theta.
    tau_ref (built once): DARE(theta_ref - theta_base, reserve_p) clamped to +-clip_val ("dare"), or its top
    reserve_p magnitudes ("ties", L1-rescaled if ``rescale``), as the official ``init_ref_param_diff``.

    Parameters whose ``grad`` is None at a step are not touched. ``state_dict`` holds the inner optimizer's.
    """

    def __init__(
        self,
        inner: torch.optim.Optimizer,
        named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
        base: StateDict,
        reference: StateDict,
        *,
        mode: Literal["dare", "ties"],
        reserve_p: float,
        alpha: float,
        use_merge: bool = True,
        rescale: bool = False,
        clip_val: float = 1.0,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        online_step: int = 1,
        seed: int | None = 0,
    ) -> None:
        if mode not in ("dare", "ties"):
            raise ValueError(f"mode must be 'dare' or 'ties', got {mode!r}")
        if not 0.0 < reserve_p <= 1.0:
            raise ValueError(f"reserve_p must be in (0, 1], got {reserve_p}")
        if online_step < 1:
            raise ValueError(f"online_step must be >= 1, got {online_step}")
        named = [(n, p) for n, p in named_parameters if p.requires_grad]
        super().__init__([p for _, p in named], {})
        self.param_groups = inner.param_groups  # share groups so LR schedulers drive the inner optimizer
        self.inner = inner
        self.mode, self.reserve_p, self.alpha, self.use_merge = mode, reserve_p, alpha, use_merge
        self.rescale, self.clip_val, self.eps, self.weight_decay = rescale, clip_val, eps, weight_decay
        self.online_step, self.seed, self._steps = online_step, seed, 0
        self._generators: dict[torch.device, torch.Generator] = {}
        inner_params = {id(p) for g in inner.param_groups for p in g["params"]}
        with torch.no_grad():
            for name, p in named:
                if id(p) not in inner_params:
                    raise ValueError(f"parameter {name!r} is not optimised by the inner optimizer")
                for sd, what in ((base, "base"), (reference, "reference")):
                    if name not in sd:
                        raise ValueError(f"{source_of(sd, what)}: missing tensor {name!r}")
                    if tuple(sd[name].shape) != tuple(p.shape):
                        raise ValueError(
                            f"{source_of(sd, what)}: tensor {name!r} has shape {list(sd[name].shape)} "
                            f"but the parameter has {list(p.shape)}"
                        )
                tau = reference[name].to(p.device, p.dtype) - base[name].to(p.device, p.dtype)
                if mode == "dare":
                    tau = dare_sparsify(tau, reserve_p, generator=self._gen(p.device)).clamp(
                        -clip_val, clip_val
                    )
                else:
                    tau = topk_sparsify(tau, reserve_p, rescale=rescale)
                self.state[p]["tau_ref"] = tau

    def _gen(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def merged_update(self, tau_ref: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """The update that replaces the optimizer's ``delta`` (see the class docstring)."""
        if self.mode == "dare":
            org = delta.abs().sum()
            d = dare_sparsify(delta, self.reserve_p, generator=self._gen(delta.device))
            if self.rescale and org >= 1e-8:
                d = (d * (org / (d.abs().sum() + self.eps))).clamp(-self.clip_val, self.clip_val)
            return self.alpha * tau_ref + (1 - self.alpha) * d if self.use_merge else d
        d = topk_sparsify(delta, self.reserve_p, rescale=self.rescale)
        stacked = torch.stack([tau_ref, d])
        sign = torch.where(stacked.sum(dim=0) >= 0, 1.0, -1.0).to(stacked.dtype)
        stacked = stacked * (stacked.sign() == sign)
        return self.alpha * stacked[0] + (1 - self.alpha) * stacked[1] if self.use_merge else stacked[1]

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        active = [
            (g, p, p.detach().clone()) for g in self.param_groups for p in g["params"] if p.grad is not None
        ]
        self.inner.step()
        self._steps += 1
        merging = self._steps % self.online_step == 0
        for group, p, before in active:
            if p not in self.state or "tau_ref" not in self.state[p]:
                continue
            st = self.state[p]
            delta = p - before
            anchor = before
            if self.online_step > 1:
                cached = st.setdefault("cached_delta", torch.zeros_like(p))
                if not merging:  # plain step, remember its update for the next merge
                    cached.add_(delta)
                    self._decay(p, group)
                    continue
                anchor = before - cached  # roll back to the last merge point
                delta = delta + cached
                cached.zero_()
            p.copy_(anchor + self.merged_update(st["tau_ref"], delta))
            self._decay(p, group)
        return loss

    def _decay(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        if self.weight_decay > 0:
            p.add_(p, alpha=-group["lr"] * self.weight_decay)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict(), "steps": self._steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.inner.load_state_dict(state_dict["inner"])
        self._steps = int(state_dict["steps"])


def _build(
    mode: Literal["dare", "ties"],
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
    base: StateDict,
    reference: StateDict,
    inner: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer] | None,
    lr: float,
    betas: tuple[float, float],
    eps: float,
    **kw: Any,
) -> OnlineMergingOptimizer:
    named = [(n, p) for n, p in named_parameters if p.requires_grad]
    params = [p for _, p in named]
    opt = (
        inner(params)
        if inner is not None
        else torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=0.0)
    )
    return OnlineMergingOptimizer(opt, named, base, reference, mode=mode, eps=eps, **kw)


@register(
    name="ondare",
    verification="paper-formula",
    kind="optimizer",
    family="online_merging",
    aliases=("online_dare",),
    paper=PAPER,
    arxiv="2405.17931",
    summary="AdamW whose every update is DARE-sparsified and merged with the SFT-minus-base delta",
)
def ondare(
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
    base: StateDict,
    reference: StateDict,
    *,
    lr: float = 1e-6,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    reserve_p: float = 0.01,
    alpha: float = 1e-7,
    use_merge: bool = True,
    rescale: bool = False,
    clip_val: float = 1.0,
    online_step: int = 1,
    seed: int | None = 0,
    inner: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer] | None = None,
) -> OnlineMergingOptimizer:
    """Online Merging Optimizers for Boosting Rewards and Mitigating Tax in Alignment (Lu et al., Qwen 2024;
    arXiv:2405.17931) — OnDARE.

    At every RLHF/DPO optimisation step the policy's update is merged with the reference task vector
    (SFT minus pre-trained base), steering training toward reward along the SFT direction and reducing the
    alignment tax. OnDARE sparsifies the update by DARE (random drop, rescale).

    Formula:
        tau_ref  = clamp(DARE(theta_SFT - theta_base, keep reserve_p), -clip_val, clip_val)   (once)
        delta_t  = AdamW update at step t       (inner optimizer; rolled back)
        delta~_t = DARE(delta_t, keep reserve_p) = Bernoulli(reserve_p) mask * delta_t / reserve_p
        theta   <- theta + alpha * tau_ref + (1 - alpha) * delta~_t       (use_merge; else theta + delta~_t)
        theta   <- theta - lr * weight_decay * theta

    Hyper-parameters:
        lr: learning rate (default 1e-6, the official ``run_dpo_om.sh`` for Qwen DPO).
        betas: Adam betas (default (0.9, 0.999), torch AdamW's).
        eps: Adam epsilon and the rescale guard (default 1e-6, the official class default).
        weight_decay: decoupled weight decay applied after the merge (default 0.0, ours: off).
        reserve_p: fraction of entries kept (default 0.01, official script).
        alpha: merging rate of tau_ref (default 1e-7, official script).
        use_merge: add tau_ref each step (default True, official script ``USE_EMA=True``).
        rescale: L1-rescale the sparsified update and clamp it to +-clip_val (default False, official script).
        clip_val: clamp of tau_ref and the rescaled update (default 1.0, official class default).
        online_step: merge every k steps, plain steps in between, accumulated update merged (default 1, ours:
            every step, the paper's online merging).
        seed: seed of the DARE masks (default 0; None uses torch's global generator).
            Operational (alignkit's interface, not a paper hyper-parameter).
        inner: factory ``params -> Optimizer`` for the inner optimizer (default None = torch AdamW with
            weight_decay 0; the wrapper applies ``weight_decay`` itself).

    Source: the official code ``QwenLM/online_merging_optimizers`` (``online_merging/optimizers.py``: ``ODAdamW``
    ``init_ref_param_diff`` and ``step``; ``LLaMA-Factory/run_dpo_om.sh``) was read. Differences: the inner
    update is torch's AdamW (eps added to sqrt(v_hat); the official HF-style AdamW adds eps before bias
    correction); with online_step > 1 the official code returns after the first parameter on non-merging steps
    (a bug), alignkit updates every parameter.
    """
    return _build(
        "dare", named_parameters, base, reference, inner, lr, betas, eps,
        reserve_p=reserve_p, alpha=alpha, use_merge=use_merge, rescale=rescale, clip_val=clip_val,
        weight_decay=weight_decay, online_step=online_step, seed=seed,
    )  # fmt: skip


@register(
    name="onties",
    verification="paper-formula",
    kind="optimizer",
    family="online_merging",
    aliases=("online_ties",),
    paper=PAPER,
    arxiv="2405.17931",
    summary="AdamW whose every update is top-k trimmed and TIES-merged with the SFT-minus-base delta",
)
def onties(
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]],
    base: StateDict,
    reference: StateDict,
    *,
    lr: float = 1e-6,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    reserve_p: float = 0.01,
    alpha: float = 1e-7,
    use_merge: bool = True,
    rescale: bool = False,
    online_step: int = 1,
    inner: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer] | None = None,
) -> OnlineMergingOptimizer:
    """Online Merging Optimizers for Boosting Rewards and Mitigating Tax in Alignment (Lu et al., Qwen 2024;
    arXiv:2405.17931) — OnTIES.

    As OnDARE, with TIES-merging inside the step: the update is trimmed to its largest magnitudes and merged
    with the reference task vector by sign consensus.

    Formula:
        tau_ref  = top-reserve_p magnitudes of (theta_SFT - theta_base)              (once)
        delta~_t = top-reserve_p magnitudes of the AdamW update delta_t
        s        = sgn(tau_ref + delta~_t)   (>= 0 -> +1)
        tau'     = tau_ref * 1[sgn(tau_ref) = s],   delta' = delta~_t * 1[sgn(delta~_t) = s]
        theta   <- theta + alpha * tau' + (1 - alpha) * delta'        (use_merge; else theta + delta')
        theta   <- theta - lr * weight_decay * theta

    Hyper-parameters:
        lr: learning rate (default 1e-6, official ``run_dpo_om.sh``).
        betas: Adam betas (default (0.9, 0.999), torch AdamW's).
        eps: Adam epsilon (default 1e-6, official class default).
        weight_decay: decoupled weight decay applied after the merge (default 0.0, ours: off).
        reserve_p: fraction of entries kept (default 0.01, official script).
        alpha: merging weight of tau_ref (default 1e-7, official script).
        use_merge: add tau' each step (default True, official script).
        rescale: L1-rescale the trimmed vectors (default False, official script).
        online_step: merge every k steps (default 1, ours: every step, as ``ondare``).
        inner: factory ``params -> Optimizer`` (default None = torch AdamW, weight_decay 0).

    Source: official ``OTAdamW`` (``magnitude_mask_``, ``step``) in ``QwenLM/online_merging_optimizers`` was
    read; same differences as ``ondare``. As the official code, a tensor whose kept count
    ``int(reserve_p * numel)`` is below 1 is not trimmed at all.
    """
    return _build(
        "ties", named_parameters, base, reference, inner, lr, betas, eps,
        reserve_p=reserve_p, alpha=alpha, use_merge=use_merge, rescale=rescale,
        weight_decay=weight_decay, online_step=online_step, seed=None,
    )  # fmt: skip
