"""Outputs Hugging Face tools read (#15 items 9, 10): ``checkpoint-N`` as a ``save_pretrained`` folder (the adapter
only under LoRA) with the tokenizer and alignkit's resume state beside it; the input dtype kept; ``--dtype``,
``--bf16``, ``--fp16``; ``--report-to``; ``fast_paths.json``; the QLoRA guard."""

import json
import sys

import pytest
import torch
from safetensors.torch import load_file

import alignkit as ak
from alignkit.engine.tiny import char_tokenizer, tiny_llama
from alignkit.errors import ConfigError, UserError
from alignkit.train import TrainConfig
from alignkit.train import precision as P
from tests.stop_hook import StopAt

ROWS = [{"prompt": f"q{i % 3}:", "chosen": [" good", " fine"][i % 2], "rejected": " bad"} for i in range(8)]
KW = dict(objective="dpo", data=ROWS, max_steps=4, batch_size=2, learning_rate=1e-2, progress=False)


def _interrupted_then_resumed(tmp_path, name, **kw):
    """The run stopped at step 3 (after checkpoint-2), then resumed; and the same run uninterrupted."""
    out = tmp_path / name
    with pytest.raises(KeyboardInterrupt):
        ak.train(**{**KW, **kw}, output_dir=str(out), save_steps=2, hooks=[StopAt(3)])
    resumed = ak.train(**{**KW, **kw}, output_dir=str(out), save_steps=2, hooks=[StopAt(0)], resume=True)
    full = ak.train(**{**KW, **kw}, hooks=[StopAt(0)])
    assert [h["step"] for h in resumed.history] == [1, 2, 3, 4]
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in full.history], abs=1e-6)
    return out, resumed, full


@pytest.fixture(scope="module")
def bf16_dir(tmp_path_factory):
    """A tiny Llama saved in bf16 (``config.json`` says so), with its tokenizer."""
    d = tmp_path_factory.mktemp("tiny-bf16")
    tok = char_tokenizer()
    tiny_llama(vocab_size=len(tok), hidden_size=32).to(torch.bfloat16).save_pretrained(d)
    tok.save_pretrained(d)
    return d


# --- checkpoint-N ------------------------------------------------------------------------------------------------


def test_checkpoint_is_a_save_pretrained_folder_and_resumes_to_the_uninterrupted_run(model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out, resumed, _ = _interrupted_then_resumed(tmp_path, "full", model=str(model_dir), reference="model")
    ckpt = out / "checkpoint-2"
    names = {p.name for p in ckpt.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= names  # what HF tools read
    assert {"optimizer.pt", "scheduler.pt", "rng_state_0.pt", "trainer_state.json", "manifest.json"} <= names
    assert (
        "master_weights.safetensors" not in names
    )  # fp32 saved as fp32: the saved weights are the trained ones
    model = AutoModelForCausalLM.from_pretrained(ckpt)
    assert AutoTokenizer.from_pretrained(ckpt)("ab")["input_ids"]
    saved = load_file(str(ckpt / "model.safetensors"))
    base = load_file(str(model_dir / "model.safetensors"))
    assert all(torch.equal(saved[k], model.state_dict()[k]) for k in saved)
    assert any(not torch.equal(saved[k], base[k]) for k in saved)  # trained two steps
    final = AutoModelForCausalLM.from_pretrained(out)  # the final folder: the resumed run's weights
    for k, v in resumed.model.state_dict().items():
        assert torch.equal(final.state_dict()[k], v), k
    for f in ("optimizer.pt", "scheduler.pt", "rng_state_0.pt"):  # the resume state loads without pickles
        torch.load(ckpt / f, weights_only=True)


def test_lora_checkpoint_holds_the_adapter_only_and_resumes(model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out, resumed, full = _interrupted_then_resumed(
        tmp_path, "lora", model=str(model_dir), lora=True, lora_r=4
    )
    ckpt = out / "checkpoint-2"
    names = {p.name for p in ckpt.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= names
    assert not names & {"model.safetensors", "master_weights.safetensors"}  # no copy of the base
    adapter = (ckpt / "adapter_model.safetensors").stat().st_size
    assert adapter < (model_dir / "model.safetensors").stat().st_size / 2
    loaded = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(model_dir), out
    )  # the final adapter
    ids = torch.tensor([[3, 5, 7, 9]])
    resumed.model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, resumed.model(input_ids=ids).logits, atol=1e-6)
    a = {k: v for k, v in resumed.model.state_dict().items() if "lora_" in k}
    b = {k: v for k, v in full.model.state_dict().items() if "lora_" in k}
    assert a and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    at2 = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), ckpt)
    b2 = {k: v for k, v in at2.state_dict().items() if "lora_B" in k}
    assert b2 and any(v.abs().sum() > 0 for v in b2.values())  # trained (lora_B starts at zero)


# --- dtype -------------------------------------------------------------------------------------------------------


def test_a_bf16_model_comes_back_bf16_and_resumes_from_its_fp32_master_weights(bf16_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    out, resumed, _ = _interrupted_then_resumed(tmp_path, "bf16", model=str(bf16_dir), reference="model")
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert {v.dtype for v in load_file(str(out / "model.safetensors")).values()} == {torch.bfloat16}
    final = AutoModelForCausalLM.from_pretrained(out)
    assert next(final.parameters()).dtype == torch.bfloat16
    # the model was trained in fp32 (master weights); the saved folder is that model rounded to bf16
    assert next(resumed.model.parameters()).dtype == torch.float32
    for k, v in final.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k].to(torch.bfloat16)), k
    ckpt = out / "checkpoint-2"
    assert json.loads((ckpt / "config.json").read_text())["dtype"] == "bfloat16"
    master = load_file(str(ckpt / "master_weights.safetensors"))
    assert {v.dtype for v in master.values()} == {torch.float32}  # resume reads these: exact, not rounded
    assert json.loads((out / "fast_paths.json").read_text())["saved_dtype"] == "bfloat16"


def test_dtype_flag_sets_the_saved_dtype(model_dir, bf16_dir, tmp_path):
    kw = {**KW, "max_steps": 1, "reference": "model", "report_to": "none"}
    ak.train(**kw, model=str(model_dir), dtype="bfloat16", output_dir=str(tmp_path / "a"))
    assert json.loads((tmp_path / "a" / "config.json").read_text())["dtype"] == "bfloat16"
    assert {v.dtype for v in load_file(str(tmp_path / "a" / "model.safetensors")).values()} == {
        torch.bfloat16
    }
    ak.train(**kw, model=str(bf16_dir), dtype="float32", output_dir=str(tmp_path / "b"))
    assert json.loads((tmp_path / "b" / "config.json").read_text())["dtype"] == "float32"
    assert {v.dtype for v in load_file(str(tmp_path / "b" / "model.safetensors")).values()} == {torch.float32}


def test_saved_dtype_and_source_dtype(bf16_dir, model_dir):
    assert P.source_dtype(bf16_dir) == torch.bfloat16 and P.source_dtype(model_dir) == torch.float32
    assert P.source_dtype(torch.nn.Linear(2, 2).half()) == torch.float16
    assert P.saved_dtype("auto", torch.bfloat16) == torch.bfloat16
    assert P.saved_dtype("auto", None) == torch.float32
    assert P.saved_dtype("float16", torch.float32) == torch.float16


# --- compute precision -------------------------------------------------------------------------------------------


def test_fp16_on_cpu_is_refused_at_start_and_bf16_with_fp16_too(model_dir, tmp_path):
    out = tmp_path / "fp16"
    with pytest.raises(UserError, match="--fp16 .* needs a CUDA GPU; this run is on cpu"):
        ak.train(**KW, model=str(model_dir), fp16=True, output_dir=str(out))
    assert not out.exists()  # refused before anything was written
    with pytest.raises(UserError, match="--bf16 and --fp16 are both set"):
        ak.train(**KW, model=str(model_dir), fp16=True, bf16=True)


def test_bf16_on_cpu_is_autocast_over_fp32_weights(model_dir, capsys):
    kw = {**KW, "max_steps": 2, "reference": "model", "model": str(model_dir)}
    fp32 = ak.train(**kw)
    bf16 = ak.train(**kw, bf16=True)
    assert bf16.fast_paths["compute_dtype"] == "bfloat16" and fp32.fast_paths["compute_dtype"] == "float32"
    assert next(bf16.model.parameters()).dtype == torch.float32
    assert bf16.history[0]["loss"] == pytest.approx(fp32.history[0]["loss"], abs=2e-2)  # policy == ref: log 2
    assert bf16.history[1]["loss"] != fp32.history[1]["loss"]  # the forward really ran in bf16
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in bf16.history)
    # in-memory runs (no output folder) stay quiet
    assert "alignkit fast paths" not in capsys.readouterr().err


def test_the_grad_scaler_path_scales_steps_and_resumes(model_dir, tmp_path, monkeypatch):
    """fp16 + GradScaler runs on CUDA only; its code path (scale, unscale before clipping, step, update, the
    scaler's state in checkpoints) is run here with CPU fp16 autocast and a CPU GradScaler."""
    made = []

    def scaler(dtype, device):
        made.append(torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=2))
        return made[-1]

    monkeypatch.setattr(P, "check_compute", lambda cfg, device: None)
    monkeypatch.setattr(P, "grad_scaler", scaler)
    out, resumed, full = _interrupted_then_resumed(
        tmp_path, "fp16", model=str(model_dir), reference="model", fp16=True, report_to="none"
    )
    assert resumed.fast_paths["compute_dtype"] == "float16"
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert state["grad_scaler"]["scale"] == 2.0**11  # two finite steps: grown once (growth_interval=2)
    assert made[-1].get_scale() == made[-2].get_scale() == 2.0**12  # resumed and uninterrupted: the same
    fp32 = ak.train(**{**KW, "max_steps": 1}, model=str(model_dir), reference="model", hooks=[StopAt(0)])
    # unscaled before clipping and logging: the fp32 run's norm, not 2**10 times it
    assert full.history[0]["grad_norm"] == pytest.approx(fp32.history[0]["grad_norm"], rel=0.05)


# --- report_to, fast paths -----------------------------------------------------------------------------------------


def test_tensorboard_gets_the_history_scalars_and_fast_paths_are_written_and_printed_once(
    model_dir, tmp_path, capsys
):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    ak.train(**KW, model=str(model_dir), reference="model", report_to=["tensorboard"], output_dir=str(out))
    hist = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    for key in ("loss", "grad_norm", "rewards/margins"):
        tag = f"train/{key}" if "/" not in key else key
        got = [(e.step, e.value) for e in acc.Scalars(tag)]
        assert got == [(h["step"], pytest.approx(h[key], rel=1e-6)) for h in hist], key
    fast = json.loads((out / "fast_paths.json").read_text())
    assert (
        fast["packing"] in (True, False)
        and fast["reference"] == "model"
        and fast["compute_dtype"] == "float32"
    )
    assert capsys.readouterr().err.count("alignkit fast paths:") == 1


def test_report_to_none_and_no_tensorboard_write_no_logs(model_dir, tmp_path):
    for name, kw in (("none", {"report_to": "none"}), ("off", {"tensorboard": False})):
        ak.train(**{**KW, "max_steps": 1}, model=str(model_dir), output_dir=str(tmp_path / name), **kw)
        assert not (tmp_path / name / "tensorboard").exists() and (tmp_path / name / "history.jsonl").exists()


def test_a_logger_that_is_not_installed_is_refused_at_start(model_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed (find_spec cannot see it)
    from alignkit.train.logger import report_targets

    out = tmp_path / "wb"
    with pytest.raises(
        UserError, match=r"report_to wandb: the wandb package is not installed \(pip install wandb\)"
    ):
        ak.train(**KW, model=str(model_dir), report_to=["tensorboard", "wandb"], output_dir=str(out))
    assert not out.exists()
    cfg = TrainConfig(report_to="all")
    assert report_targets(cfg) == ["tensorboard"]  # all: the installed ones
    assert report_targets(cfg.replace(tensorboard=False)) == []
    with pytest.raises(UserError, match="'none' with other loggers"):
        report_targets(TrainConfig(report_to=["none", "wandb"]))


def test_wandb_offline_logs_the_history_scalars(model_dir, tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logged = []
    real_init = wandb.init

    def init(**kw):
        run = real_init(**kw)
        orig = run.log
        run.log = lambda data, step=None, **k: (
            logged.append((step, dict(data))),
            orig(data, step=step, **k),
        )[1]
        return run

    monkeypatch.setattr(wandb, "init", init)
    out = tmp_path / "wb"
    ak.train(**{**KW, "max_steps": 2}, model=str(model_dir), report_to="wandb", output_dir=str(out))
    hist = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert [s for s, _ in logged] == [h["step"] for h in hist]
    assert [d["train/loss"] for _, d in logged] == pytest.approx([h["loss"] for h in hist])
    assert (out / "wandb").is_dir() and not (out / "tensorboard").exists()


def test_report_to_and_precision_flags_take_trl_names(model_dir, tmp_path):
    from alignkit.cli.main import build_parser
    from alignkit.cli.train import resolve_config

    args = build_parser().parse_args(
        ["train", "--model", str(model_dir), "--data", "x.jsonl", "--report_to", "tensorboard", "wandb",
         "--bf16", "--torch_dtype", "bfloat16", "--load_in_4bit", "--lora", "--bnb_4bit_quant_type", "fp4"]
    )  # fmt: skip
    cfg = resolve_config(args)
    assert cfg.report_to == ["tensorboard", "wandb"] and cfg.bf16 is True and cfg.dtype == "bfloat16"
    assert cfg.load_in_4bit and cfg.bnb_4bit_quant_type == "fp4"
    with pytest.raises(ConfigError, match="'mlflow' is not a logger"):
        TrainConfig(report_to="mlflow")
    with pytest.raises(
        ConfigError, match=r"dtype \(--dtype\): must be one of auto, float32, bfloat16, float16"
    ):
        TrainConfig(dtype="float64")


# --- QLoRA -------------------------------------------------------------------------------------------------------


def test_load_in_4bit_is_refused_at_start_naming_what_is_missing(model_dir, tmp_path):
    out = tmp_path / "q"
    with pytest.raises(UserError) as err:
        ak.train(**KW, model=str(model_dir), load_in_4bit=True, output_dir=str(out))
    msg = str(err.value)
    assert "lora=True" in msg and ("a CUDA GPU" in msg or torch.cuda.is_available())
    assert not out.exists()
    cfg = TrainConfig(model=str(model_dir), load_in_4bit=True, lora=True)
    with pytest.raises(
        UserError, match=r"needs a CUDA GPU .*; the bitsandbytes package \(pip install bitsandbytes\)"
    ):
        P.check_4bit(cfg, cuda=False, bnb=False)
    with pytest.raises(UserError, match="needs the bitsandbytes package"):
        P.check_4bit(cfg, cuda=True, bnb=False)
    P.check_4bit(cfg, cuda=True, bnb=True)  # everything there: no error
    with pytest.raises(UserError, match="in-memory model"):
        P.check_4bit(cfg.replace(model=tiny_llama()), cuda=True, bnb=True)


def test_load_in_4bit_builds_trls_quantization_config_and_prepares_the_model(monkeypatch):
    import peft
    import transformers

    cfg = TrainConfig(model="m", load_in_4bit=True, lora=True, use_bnb_nested_quant=True)
    q = P.quantization_config(cfg, torch.bfloat16)
    assert q.load_in_4bit and q.bnb_4bit_compute_dtype == torch.bfloat16
    assert q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_use_double_quant is True
    seen = {}

    def from_pretrained(path, **kw):
        seen.update(kw, path=path)
        return "base"

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    monkeypatch.setattr(peft, "prepare_model_for_kbit_training", lambda m, **kw: ("prepared", m, kw))
    got = P.load_4bit(cfg, "m", torch.bfloat16, torch.device("cuda", 1))
    assert got[0] == "prepared" and got[1] == "base" and got[2]["use_gradient_checkpointing"] is False
    assert seen["path"] == "m" and seen["device_map"] == {"": 1} and seen["dtype"] == torch.bfloat16
    assert seen["quantization_config"].load_in_4bit
