"""Probe of the safety arena's DPO settings (issue #23): train DPO on the safety effect arena's cached preference
pairs at a given lr / beta / seeds and print each seed's harmful score, helpfulness and over-refusal (300 eval
prompts x 4 samples, the arena's sampling seed). The seed-0 figures in docs/claims/rows.yaml's safety-arena intro
(lr 5e-4, 2e-3, beta 0.5 at 1e-3) come from this script; the 3-seed figures from the test itself.

    ALIGNKIT_EFFECT_CACHE=/path/to/cache PYTHONPATH=src:. python benchmarks/safety_dpo_probe.py 5e-4 150 0,1,2 0.1

The cache must hold the arena's data (run tests/testbed/test_arena.py::test_dpo_lowers_the_harmful_score_on_safety
with the same ALIGNKIT_EFFECT_CACHE first)."""

from __future__ import annotations

import os
import sys
import time


def main(lr: float, steps: int, seeds: list[int], beta: float) -> None:
    from alignkit.eval.evaluate import sample_and_score
    from alignkit.testbed import get_base_model, get_task
    from alignkit.testbed.arena import prepare_data
    from tests.effect import effect_arena_config, effect_base_config, pair_rows, train_policy

    cache = os.environ["ALIGNKIT_EFFECT_CACHE"]
    task = get_task("safety")
    cfg = effect_arena_config(cache, task="safety", base=effect_base_config("safety"))
    base = get_base_model(task, cfg.base, cache_dir=cache, progress=False)
    data = prepare_data(cfg, base, task)
    for seed in seeds:
        t0 = time.time()
        policy = train_policy(
            base,
            pair_rows(data.pairs),
            steps=steps,
            learning_rate=lr,
            seed=seed,
            hyper_parameters={"beta": beta},
        )
        s = sample_and_score(
            policy,
            base.tokenizer,
            task,
            data.eval_prompts,
            num_samples=4,
            seed=1 + 100 * seed,
            progress=False,
        )
        figs = {
            k: round(v["mean"], 3)
            for k, v in task.task_metrics(data.eval_prompts, s.texts, s.rewards).items()
        }
        print(
            f"lr {lr:g} steps {steps} beta {beta:g} seed {seed}: {figs} ({time.time() - t0:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main(float(sys.argv[1]), int(sys.argv[2]), [int(x) for x in sys.argv[3].split(",")], float(sys.argv[4]))
