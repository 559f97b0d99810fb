"""Scale-out on 2 CPU processes (gloo): FSDP2 == DDP == one process, objective state under DDP, FSDP resume."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, os, signal, sys, torch
torch.set_num_threads(1)
import alignkit as ak
from alignkit.train import Hook
objective, model, data, bs, dist_kind, out, kill_at, accum = sys.argv[1:9]
rows = [json.loads(x) for x in open(data)]

class Kill(Hook):
    def on_step_begin(self, ctx):
        if ctx.step == int(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)

kw = dict(output_dir=out, save_steps=2, resume=os.path.isdir(out)) if out != "-" else {}
r = ak.train(objective=objective, model=model, data=rows, max_steps=4, batch_size=int(bs), grad_accum=int(accum), learning_rate=1e-2,
             progress=False, reference="model" if objective != "bco" else "model", distributed=dist_kind,
             hooks=[Kill()], seed=3, **kw)  # the same hooks every run: a run's identity includes them
import torch.distributed as dist
if not dist.is_initialized() or dist.get_rank() == 0:
    keep = ("loss", "state/running_mean", "state/running_count")
    print("HIST", json.dumps([{k: h[k] for k in keep if k in h} for h in r.history]))
    sd = {k: v.double().sum().item() for k, v in r.model.state_dict().items()} if dist_kind != "fsdp" else {}
    print("WSUM", json.dumps(sum(sd.values())))
"""


def _run(tmp_path, args, nproc, expect_kill=False, accum=1):
    args = [*args, accum]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    script = tmp_path / "dist.py"
    script.write_text(SCRIPT)
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--standalone"]
    else:
        cmd = [sys.executable]
    p = subprocess.run(
        cmd + [str(script), *map(str, args)], env=env, capture_output=True, text=True, timeout=600
    )
    if expect_kill:
        assert p.returncode != 0
        return None
    assert p.returncode == 0, p.stderr[-4000:]
    return json.loads(p.stdout.split("HIST", 1)[1].strip().splitlines()[0])


@pytest.fixture(scope="module")
def rows_file(tmp_path_factory):
    g = torch.Generator().manual_seed(0)
    words = ["good", "fine", "bad", "meh", "yes", "no", "ok"]
    f = tmp_path_factory.mktemp("d") / "pairs.jsonl"
    out = []
    for i in range(32):
        a, b = torch.randint(0, len(words), (2,), generator=g).tolist()
        out.append({"prompt": f"q{i % 7}:", "chosen": words[a] + " x", "rejected": words[b] + " yz"})
    f.write_text("".join(json.dumps(r) + "\n" for r in out))
    return f


@pytest.fixture(scope="module")
def fsdp_run(model_dir, rows_file, tmp_path_factory):
    """The uninterrupted FSDP run on 2 processes (shared: both FSDP tests compare against it)."""
    return _run(tmp_path_factory.mktemp("fsdp"), ["dpo", model_dir, rows_file, 4, "fsdp", "-", 0], 2)


def _losses(h):
    return torch.tensor([x["loss"] for x in h])


@pytest.mark.slow
def test_fsdp_equals_ddp_equals_one_process(model_dir, rows_file, tmp_path, fsdp_run):
    one = _run(tmp_path, ["dpo", model_dir, rows_file, 8, "auto", "-", 0], 1)
    ddp = _run(tmp_path, ["dpo", model_dir, rows_file, 4, "ddp", "-", 0], 2)
    fsdp = fsdp_run
    assert len(one) == 4
    assert torch.allclose(_losses(ddp), _losses(one), atol=1e-5)
    assert torch.allclose(_losses(fsdp), _losses(one), atol=1e-5)


@pytest.mark.slow
def test_bco_state_under_ddp_equals_gradient_accumulation(model_dir, rows_file, tmp_path):
    """BCO's running reward mean is summed over micro-batches and ranks once per step, and every micro-batch sees
    the state of the step's start: two processes x 4 rows give the run of one process with 2 x 4 accumulated."""
    accum = _run(tmp_path, ["bco", model_dir, rows_file, 4, "auto", "-", 0], 1, accum=2)
    two = _run(tmp_path, ["bco", model_dir, rows_file, 4, "ddp", "-", 0], 2)
    assert [h["state/running_count"] for h in accum] == [8.0, 16.0, 24.0, 32.0]
    assert torch.allclose(_losses(two), _losses(accum), atol=1e-5)
    mean = torch.tensor([h["state/running_mean"] for h in accum])
    assert torch.allclose(torch.tensor([h["state/running_mean"] for h in two]), mean, atol=1e-5)
    assert mean.abs().sum() > 0  # the state moved


@pytest.mark.slow
def test_fsdp_sigkill_then_resume_equals_uninterrupted(model_dir, rows_file, tmp_path, fsdp_run):
    out = tmp_path / "run"
    _run(tmp_path, ["dpo", model_dir, rows_file, 4, "fsdp", out, 3], 2, expect_kill=True)
    assert (out / "checkpoint-2" / "sharded").is_dir()
    resumed = _run(tmp_path, ["dpo", model_dir, rows_file, 4, "fsdp", out, 0], 2)
    full = fsdp_run
    assert [round(x, 6) for x in _losses(resumed).tolist()] == [round(x, 6) for x in _losses(full).tolist()]
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out)  # the final model is one full save_pretrained folder
    # each sharded checkpoint also holds the gathered save_pretrained folder and the tokenizer
    ckpt = AutoModelForCausalLM.from_pretrained(out / "checkpoint-2")
    saved = load_file(str(out / "checkpoint-2" / "model.safetensors"))
    assert saved and all(torch.equal(ckpt.state_dict()[k], v) for k, v in saved.items())
    assert (out / "checkpoint-2" / "tokenizer.json").is_file()
