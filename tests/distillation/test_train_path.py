"""`alignkit train --teacher`: the distillation path of the trainer (alignkit.train.teacher).

A tiny teacher (a 2-layer LlamaForCausalLM trained briefly with SFT, saved with save_pretrained) and a smaller
1-layer student share a character tokenizer. The logged step-1 loss equals the objective computed directly from
the two models' own forwards (for gkd: TRL's generalized_jsd_loss); training lowers the teacher-student KL on
held-out rows; the refusals; checkpoint/resume with the teacher in the run's identity; one teacher forward per
micro-batch.
"""

from __future__ import annotations

import json

import pytest
import torch

import alignkit as ak
from alignkit.data.loading import load_records
from alignkit.data.prepare import prepare
from alignkit.engine.tiny import char_tokenizer, tiny_llama
from alignkit.errors import ConfigError, OutputDirError, UserError
from alignkit.train import Hook

WORDS = ["apple", "brick", "cloud", "dream", "eagle", "flame", "grape", "house", "ivory", "jolly", "knife",
         "lemon", "mango", "night", "ocean", "piano", "queen", "river", "stone", "tiger"]  # fmt: skip


def _rows(words: list[str]) -> list[dict[str, str]]:
    return [{"prompt": f"say {w}:", "completion": f" {w} {w[::-1]}."} for w in words]


TRAIN, HELD_OUT = _rows(WORDS[:14]), _rows(WORDS[14:])
FAST = dict(progress=False, tensorboard=False, seed=0)


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tok):
    """teacher/ (2 layers, SFT-trained 30 steps), teacher2/ (another teacher), student/ (1 layer, same hidden
    size), narrow/ (1 layer, hidden 16), data.jsonl."""
    root = tmp_path_factory.mktemp("distil")
    v = len(tok)
    r = ak.train(objective="sft", model=tiny_llama(vocab_size=v, hidden_size=32, seed=1), tokenizer=tok,
                 data=TRAIN + HELD_OUT, max_steps=30, batch_size=10, learning_rate=1e-2, **FAST)  # fmt: skip
    out = {}
    for name, model in (
        ("teacher", r.model),
        ("teacher2", tiny_llama(vocab_size=v, hidden_size=32, seed=5)),
        ("student", tiny_llama(vocab_size=v, hidden_size=32, num_layers=1, seed=2)),
        ("narrow", tiny_llama(vocab_size=v, hidden_size=16, num_layers=1, seed=3)),
    ):
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        out[name] = str(root / name)
    (root / "data.jsonl").write_text("".join(json.dumps(x) + "\n" for x in TRAIN))
    out["data"] = str(root / "data.jsonl")
    out["root"] = root
    return out


def _load(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


@torch.no_grad()
def _direct(model, tok, rows):
    """Each row alone (no padding) through the model's own forward: logits at the positions predicting the
    completion tokens (N, V), the final hidden states there (N, H), and the target ids (N,)."""
    ex = prepare(
        load_records(rows), mode="sft", tokenizer=tok, max_length=1024, max_prompt_length=512
    ).examples
    logits, hidden, targets = [], [], []
    for e in ex:
        ids = torch.tensor([e.prompt_ids + e.completion_ids])
        h = model.model(input_ids=ids).last_hidden_state[0]
        z = model(input_ids=ids).logits[0]
        sl = slice(len(e.prompt_ids) - 1, ids.shape[1] - 1)
        logits.append(z[sl])
        hidden.append(h[sl])
        targets.append(ids[0, len(e.prompt_ids) :])
    return torch.cat(logits), torch.cat(hidden), torch.cat(targets)


def _forward_kl(teacher, student, tok, rows) -> float:
    zt, _, _ = _direct(teacher, tok, rows)
    zs, _, _ = _direct(student, tok, rows)
    lt, ls = zt.log_softmax(-1), zs.log_softmax(-1)
    return float((lt.exp() * (lt - ls)).sum(-1).mean())


def test_step1_loss_is_trl_gkd_loss_on_the_models_own_outputs(folders, tok):
    """One micro-batch of every training row: the logged loss (before the first update) equals TRL's
    generalized_jsd_loss on the teacher's and the student's full forwards of the same rows."""
    from trl.experimental.gkd import GKDTrainer

    r = ak.train(objective="gkd", model=folders["student"], teacher=folders["teacher"], data=folders["data"],
                 batch_size=len(TRAIN), max_steps=1, hyper_parameters={"beta": 0.3, "temperature": 1.5},
                 **FAST)  # fmt: skip
    zt, _, _ = _direct(_load(folders["teacher"]), tok, TRAIN)
    zs, _, _ = _direct(_load(folders["student"]), tok, TRAIN)
    labels = torch.zeros(1, zs.shape[0], dtype=torch.long)  # every position counts
    want = GKDTrainer.generalized_jsd_loss(zs[None], zt[None], labels=labels, beta=0.3, temperature=1.5)
    assert r.history[0]["loss"] == pytest.approx(want.item(), rel=1e-5)
    assert r.reference == "none" and r.fast_paths["packing"] is False


def test_step1_distilbert_terms_on_the_models_own_outputs(folders, tok):
    """DistilBERT's three terms: soft-target KL at T, the next-token CE (the causal adaptation of its MLM term)
    and the hidden-state cosine at the completion positions, from the models' own forwards."""
    from alignkit.objectives.distillation import hidden_cosine, soft_target_kl

    hp = {"temperature": 2.0, "alpha_ce": 5.0, "alpha_mlm": 2.0, "alpha_cos": 1.0}
    r = ak.train(objective="distilbert", model=folders["student"], teacher=folders["teacher"], data=folders["data"],
                 batch_size=len(TRAIN), max_steps=1, hyper_parameters=hp, **FAST)  # fmt: skip
    zt, ht, y = _direct(_load(folders["teacher"]), tok, TRAIN)
    zs, hs, _ = _direct(_load(folders["student"]), tok, TRAIN)
    ce = soft_target_kl(zs, zt, 2.0).item()
    nll = torch.nn.functional.cross_entropy(zs, y).item()
    cos = hidden_cosine(hs[None], ht[None], torch.ones(1, hs.shape[0])).item()
    h = r.history[0]
    assert h["loss_ce"] == pytest.approx(ce, rel=1e-5)
    assert h["loss_mlm"] == pytest.approx(nll, rel=1e-5)
    assert h["loss_cos"] == pytest.approx(cos, rel=1e-5)
    assert h["loss"] == pytest.approx(5 * ce + 2 * nll + cos, rel=1e-5)


def test_training_lowers_the_teacher_student_kl_on_held_out_rows(folders, tok):
    r = ak.train(objective="gkd", model=folders["student"], teacher=folders["teacher"], data=folders["data"],
                 batch_size=7, max_steps=25, learning_rate=1e-2, hyper_parameters={"beta": 0.0}, **FAST)  # fmt: skip
    teacher = _load(folders["teacher"])
    before = _forward_kl(teacher, _load(folders["student"]), tok, HELD_OUT)
    after = _forward_kl(teacher, r.model.eval(), tok, HELD_OUT)
    assert after < 0.6 * before, (before, after)
    losses = [h["loss"] for h in r.history]
    assert sum(losses[-5:]) < 0.6 * sum(losses[:5])


def test_cli_and_trl_names(folders, tmp_path):
    from alignkit.cli.main import main

    out = tmp_path / "run"
    argv = ["train", "--objective", "gkd", "--model", folders["student"], "--teacher_model_name_or_path",
            folders["teacher"], "--data", folders["data"], "--output", str(out), "--max-steps", "2",
            "--batch-size", "4", "--beta", "0.1", "--temperature", "2", "--no-progress", "--no-tensorboard"]  # fmt: skip
    assert main(argv) == 0
    import yaml

    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["teacher"] == folders["teacher"] and cfg["hyper_parameters"] == {"beta": 0.1, "temperature": 2}
    assert len((out / "history.jsonl").read_text().splitlines()) == 2
    assert (out / "model.safetensors").is_file()
    # a TRL GKD config: teacher_model_name_or_path, beta, temperature, lmbda 0 / seq_kd false accepted
    from alignkit.integrations.trl_config import translate
    from alignkit.train.config import TrainConfig

    fields = set(TrainConfig.field_names())
    got = translate({"teacher_model_name_or_path": "T", "beta": 0.2, "temperature": 1.0, "lmbda": 0.0,
                     "seq_kd": False, "teacher_model_init_kwargs": {"dtype": "bfloat16"}}, "gkd.yaml", fields)  # fmt: skip
    assert got == {
        "teacher": "T",
        "teacher_dtype": "bfloat16",
        "hyper_parameters": {"beta": 0.2, "temperature": 1.0},
    }
    for bad in ({"lmbda": 0.5}, {"seq_kd": True}, {"teacher_model_init_kwargs": {"device_map": "auto"}}):
        with pytest.raises(ConfigError, match="gkd.yaml"):
            translate(bad, "gkd.yaml", fields)


def test_refusals_at_start(folders, tok, tmp_path):
    base = dict(model=folders["student"], data=folders["data"], max_steps=1, batch_size=2, **FAST)
    with pytest.raises(UserError, match=r"teacher_logits.*--teacher"):
        ak.train(objective="gkd", **base)
    with pytest.raises(UserError, match=r"--teacher was given.*'sft'"):
        ak.train(objective="sft", teacher=folders["teacher"], **base)
    with pytest.raises(UserError, match=r"DistillBatch"):
        ak.train(objective="trra", teacher=folders["teacher"], **base)
    with pytest.raises(UserError, match=r"on-policy"):
        ak.train(objective="gkd", teacher=folders["teacher"], reward_fn=lambda p, c: [0.0] * len(c), **base)
    # another vocabulary: a model of another size; a tokenizer that maps tokens differently
    other = tmp_path / "other_vocab"
    tiny_llama(vocab_size=len(tok) + 5, hidden_size=32).save_pretrained(other)
    with pytest.raises(UserError, match="vocabulary"):
        ak.train(objective="gkd", teacher=str(other), **base)
    shuffled = tmp_path / "other_tokenizer"
    tiny_llama(vocab_size=len(tok), hidden_size=32).save_pretrained(shuffled)
    tok2 = char_tokenizer()
    vocab = tok2.get_vocab()
    a, b = vocab["a"], vocab["b"]
    tok2.backend_tokenizer.model = type(tok2.backend_tokenizer.model)(
        vocab={**vocab, "a": b, "b": a}, merges=[], unk_token="<unk>"
    )
    tok2.save_pretrained(shuffled)
    with pytest.raises(UserError, match="tokenizer"):
        ak.train(objective="gkd", teacher=str(shuffled), **base)
    # the field plan names the field and the flag when no teacher output is offered
    from alignkit.train.fields import plan_fields

    with pytest.raises(UserError, match=r"teacher_logits.*--teacher"):
        plan_fields(ak.get("gkd"), {}, mode="sft", columns=set(), online=False)


def test_hidden_size_mismatch_is_reported_and_the_cosine_term_is_zero(folders):
    r = ak.train(objective="distilbert", model=folders["narrow"], teacher=folders["teacher"], data=folders["data"],
                 batch_size=4, max_steps=1, **FAST)  # fmt: skip
    assert any("hidden size (32) is not the student's (16)" in n for n in r.notes), r.notes
    assert r.history[0]["loss_cos"] == 0.0 and r.history[0]["loss_ce"] > 0


class _Crash(Hook):
    at = 3

    def on_step_begin(self, ctx):
        if ctx.step == self.at:
            raise RuntimeError("crash")


def test_checkpoint_resume_with_a_teacher_and_another_teacher_is_refused(folders, tmp_path):
    out = tmp_path / "run"
    kw = dict(objective="gkd", model=folders["student"], teacher=folders["teacher"], data=folders["data"],
              batch_size=4, max_steps=4, save_steps=2, learning_rate=1e-2, output_dir=str(out), **FAST)  # fmt: skip
    crash = _Crash()
    with pytest.raises(RuntimeError, match="crash"):
        ak.train(hooks=[crash], **kw)
    assert (out / "checkpoint-2").is_dir()
    crash.at = -1  # the same run (same hook class) resumed; it no longer fires
    resumed = ak.train(hooks=[crash], resume=True, **kw)
    full = ak.train(hooks=[crash], **{**kw, "output_dir": str(tmp_path / "full")})
    hist = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in hist] == [1, 2, 3, 4] and [h["step"] for h in resumed.history] == [1, 2, 3, 4]
    assert [h["loss"] for h in hist] == pytest.approx([h["loss"] for h in full.history], rel=1e-5)
    with pytest.raises(OutputDirError, match="config"):
        ak.train(hooks=[crash], resume=True, **{**kw, "teacher": folders["teacher2"]})


def test_one_teacher_forward_per_micro_batch_even_with_sam(folders):
    teacher, student = _load(folders["teacher"]), _load(folders["student"])
    calls = {"teacher": 0, "student": 0}
    teacher.model.register_forward_hook(lambda *a: calls.__setitem__("teacher", calls["teacher"] + 1))
    student.model.register_forward_hook(lambda *a: calls.__setitem__("student", calls["student"] + 1))
    ak.train(objective="gkd", model=student, tokenizer=folders["student"], teacher=teacher, data=folders["data"],
             batch_size=2, grad_accum=2, max_steps=3, **FAST)  # fmt: skip
    assert calls == {"teacher": 6, "student": 6}
    calls.update(teacher=0, student=0)
    ak.train(objective="gkd", model=student, tokenizer=folders["student"], teacher=teacher, data=folders["data"],
             batch_size=2, grad_accum=2, max_steps=3, optimizer="sam", **FAST)  # fmt: skip
    assert calls == {"teacher": 6, "student": 12}  # SAM's second pass: the student again, the teacher's kept


DDP_SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
import alignkit as ak
student, teacher, data, bs = sys.argv[1:5]
r = ak.train(objective="distilbert", model=student, teacher=teacher, data=data, max_steps=3, batch_size=int(bs),
             learning_rate=1e-2, progress=False, tensorboard=False, seed=3)
import torch.distributed as dist
if not dist.is_initialized() or dist.get_rank() == 0:
    print("HIST", json.dumps([h["loss"] for h in r.history]))
"""


@pytest.mark.slow
def test_ddp_two_processes_equal_one(folders, tmp_path):
    """The teacher on every rank, the student DDP-wrapped: 2 x 4 rows per step equal 1 x 8 (per-token weights
    summed over ranks)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}  # fmt: skip
    args = [folders["student"], folders["teacher"], folders["data"]]
    runs = []
    for cmd, bs in (([sys.executable], 8), ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                                              "2", "--standalone"], 4)):  # fmt: skip
        p = subprocess.run(
            [*cmd, str(script), *args, str(bs)], env=env, capture_output=True, text=True, timeout=600
        )
        assert p.returncode == 0, p.stderr[-3000:]
        runs.append(json.loads(p.stdout.split("HIST", 1)[1].strip().splitlines()[0]))
    assert runs[1] == pytest.approx(runs[0], rel=1e-4), runs
