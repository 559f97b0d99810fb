"""The diagnostics as trainer hooks: a real ``alignkit.train`` run on a tiny model logs their keys into the
history and history.jsonl, and the logged curvature equals a direct measurement on the final model."""

import json

import pytest
import torch

from alignkit.diagnostics.hessian import hessian_top_eigenvalue
from alignkit.diagnostics.hooks import (
    CurvatureHook,
    FlatnessHook,
    ImbalanceHook,
    ZeroSumHook,
    causal_lm_logits,
    causal_lm_probe,
    per_token_lm_loss,
)
from alignkit.engine.tiny import char_tokenizer, tiny_llama
from alignkit.train.trainer import (
    train,
)  # ak.train is shadowed by the alignkit.train package once it is imported

TOK = char_tokenizer()


def _rows(n=8):
    words = ["good", "fine", "bad", "meh", "yes", "no", "ok", "sure"]
    return [
        {"prompt": f"q{i}: ", "chosen": words[i % 8] + "!", "rejected": words[(i + 3) % 8]} for i in range(n)
    ]


@pytest.mark.slow
def test_hooks_log_into_history(tmp_path):
    probe_ids = torch.tensor([TOK.encode("good fine bad"), TOK.encode("yes no ok!!!!")])
    counts = torch.bincount(probe_ids.reshape(-1), minlength=len(TOK)) + 1
    hooks = [
        CurvatureHook(causal_lm_probe(probe_ids), every=1, iters=5),
        FlatnessHook(causal_lm_probe(probe_ids), every=2, n_samples=2),
        ImbalanceHook(causal_lm_logits(probe_ids), counts, every=1, n_groups=2),
        ZeroSumHook(per_token_lm_loss(probe_ids), every=1),
    ]
    model = tiny_llama(vocab_size=len(TOK), hidden_size=32, seed=1)
    res = train(
        model=model,
        objective="dpo",
        tokenizer=TOK,
        data=_rows(),
        batch_size=4,
        max_steps=2,
        learning_rate=1e-2,
        progress=False,
        hooks=hooks,
        output_dir=str(tmp_path / "run"),
    )
    h = res.history
    for rec in h:
        assert {
            "curvature/lambda_max",
            "curvature/eta_lambda",
            "imbalance/loss_g0",
            "zsl/zero_sum_ratio",
        } <= set(rec)
        assert 0.0 <= rec["zsl/zero_sum_ratio"] <= 1.0
        assert rec["imbalance/grad_share_g0"] + rec["imbalance/grad_share_g1"] == pytest.approx(1.0)
    assert "curvature/pre_lambda_max" in h[-1]  # Adam's state exists after the first step
    assert "flatness/hessian_trace" in h[1] and "flatness/hessian_trace" not in h[0]
    lines = [json.loads(x) for x in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert lines[-1]["curvature/lambda_max"] == h[-1]["curvature/lambda_max"]
    # the logged value is the top eigenvalue of the final model on the probe batch
    res.model.eval()
    direct = hessian_top_eigenvalue(
        causal_lm_probe(probe_ids)(res.model), [p for p in res.model.parameters()], iters=5
    )
    assert direct["lambda_max"] == pytest.approx(h[-1]["curvature/lambda_max"], rel=1e-4)
    assert all(p.grad is None for p in res.model.parameters())
