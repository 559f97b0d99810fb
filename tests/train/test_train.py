import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import alignkit as ak
from alignkit.cli.main import main as cli
from alignkit.engine.tiny import char_tokenizer, tiny_llama
from alignkit.train import Hook, ProximalHook

REPO = Path(__file__).resolve().parents[2]


def pref_rows(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    words = ["good", "fine", "bad", "meh", "yes", "no", "ok"]
    out = []
    for i in range(n):
        a, b = torch.randint(0, len(words), (2,), generator=g).tolist()
        out.append({"prompt": f"q{i % 7}:", "chosen": words[a] + " x", "rejected": words[b] + " yz"})
    return out


@pytest.fixture(scope="session")
def data_file(tmp_path_factory):
    f = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in pref_rows()))
    return f


def _losses(history):
    return [h["loss"] for h in history]


def test_cli_end_to_end(model_dir, data_file, tmp_path):
    out = tmp_path / "run"
    rc = cli(
        [
            "train",
            "--objective",
            "dpo",
            "--model",
            str(model_dir),
            "--data",
            str(data_file),
            "--output",
            str(out),
            "--max-steps",
            "4",
            "--batch-size",
            "4",
            "--learning-rate",
            "1e-2",
            "--beta",
            "0.2",
            "--save-steps",
            "2",
            "--save-total-limit",
            "1",
            "--no-progress",
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    assert rc == 0
    hist = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in hist] == [1, 2, 3, 4]
    for key in (
        "loss",
        "learning_rate",
        "grad_norm",
        "tokens_per_second",
        "rewards/margins",
        "rewards/accuracies",
    ):
        assert all(key in h for h in hist), key
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in hist)
    cfg = (out / "config.yaml").read_text()
    assert "beta: 0.2" in cfg and "max_steps: 4" in cfg
    for name in ("model.safetensors", "config.json", "tokenizer.json", "data_report.json", "history.jsonl"):
        assert (out / name).exists(), name
    assert list((out / "tensorboard").iterdir())
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-4"]  # save_total_limit=1
    before = load_file(str(model_dir / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    assert not unchanged, unchanged
    # reference log-probs were cached on disk and a second run reuses them
    assert list((tmp_path / "cache" / "reference").glob("*.safetensors"))


def test_cli_rejects_unknown_hyper_parameter(model_dir, data_file, capsys):
    with pytest.raises(SystemExit):  # not an alignkit hyper-parameter at all
        cli(
            [
                "train",
                "--objective",
                "simpo",
                "--model",
                str(model_dir),
                "--data",
                str(data_file),
                "--label-pad",
                "1",
            ]
        )
    rc = cli(
        [
            "train",
            "--objective",
            "simpo",
            "--model",
            str(model_dir),
            "--data",
            str(data_file),
            "--ld-alpha",
            "1",
        ]
    )
    assert rc == 2
    assert "has no hyper-parameter --ld-alpha" in capsys.readouterr().err


def test_yaml_config_and_overrides(model_dir, data_file, tmp_path):
    from alignkit.cli.main import build_parser
    from alignkit.cli.train import resolve_config

    y = tmp_path / "c.yaml"
    y.write_text(
        f"objective: ipo\nmodel: {model_dir}\ndata: {data_file}\nbatch_size: 3\nhyper_parameters:\n  beta: 0.5\n"
    )
    args = build_parser().parse_args(["train", "--config", str(y), "--batch-size", "5", "--beta", "0.25"])
    cfg = resolve_config(args)
    assert cfg.objective == "ipo" and cfg.batch_size == 5 and cfg.hyper_parameters == {"beta": 0.25}


def _pairs_model():
    tok = char_tokenizer()
    return tok, tiny_llama(vocab_size=len(tok), hidden_size=32)


def test_grad_accumulation_invariance():
    tok, _ = _pairs_model()
    rows = pref_rows(16)
    runs, grads = {}, {}

    class Grads(Hook):
        def __init__(self, key):
            self.key = key

        def on_after_backward(self, ctx):
            if ctx.step == 1:
                grads[self.key] = [p.grad.clone() for p in ctx.model.parameters()]

    for bs, ga in ((1, 8), (8, 1)):
        r = ak.train(
            objective="dpo",
            model=tiny_llama(vocab_size=len(tok)),
            tokenizer=tok,
            data=rows,
            batch_size=bs,
            grad_accum=ga,
            max_steps=3,
            learning_rate=1e-2,
            progress=False,
            hooks=[Grads(bs)],
        )
        runs[bs] = r
    a, b = runs[1], runs[8]
    assert torch.allclose(torch.tensor(_losses(a.history)), torch.tensor(_losses(b.history)), atol=1e-5)
    # the accumulated gradient of a step equals the big batch's (weights are not compared: Adam amplifies
    # float rounding in near-zero gradients)
    for g1, g8 in zip(grads[1], grads[8], strict=True):
        assert torch.allclose(g1, g8, atol=1e-6)
    assert abs(a.history[0]["rewards/margins"] - b.history[0]["rewards/margins"]) < 1e-5
    # SFT averages over tokens: also invariant
    s1 = ak.train(
        objective="sft",
        model=tiny_llama(vocab_size=len(tok)),
        tokenizer=tok,
        data=rows,
        batch_size=2,
        grad_accum=4,
        max_steps=2,
        learning_rate=1e-2,
        progress=False,
    )
    s8 = ak.train(
        objective="sft",
        model=tiny_llama(vocab_size=len(tok)),
        tokenizer=tok,
        data=rows,
        batch_size=8,
        grad_accum=1,
        max_steps=2,
        learning_rate=1e-2,
        progress=False,
    )
    assert torch.allclose(torch.tensor(_losses(s1.history)), torch.tensor(_losses(s8.history)), atol=1e-5)


def test_cached_reference_equals_recomputed_and_lora_reference():
    tok = char_tokenizer()
    rows = pref_rows(12)
    common = dict(
        objective="dpo",
        tokenizer=tok,
        data=rows,
        batch_size=4,
        max_steps=3,
        learning_rate=1e-2,
        progress=False,
    )
    cached = ak.train(model=tiny_llama(vocab_size=len(tok)), reference="cache", **common)
    frozen = ak.train(model=tiny_llama(vocab_size=len(tok)), reference="model", **common)
    assert cached.reference == "cache" and frozen.reference == "model"
    assert torch.allclose(
        torch.tensor(_losses(cached.history)), torch.tensor(_losses(frozen.history)), atol=1e-5
    )
    lora = ak.train(model=tiny_llama(vocab_size=len(tok)), lora=True, **common)
    lora_cache = ak.train(model=tiny_llama(vocab_size=len(tok)), lora=True, reference="cache", **common)
    assert lora.reference == "lora"
    assert abs(lora.history[0]["loss"] - 0.6931471805599453) < 1e-5  # policy == reference at step 1
    assert torch.allclose(
        torch.tensor(_losses(lora.history)), torch.tensor(_losses(lora_cache.history)), atol=1e-5
    )
    changed = [n for n, p in lora.model.named_parameters() if "lora_B" in n and p.abs().sum() > 0]
    assert changed


def test_reference_free_unpaired_and_hooks():
    tok = char_tokenizer()
    rows = pref_rows(12)
    simpo = ak.train(
        objective="simpo",
        model=tiny_llama(vocab_size=len(tok)),
        tokenizer=tok,
        data=rows,
        batch_size=4,
        max_steps=2,
        progress=False,
    )
    assert simpo.reference == "none"
    kto = ak.train(
        objective="kto",
        model=tiny_llama(vocab_size=len(tok)),
        tokenizer=tok,
        data=rows,
        batch_size=4,
        max_steps=2,
        progress=False,
    )
    assert "kl" in kto.history[0] and kto.data_report["split_pairs"] == 12
    bco = ak.train(
        objective="bco",
        model=tiny_llama(vocab_size=len(tok)),
        tokenizer=tok,
        data=rows,
        batch_size=4,
        max_steps=3,
        progress=False,
    )
    assert [h["bco/running_count"] for h in bco.history] == [4.0, 8.0, 12.0]  # state fed back every step

    calls = []

    class Recorder(Hook):
        def on_step_begin(self, ctx):
            calls.append(("begin", ctx.step))

        def on_after_backward(self, ctx):
            grads = [p.grad for p in ctx.model.parameters() if p.grad is not None]
            calls.append(("grads", bool(grads)))

        def on_step_end(self, ctx, record):
            record["custom"] = 1.0

    r = ak.train(
        objective="dpo",
        model=tiny_llama(vocab_size=len(tok)),
        tokenizer=tok,
        data=rows,
        batch_size=4,
        max_steps=2,
        progress=False,
        hooks=[ProximalHook(1.0), Recorder()],
    )
    assert calls == [("begin", 1), ("grads", True), ("begin", 2), ("grads", True)]
    assert r.history[0]["hook/ProximalHook"] == 0.0 and r.history[1]["hook/ProximalHook"] > 0
    assert r.history[1]["custom"] == 1.0


def test_online_dpo():
    tok = char_tokenizer()
    target = tok("a", add_special_tokens=False)["input_ids"][0]

    def reward(prompt_ids, completion_ids):
        return [sum(t == target for t in c) / len(c) for c in completion_ids]

    r = ak.train(
        objective="dpo",
        mode="online",
        reward_fn=reward,
        model=tiny_llama(vocab_size=len(tok)),
        tokenizer=tok,
        data=[{"prompt": f"p{i}"} for i in range(8)],
        batch_size=4,
        max_steps=2,
        online_max_new_tokens=4,
        progress=False,
    )
    assert r.reference == "model" and len(r.history) == 2 and "online/reward_mean" in r.history[0]


KILL_SCRIPT = """
import os, signal, sys, torch
torch.set_num_threads(1)
import alignkit as ak
from alignkit.train import Hook
class Kill(Hook):
    def on_step_begin(self, ctx):
        if ctx.step == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)
ak.train(objective="dpo", model=sys.argv[1], data=sys.argv[2], output_dir=sys.argv[4], max_steps=6, batch_size=4,
         learning_rate=1e-2, save_steps=2, progress=False, cache_dir=sys.argv[4] + "-cache", hooks=[Kill()],
         resume=len(sys.argv) > 5)
"""


def test_resume_after_sigkill_matches_uninterrupted(model_dir, data_file, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    killed = tmp_path / "killed"
    p = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(model_dir), str(data_file), "5", str(killed)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == -9, p.stderr[-2000:]
    assert sorted(c.name for c in killed.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    (killed / ".tmp-checkpoint-6-1").mkdir()  # a save cut short: must be ignored
    # the same run (same hooks: a run's identity includes them) resumed; its Kill hook now never fires
    p = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, str(model_dir), str(data_file), "0", str(killed), "--resume"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    resumed = [json.loads(x) for x in (killed / "history.jsonl").read_text().splitlines()]
    full = ak.train(
        objective="dpo",
        model=str(model_dir),
        data=str(data_file),
        max_steps=6,
        batch_size=4,
        learning_rate=1e-2,
        progress=False,
    )
    assert [h["step"] for h in resumed] == [1, 2, 3, 4, 5, 6]
    assert torch.allclose(torch.tensor(_losses(resumed)), torch.tensor(_losses(full.history)), atol=1e-5)
    assert not (killed / ".tmp-checkpoint-6-1").exists()


DDP_SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
import alignkit as ak
r = ak.train(objective="dpo", model=sys.argv[1], data=sys.argv[2], max_steps=3, batch_size=int(sys.argv[3]),
             learning_rate=1e-2, progress=False, reference="model")
import torch.distributed as dist
if not dist.is_initialized() or dist.get_rank() == 0:
    print("LOSSES", json.dumps([h["loss"] for h in r.history]))
"""


@pytest.mark.slow
def test_ddp_two_processes_equal_one(model_dir, data_file, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--standalone",  # a free port each run: a fixed one can still be held by an earlier run
            str(script),
            str(model_dir),
            str(data_file),
            "4",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run(
        [sys.executable, str(script), str(model_dir), str(data_file), "8"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    l2 = json.loads(two.stdout.split("LOSSES", 1)[1].strip().splitlines()[0])
    l1 = json.loads(one.stdout.split("LOSSES", 1)[1].strip().splitlines()[0])
    assert len(l1) == 3 and torch.allclose(torch.tensor(l2), torch.tensor(l1), atol=1e-5)


def test_config_to_dict_accepts_path_data(tmp_path):
    from alignkit.train import TrainConfig

    cfg = TrainConfig(objective="dpo", model="m", data=tmp_path / "pairs.jsonl")
    assert cfg.to_dict()["data"] == str(tmp_path / "pairs.jsonl")
    rows = [{"prompt": "a", "chosen": "b", "rejected": "c"}]
    assert cfg.replace(data=rows).to_dict()["data"] == "<in-memory list of 1 rows>"


def test_adamw_is_fused_where_supported_and_equals_the_plain_loop():
    import torch

    from alignkit.train.setup import adamw as _adamw

    out = {}
    for name in ("fused", "plain"):
        torch.manual_seed(0)
        ps = [torch.nn.Parameter(torch.randn(30, 8)), torch.nn.Parameter(torch.randn(8))]
        groups = [{"params": ps[:1], "weight_decay": 0.1}, {"params": ps[1:], "weight_decay": 0.0}]
        if name == "fused":
            opt = _adamw(groups, 1e-2, (0.9, 0.999))
            assert opt.defaults["fused"] is True
        else:
            opt = torch.optim.AdamW(groups, lr=1e-2, betas=(0.9, 0.999), foreach=False)
        g = torch.Generator().manual_seed(1)
        for _ in range(5):
            for p in ps:
                p.grad = torch.randn(p.shape, generator=g)
            opt.step()
        out[name] = [p.detach().clone() for p in ps]
    for a, b in zip(out["fused"], out["plain"], strict=True):
        assert (a - b).abs().max().item() < 1e-6
