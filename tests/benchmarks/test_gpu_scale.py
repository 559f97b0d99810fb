"""benchmarks/gpu_scale.py (issue #21): the model shapes, the peak table, the FLOP count, and its CPU toy mode end to
end (the same script the GPU run uses)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import dpo_vs_trl  # noqa: E402
import gpu_scale  # noqa: E402


@pytest.mark.parametrize(
    "shape,total,non_embedding",
    [("qwen2.5-0.5b", 0.49, 0.36), ("qwen2.5-1.5b", 1.54, 1.31), ("qwen2.5-3b", 3.09, 2.77)],
)
def test_shapes_have_the_model_cards_parameter_counts(shape, total, non_embedding):
    # Qwen2.5 model cards: "Number of Parameters: 0.49B (0.36B non-embedding)", 1.54B (1.31B), 3.09B (2.77B)
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(**gpu_scale.SHAPES[shape]["config"])
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    n = sum(p.numel() for p in model.parameters())  # tied head counted once
    emb = model.get_input_embeddings().weight.numel()
    assert round(n / 1e9, 2) == total
    assert round((n - emb) / 1e9, 2) == non_embedding


def test_peak_table_matches_specific_names_first():
    peak = gpu_scale.dense_bf16_peak
    assert peak("NVIDIA H200") == 989.0
    assert peak("NVIDIA H100 80GB HBM3") == 989.0
    assert peak("NVIDIA H100 PCIe") == 756.0
    assert peak("NVIDIA L40S") == 362.0 and peak("NVIDIA L4") == 121.0
    assert peak("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak("Some Future GPU") is None


def test_step_flops_by_hand():
    # one pair (prompt 2, chosen 1, rejected 1), d=4, 1 layer, ffn 8, kv 2, vocab 10:
    # backbone weights 2*16 + 2*4*2 + 3*4*8 = 144; tokens 4, scored 2,
    # attended pairs: (p+c)=3 -> 6, rejected 1 x prompt 2 -> 2, rejected 1 -> 1: 9
    # forward = 2*144*4 + 2*4*10*2 + 4*4*1*9 = 1152 + 160 + 144 = 1456; with the reference: x4
    shape = dict(d=4, layers=1, ffn=8, kv=2)
    assert dpo_vs_trl.step_flops([(2, 1, 1)], 10, True, shape) == 4 * 1456
    assert dpo_vs_trl.step_flops([(2, 1, 1)], 10, False, shape) == 3 * 1456
    # the default shape is the benchmark model's (kv = d): the formula before GQA support
    d, ffn, layers = dpo_vs_trl.D_MODEL, dpo_vs_trl.FFN, dpo_vs_trl.LAYERS
    old = 2 * layers * (4 * d * d + 3 * d * ffn) * 4 + 2 * d * 100 * 2 + 4 * d * layers * 9
    assert dpo_vs_trl.step_flops([(2, 1, 1)], 100, False) == 3 * old
    qwen = gpu_scale.flops_shape(gpu_scale.SHAPES["qwen2.5-0.5b"]["config"])
    assert qwen == dict(d=896, layers=24, ffn=4864, kv=128)


def test_rows_have_the_requested_lengths():
    rows = gpu_scale.spread_rows(200, 1000, (256, 2048), (128, 1024))
    p = [len(r["prompt"].split()) for r in rows]
    c = [len(r["chosen"].split()) for r in rows] + [len(r["rejected"].split()) for r in rows]
    assert 256 <= min(p) and max(p) <= 2048 and 128 <= min(c) and max(c) <= 1024
    assert sum(x < 600 for x in p) > sum(x > 1500 for x in p)  # log-uniform: short prompts are more common
    (row,) = gpu_scale.fixed_rows(1, 1000, 512)
    assert len(row["prompt"].split()) == 256 and len(row["chosen"].split()) == 255


@pytest.mark.slow
def test_toy_mode_end_to_end(tmp_path):
    """The CPU toy mode through the real workers: alignkit and TRL, one curve point; JSON, targets and plots."""
    res = gpu_scale.main(
        [
            "--toy",
            "--out",
            str(tmp_path),
            "--refs",
            "model",
            "--systems",
            "alignkit,trl",
            "--curve-systems",
            "alignkit",
            "--curve-lengths",
            "64",
        ]
    )
    saved = json.loads((tmp_path / "gpu_scale.json").read_text())
    assert saved["meta"]["device"] == "cpu" and saved["meta"]["trl"] == "1.16.0"
    assert [(r["part"], r["system"]) for r in saved["table"] + saved["curve"]] == [
        ("table", "alignkit"),
        ("table", "trl"),
        ("curve", "alignkit"),
    ]
    for r in saved["table"] + saved["curve"]:
        assert not r["oom"] and r["tok_s"] > 0 and r["s_step"] > 0 and r["mem_gb"] > 0
        bd = r["breakdown"]
        assert bd["policy_forward"] > 0 and bd["reference_forward"] > 0 and bd["optimizer"] > 0
        assert bd["policy_forward"] + bd["reference_forward"] + bd["optimizer"] < bd["step"]
        assert r["mfu"] > 0  # the same rows' model FLOPs over this run's step time
    a = saved["table"][0]
    assert a["fast_paths"]["head"] == "completion-only"
    assert saved["table"][1]["padding_free"] is False  # TRL 1.16 ignores padding_free=True (disabled)
    assert res["targets"]["curve_longest"] == {"alignkit": {"longest_fit": 64, "first_oom": None}}
    assert (tmp_path / "gpu_scale_table.png").stat().st_size > 0
    assert (tmp_path / "gpu_scale_curve.png").stat().st_size > 0
