"""Slow effect tests of the seed objectives on the testbed (issue #6): Goldfish vs SFT memorisation, DCO vs
cross-entropy pass@N under longer training, iREPO / Pairwise Cringe vs DPO in the arena.

Each test prints its measured numbers (run with ``-s``); docs/claims.md quotes them."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from alignkit.eval.metrics import bootstrap_ci, pass_at_k
from alignkit.objectives.sft.goldfish import goldfish_mask
from alignkit.registry import get
from alignkit.train import Hook, MicroBatch, TrainContext
from alignkit.types import LossOutput, SFTBatch
from tests.claims_io import record_claims
from tests.effect import effect_base_config, train_policy

pytestmark = pytest.mark.slow


class GoldfishHook(Hook):
    """Turns an ``sft`` run into a Goldfish-loss run: the loss is recomputed on the goldfish keep-mask of the
    completion tokens, and the hook's extra loss is (goldfish loss - plain loss), so the step's gradient is the
    goldfish loss's alone."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def extra_loss(self, ctx: TrainContext, micro: MicroBatch, out: LossOutput) -> torch.Tensor:
        batch = micro.batch
        mask = batch.mask
        comps = [list(e.completion_ids) for e in micro.examples]
        ids = torch.zeros(len(comps), max(len(c) for c in comps), dtype=torch.long)
        for i, c in enumerate(comps):
            ids[i, : len(c)] = torch.tensor(c)
        keep_c = goldfish_mask(ids, **self.kwargs)
        keep = torch.ones_like(mask)
        for i, c in enumerate(comps):
            pos = mask[i].nonzero().squeeze(-1)  # the completion tokens' positions, in order
            assert pos.numel() == len(c)
            keep[i, pos] = keep_c[i, : len(c)].to(mask.dtype)
        return get("sft")(SFTBatch(logps=batch.logps, mask=mask * keep)).loss - out.loss


def _memorisation(model: Any, passages: list[list[int]], bos: int, prefix: int) -> dict[str, float]:
    """Greedy continuation of each training passage from its first ``prefix`` tokens: the share of continuation
    tokens matched position by position, and the share of passages reproduced exactly."""
    from alignkit.engine.generation import sample

    model.eval()
    outs = sample(
        model,
        [[bos, *p[:prefix]] for p in passages],
        num_samples=1,
        max_new_tokens=len(passages[0]) - prefix,
        temperature=0,
        progress=False,
    )
    tok_acc, exact = [], []
    for p, o in zip(passages, outs, strict=True):
        target, got = p[prefix:], o[0]
        tok_acc.append(sum(a == b for a, b in zip(got, target, strict=False)) / len(target))
        exact.append(float(got[: len(target)] == target))
    return {
        "token_match": sum(tok_acc) / len(tok_acc),
        "token_match_ci95": bootstrap_ci(tok_acc),
        "exact": sum(exact) / len(exact),
    }


def test_goldfish_reduces_verbatim_reproduction(effect_sentiment):
    """16 held-out Shakespeare passages of 48 tokens, 150 steps at lr 1e-3 (~9 epochs), greedy continuation from
    a 16-token prefix, training seeds 0, 1, 2 (the seed orders the batches; SFT and Goldfish share the passages,
    so they pair by seed). Per seed: the share of continuation tokens matched and of passages reproduced exactly;
    across seeds: the mean and 95% t-interval, and the paired SFT - Goldfish difference with its t-test p-value.
    Figures: docs/claims/results/seed_goldfish.json (rendered in docs/claims.md)."""
    from alignkit.eval.metrics import seed_interval
    from alignkit.testbed import get_task
    from tests.effect import TRAINING_SEEDS, paired_by_seed

    base = effect_sentiment
    tok = base.tokenizer
    text = get_task("sentiment").heldout_documents(base.config)[0]
    ids = tok(text, add_special_tokens=False)["input_ids"]
    length, prefix, n = 48, 16, 16
    passages = [ids[2000 + i * length : 2000 + (i + 1) * length] for i in range(n)]
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    rows = [{"prompt_ids": [bos], "completion_ids": p} for p in passages]
    base_res = _memorisation(base.model, passages, bos, prefix)
    res: dict[str, list[dict[str, float]]] = {"sft": [], "goldfish": []}
    for seed in TRAINING_SEEDS:
        for name, hooks in (("sft", ()), ("goldfish", (GoldfishHook(k=4, h=13),))):
            model = train_policy(
                base,
                rows,
                objective="sft",
                mode="sft",
                steps=150,
                batch_size=8,
                learning_rate=1e-3,
                lr_scheduler="constant",
                warmup_ratio=0.0,
                hooks=hooks,
                seed=seed,
            )
            res[name].append(_memorisation(model, passages, bos, prefix))
    match = {k: [r["token_match"] for r in v] for k, v in res.items()}
    verbatim = {k: [round(r["exact"] * n) for r in v] for k, v in res.items()}
    iv = {k: seed_interval(v) for k, v in match.items()}
    gap = paired_by_seed(match["sft"], match["goldfish"])
    print("goldfish memorisation:", base_res, iv, verbatim, gap)
    record_claims(
        "seed_goldfish",
        {
            "passages": n,
            "base_match": base_res["token_match"],
            **{f"{k}_match": iv[k]["mean"] for k in iv},
            **{f"{k}_match_ci": iv[k]["ci95"] for k in iv},
            **{f"{k}_match_seeds": iv[k]["values"] for k in iv},
            **{f"{k}_verbatim_seeds": verbatim[k] for k in verbatim},
            "sft_minus_goldfish": gap["mean"],
            "sft_minus_goldfish_ci": gap["ci95"],
            "p_sft_vs_goldfish": gap["p"],
        },
        # run-to-run noise (reduction order) moves a greedy token now and then; the t-interval's ends amplify it
        tolerance={"base_match": 0.01, "sft_verbatim_seeds": 0.1, "goldfish_verbatim_seeds": 0.1}
        | {k: 0.03 for k in ("sft_match", "goldfish_match", "sft_match_seeds", "goldfish_match_seeds")}
        | {
            k: 0.05
            for k in ("sft_match_ci", "goldfish_match_ci", "sft_minus_goldfish", "sft_minus_goldfish_ci")
        },
    )
    assert min(match["sft"]) > 0.6 and min(verbatim["sft"]) >= n // 2  # plain SFT memorised, on every seed
    assert iv["goldfish"]["ci95"][1] < iv["sft"]["ci95"][0]  # non-overlapping across-seed intervals
    assert gap["ci95"][0] > 0.3  # paired by seed: Goldfish matches far fewer tokens
    assert all(g <= s - n * 0.4 for g, s in zip(verbatim["goldfish"], verbatim["sft"], strict=True))


def _pass_at(model: Any, tok: Any, task: Any, prompts: list[Any], n: int) -> dict[str, float]:
    from alignkit.eval import sample_and_score

    model.eval()
    s = sample_and_score(model, tok, task, prompts, num_samples=n, seed=1, progress=False)
    p1 = [pass_at_k(n, int(sum(x > 0.5 for x in r)), 1) for r in s.rewards]
    pn = [pass_at_k(n, int(sum(x > 0.5 for x in r)), n) for r in s.rewards]
    return {
        "pass@1": sum(p1) / len(p1),
        f"pass@{n}": sum(pn) / len(pn),
        f"pass@{n}_ci95": bootstrap_ci(pn),
    }


def test_dco_vs_cross_entropy_pass_at_n_with_longer_training(effect_cache):
    """DCO's claim (arXiv:2502.07154): longer cross-entropy training makes pass@N fall (over-confidence) while DCO
    keeps it. Here: 2-digit arith (the 3-digit effect base reaches pass@16 of only ~0.01), the effect-size
    base (cached under its ``max_digits`` tag), 2000 train problems, 200 held-out eval problems, N = 16, lr 1e-3
    constant, batch 32, training seeds 0, 1, 2 (the seed orders the batches; the three arms share data and seed, so
    they pair by seed). Per arm: the mean pass@16 and its 95% Student-t interval across seeds; CE 400 - CE 40 and
    DCO 400 - CE 400 paired by seed, with the paired t-test p-value of the latter.
    Measured: docs/claims/results/seed_dco.json (rendered in docs/claims.md). On the shipped effect base
    (2026-12-03): pass@16 CE 40 steps 0.070, CE 400 steps 0.162, DCO 400 steps 0.157; CE 400 - CE 40 +0.092
    [0.034, 0.149]; DCO - CE at 400 steps -0.005 [-0.179, 0.169].
    NOT HELD at this scale: CE's pass@16 rises with 10x longer training, and DCO is no better than CE."""
    from alignkit.eval.metrics import seed_interval
    from alignkit.testbed import get_base_model
    from alignkit.testbed.tasks import ArithTask
    from tests.effect import TRAINING_SEEDS, paired_by_seed

    task = ArithTask(max_digits=2, curriculum=False)
    base = get_base_model(task, effect_base_config("arith"), cache_dir=effect_cache, progress=False)
    tok = base.tokenizer
    eos = tok.eos_token_id
    rows = [
        {
            "prompt_ids": p.ids,
            "completion_ids": [*tok(str(p.meta["answer"]), add_special_tokens=False)["input_ids"], eos],
        }
        for p in task.prompts(tok, "train", 2000, seed=0)
    ]
    evals = task.prompts(tok, "eval", 200, seed=0)
    n = 16
    key = f"pass@{n}"
    res: dict[str, list[dict[str, float]]] = {"ce_short": [], "ce_long": [], "dco_long": []}
    for seed in TRAINING_SEEDS:
        for name, obj, hp, steps in (
            ("ce_short", "sft", {}, 40),
            ("ce_long", "sft", {}, 400),
            ("dco_long", "dco", {"n": n}, 400),
        ):
            model = train_policy(
                base,
                rows,
                objective=obj,
                mode="sft",
                hyper_parameters=hp,
                steps=steps,
                batch_size=32,
                learning_rate=1e-3,
                lr_scheduler="constant",
                warmup_ratio=0.0,
                seed=seed,
            )
            res[name].append(_pass_at(model, tok, task, evals, n))
    passes = {k: [r[key] for r in v] for k, v in res.items()}
    iv = {k: seed_interval(v) for k, v in passes.items()}
    longer = paired_by_seed(passes["ce_long"], passes["ce_short"])
    dco_vs_ce = paired_by_seed(passes["dco_long"], passes["ce_long"])
    print("dco pass@N:", iv, longer, dco_vs_ce)
    record_claims(
        "seed_dco",
        {
            **{f"{k}_pass": v["mean"] for k, v in iv.items()},
            **{f"{k}_ci": v["ci95"] for k, v in iv.items()},
            **{f"{k}_seeds": v["values"] for k, v in iv.items()},
            **{f"{k}_pass1": sum(r["pass@1"] for r in v) / len(v) for k, v in res.items()},
            "ce_longer": longer["mean"],
            "ce_longer_ci": longer["ci95"],
            "dco_minus_ce": dco_vs_ce["mean"],
            "dco_minus_ce_ci": dco_vs_ce["ci95"],
            "p_dco_vs_ce": dco_vs_ce["p"],
        },
        # run-to-run noise (reduction order) flips a sampled answer now and then; the t-interval's ends amplify it
        tolerance={"ce_short_ci": 0.05, "ce_long_ci": 0.05, "dco_long_ci": 0.05, "ce_longer_ci": 0.05}
        | {"dco_minus_ce_ci": 0.05, "p_dco_vs_ce": 0.05}
        | {f"{k}_{f}": 0.02 for k in res for f in ("pass", "seeds", "pass1")}
        | {"ce_longer": 0.02, "dco_minus_ce": 0.02},
    )
    assert (
        min(passes["ce_long"]) > 0.05 and min(passes["dco_long"]) > 0.05
    )  # both solve some held-out problems
    # measured: CE's pass@N does not fall with 10x longer training, it rises on every seed (the paired interval lies
    # above 0), so there is no fall for DCO to prevent; DCO vs CE at 400 steps: no difference (the paired interval
    # includes 0). NOT HELD at this scale; asserted is what the data shows.
    assert longer["ci95"][0] > 0
    assert dco_vs_ce["ci95"][0] < 0 < dco_vs_ce["ci95"][1]


def test_irepo_and_pairwise_cringe_vs_dpo_in_the_arena(effect_sentiment_arena):
    """The shared effect arena (``effect_sentiment_arena``: the effect base, 1000 prompts, 300 eval prompts, 150
    steps at lr 2e-4, as the DPO effect test), settings from ``OBJECTIVE_SETTINGS`` (irepo beta 1.0;
    pairwise_cringe alpha 1.0, ParlAI token pooling, k = 1), training seeds 0, 1, 2. Each method's gold reward
    against DPO's is a per-seed paired difference (same data, same seed), its across-seed 95% t-interval and a
    paired t-test p-value (Holm-corrected on the board). "Reaches DPO's gold reward or better": yes when the
    difference's interval lies above 0, no when it lies below 0, inconclusive when it holds 0.
    Figures: docs/claims/results/seed_irepo_cringe.json. The claim does NOT hold at this budget: both are below
    DPO on every seed (the single-seed board's overlapping bootstrap intervals said "inconclusive"). Asserted:
    that, and that both beat SFT on every seed while moving less than DPO."""
    from alignkit.eval.metrics import seed_interval
    from tests.effect import paired_by_seed, per_seed

    result = effect_sentiment_arena
    sft = result.results[0]
    assert sft["objective"] == "sft"
    gold = {k: per_seed(result, k) for k in ("dpo", "irepo", "pairwise_cringe")}
    kl = {k: per_seed(result, k, "kl_mean") for k in gold}
    iv = {k: seed_interval(v) for k, v in gold.items()}
    vs_dpo = {k: paired_by_seed(gold[k], gold["dpo"]) for k in ("irepo", "pairwise_cringe")}
    print({k: (iv[k], kl[k]) for k in gold}, vs_dpo)
    figures: dict[str, Any] = {"sft_gold": sft["gold_reward_mean"], "sft_ci": sft["gold_reward_ci95"]}
    for k in gold:
        figures |= {f"{k}_gold": iv[k]["mean"], f"{k}_ci": iv[k]["ci95"], f"{k}_seeds": iv[k]["values"]}
        figures |= {f"{k}_kl": seed_interval(kl[k])["mean"], f"{k}_kl_seeds": kl[k]}
    for k, d in vs_dpo.items():
        figures |= {f"{k}_vs_dpo": d["mean"], f"{k}_vs_dpo_ci": d["ci95"], f"p_{k}_vs_dpo": d["p"]}
    record_claims("seed_irepo_cringe", figures, tolerance=0.03)
    assert iv["dpo"]["ci95"][0] > sft["gold_reward_ci95"][1]
    for name in ("irepo", "pairwise_cringe"):
        assert min(gold[name]) > sft["gold_reward_ci95"][1], name  # both improve on SFT, on every seed
        assert all(a < b for a, b in zip(kl[name], kl["dpo"], strict=True)), name  # and move less than DPO
        # the row's "no": below DPO on every seed (paired), so the difference's interval lies below 0
        assert max(vs_dpo[name]["values"]) < 0 and vs_dpo[name]["ci95"][1] < 0, name
