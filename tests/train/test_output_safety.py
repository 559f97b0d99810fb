"""End-to-end: a user's work is never lost to a reused --output, a corrupt checkpoint or a kill at any point.

They exercise ``alignkit.train.run_dir`` / ``checkpoint`` through the trainer, which calls ``prepare_output_dir``,
``find_resume_checkpoint``, ``restore_history`` and ``save_checkpoint(..., identity=)`` (docs/training.md, "Output
folder").
"""

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from alignkit.cli.main import main as cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    f = tmp_path_factory.mktemp("data") / "good.jsonl"
    words = ["good", "fine", "bad", "meh", "yes", "no"]
    rows = [
        {"prompt": f"q{i % 5}:", "chosen": words[i % 6] + " x", "rejected": words[(i + 3) % 6]}
        for i in range(16)
    ]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


def _train(model_dir, data, out, *extra):
    return [
        "train",
        "--objective",
        "dpo",
        "--model",
        str(model_dir),
        "--data",
        str(data),
        "--output",
        str(out),
        "--batch-size",
        "2",
        "--learning-rate",
        "1e-2",
        "--reference",
        "model",
        "--no-progress",
        "--no-tensorboard",
        *extra,
    ]


def _history(out):
    return [json.loads(x) for x in (Path(out) / "history.jsonl").read_text().splitlines() if x.strip()]


def _ckpts(out):
    return sorted(int(p.name.split("-")[1]) for p in Path(out).glob("checkpoint-*"))


def test_two_runs_in_one_folder_never_mix(model_dir, pairs, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli(_train(model_dir, pairs, out, "--max-steps", "12", "--save-steps", "2")) == 0
    a_weights = load_file(str(out / "model.safetensors"))
    capsys.readouterr()
    # run B (another length and checkpointing) in A's folder: refused, A untouched
    b = _train(model_dir, pairs, out, "--max-steps", "4", "--save-steps", "1", "--save-total-limit", "2")
    assert cli(b) == 2
    err = capsys.readouterr().err
    assert "checkpoints of this same run" in err and err.count("\n") == 1, err
    assert _ckpts(out) == [2, 4, 6, 8, 10, 12]
    # B --resume: A's checkpoint-12 is past B's max_steps; both named, nothing trained or written
    assert cli([*b, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint-12" in err and "max_steps 4" in err and "12-step run" in err, err
    assert _ckpts(out) == [2, 4, 6, 8, 10, 12] and len(_history(out)) == 12
    assert all(torch.equal(a_weights[k], v) for k, v in load_file(str(out / "model.safetensors")).items())
    # a run with other data in the same folder: refused naming what differs
    other = tmp_path / "other.jsonl"
    other.write_text(pairs.read_text().replace("good", "great"))
    assert cli(_train(model_dir, other, out, "--max-steps", "4")) == 2
    assert "another alignkit run (its data differ" in capsys.readouterr().err
    # --overwrite: B replaces A cleanly; its own checkpoints survive save_total_limit
    assert cli([*b, "--overwrite"]) == 0
    assert _ckpts(out) == [3, 4] and [h["step"] for h in _history(out)] == [1, 2, 3, 4]


def test_unrelated_folder_and_input_folders_are_refused(model_dir, pairs, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert cli(_train(model_dir, pairs, mine, "--max-steps", "1")) == 2
    err = capsys.readouterr().err
    assert "is not empty" in err and "notes.txt" in err and "--overwrite" in err and err.count("\n") == 1
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    mcopy = tmp_path / "mcopy"
    shutil.copytree(model_dir, mcopy)
    before = (mcopy / "model.safetensors").read_bytes()
    for flags in ((), ("--overwrite",)):
        assert cli(_train(mcopy, pairs, mcopy, "--max-steps", "1", *flags)) == 2
        assert "model folder" in capsys.readouterr().err
    assert (mcopy / "model.safetensors").read_bytes() == before
    assert cli(_train(model_dir, pairs, mine, "--max-steps", "1", "--overwrite")) == 0
    assert (mine / "notes.txt").read_text() == "keep me" and (mine / "model.safetensors").is_file()


def test_corrupt_newest_checkpoint_falls_back_and_says_which(model_dir, pairs, tmp_path, capsys):
    full = tmp_path / "full"
    assert cli(_train(model_dir, pairs, full, "--max-steps", "6")) == 0
    out = tmp_path / "run"
    args = _train(model_dir, pairs, out, "--max-steps", "6", "--save-steps", "2")
    assert cli(args) == 0
    bad = out / "checkpoint-6" / "model.safetensors"
    bad.write_bytes(bad.read_bytes()[:100])
    with pytest.warns(
        UserWarning, match=r"resuming from checkpoint-4.*checkpoint-6/model.safetensors is 100 bytes"
    ):
        assert cli([*args, "--resume"]) == 0
    got, want = _history(out), _history(full)
    assert [h["step"] for h in got] == [1, 2, 3, 4, 5, 6]
    assert torch.allclose(
        torch.tensor([h["loss"] for h in got]), torch.tensor([h["loss"] for h in want]), atol=1e-5
    )
    for step in (2, 4, 6):
        (out / f"checkpoint-{step}" / "optimizer.pt").write_bytes(b"broken")
    capsys.readouterr()
    assert cli([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # (after transformers' weight-loading bar)
    assert last.startswith("alignkit train: error: no complete checkpoint") and "Traceback" not in err, err
    assert "checkpoint-2/optimizer.pt" in last and "checkpoint-6/optimizer.pt" in last


def test_saved_config_re_runs(model_dir, pairs, tmp_path):
    out = tmp_path / "run"
    assert cli(_train(model_dir, pairs, out, "--max-steps", "1", "--beta", "0.2")) == 0
    saved = (out / "config.yaml").read_text()
    assert "reward_fn: null" in saved and "beta: 0.2" in saved
    assert cli(["train", "--config", str(out / "config.yaml"), "--output", str(tmp_path / "again")]) == 0
    assert _history(tmp_path / "again")[0]["loss"] == pytest.approx(_history(out)[0]["loss"], abs=1e-6)


# --- fault injection -------------------------------------------------------------------------------------------

FAULT_SCRIPT = r"""
import json, os, signal, sys
kind, arg = sys.argv[1], int(sys.argv[2])
argv = json.loads(sys.argv[3])

def die():
    os.kill(os.getpid(), signal.SIGKILL)

import alignkit.train.checkpoint as ck
from alignkit.train.hooks import Hook

calls = {"n": 0}
if kind == "save_model":  # killed inside a checkpoint write, after its save_pretrained folder is on disk
    orig = ck.save_weights
    def save_weights(*a, **k):
        orig(*a, **k)
        calls["n"] += 1
        if calls["n"] == arg:
            die()
    ck.save_weights = save_weights
elif kind == "manifest":  # killed inside a checkpoint write, before its manifest
    def write_manifest(*a, **k):
        calls["n"] += 1
        if calls["n"] == arg:
            die()
        return orig_manifest(*a, **k)
    orig_manifest = ck.write_manifest
    ck.write_manifest = write_manifest

class Kill(Hook):
    def on_step_begin(self, ctx):
        if kind == "step" and ctx.step == arg:
            die()
    def on_step_end(self, ctx, record):
        if kind == "torn" and ctx.step == arg:  # a history line half written
            out = [a for i, a in enumerate(argv) if i and argv[i - 1] == "--output"][0]
            with open(os.path.join(out, "history.jsonl"), "a") as f:
                f.write('{"step": %d, "lo' % (arg + 1))
            die()

sys.modules["fault_hooks"] = type(sys)("fault_hooks")
sys.modules["fault_hooks"].Kill = Kill
from alignkit.cli.main import main
sys.exit(main(argv + ["--hooks", "fault_hooks:Kill"]))
"""


@pytest.mark.slow
def test_kills_at_random_points_resume_to_the_uninterrupted_run(model_dir, pairs, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    steps = 8
    full = tmp_path / "full"
    assert cli(_train(model_dir, pairs, full, "--max-steps", str(steps), "--save-steps", "2")) == 0
    out = tmp_path / "run"
    args = _train(model_dir, pairs, out, "--max-steps", str(steps), "--save-steps", "2")
    rng = random.Random(16)
    kinds = ["step", "save_model", "manifest", "torn"]
    rng.shuffle(kinds)
    for i, kind in enumerate(kinds):
        done = max(
            [int(c.name.split("-")[1]) for c in out.glob("checkpoint-*") if (c / "manifest.json").exists()]
            or [0]
        )
        # a point the run reaches: a step soon after the one it resumes from, or the first or second save to come
        at = rng.randint(done + 1, min(done + 3, steps)) if kind in ("step", "torn") else rng.randint(1, 2)
        argv = args if i == 0 else [*args, "--resume"]
        p = subprocess.run(
            [sys.executable, "-c", FAULT_SCRIPT, kind, str(at), json.dumps(argv)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert p.returncode == -9, (kind, at, p.stderr[-3000:])  # killed where asked
        assert not any(
            c.name.startswith("checkpoint-") and not (c / "manifest.json").exists() for c in out.iterdir()
        )
    p = subprocess.run(  # the same hooks (part of the run's identity), none firing
        [sys.executable, "-c", FAULT_SCRIPT, "none", "0", json.dumps([*args, "--resume"])],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    got, want = _history(out), _history(full)
    assert [h["step"] for h in got] == list(range(1, steps + 1))
    assert torch.allclose(
        torch.tensor([h["loss"] for h in got]), torch.tensor([h["loss"] for h in want]), atol=1e-5
    )
    a, b = load_file(str(out / "model.safetensors")), load_file(str(full / "model.safetensors"))
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in b)
