"""TrainConfig validation, generated CLI flags, hyper-parameter ranges, and the one-line user-error path."""

import dataclasses
import json
import shutil

import pytest
import torch

from alignkit.cli.main import build_parser, main
from alignkit.errors import ConfigError, HyperParameterError, UserError
from alignkit.registry import get, register_objective
from alignkit.train.config import TrainConfig, callable_spec, flag_of


def reward_len(prompt_ids, completion_ids):  # importable by name: config.yaml can hold it
    return [float(len(c)) for c in completion_ids]


@pytest.fixture
def data_file(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text(
        "".join(json.dumps({"prompt": f"q{i}", "chosen": "a b", "rejected": "c"}) + "\n" for i in range(4))
    )
    return f


# --- typed config ----------------------------------------------------------------------------------------------


def test_values_are_coerced_to_the_field_type():
    cfg = TrainConfig(learning_rate="1e-5", max_steps="3", adam_betas=[0.8, 0.9], max_grad_norm=0, epochs=2)
    assert cfg.learning_rate == 1e-5 and isinstance(cfg.learning_rate, float)
    assert cfg.max_steps == 3 and cfg.adam_betas == (0.8, 0.9) and cfg.max_grad_norm is None
    assert isinstance(cfg.epochs, float)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_steps", "two", r"max_steps \(--max-steps\): input should be a valid integer"),
        ("max_steps", 2.7, r"max_steps \(--max-steps\): .*fractional part; got 2.7"),
        (
            "hyper_parameters",
            5,
            r"hyper_parameters \(--hyper-parameters\): input should be a valid dictionary",
        ),
        ("learning_rate", 0, r"learning_rate \(--learning-rate\): must be in \(0, inf\); got 0.0"),
        ("learning_rate", float("nan"), r"learning_rate .*got nan"),
        ("warmup_ratio", 5, r"warmup_ratio \(--warmup-ratio\): must be in \[0, 1\]; got 5.0"),
        ("batch_size", True, r"batch_size \(--batch-size\): takes a number"),
        ("mode", "pairwise", r"mode \(--mode\): must be one of auto, sft"),
        ("output_dir", 5, r"output_dir \(--output\): input should be a valid string"),
        ("adam_betas", (0.9, 1.0), r"adam_betas .* must be in \[0, 1\)"),
        ("reward_fn", "nomodule", r"reward_fn \(--reward-fn\): must be 'module:function'"),
        (
            "reward_fn",
            "<in-memory function f: not re-runnable>",
            r"reward_fn .*in-memory object of an earlier run",
        ),
    ],
)
def test_bad_values_name_the_field_and_flag(field, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{field: value})


def test_every_problem_is_listed_at_once():
    with pytest.raises(ConfigError) as exc:
        TrainConfig(learning_rate=-1, warmup_ratio=2, batch_size=0)
    assert all(f in str(exc.value) for f in ("learning_rate", "warmup_ratio", "batch_size"))


def test_reward_fn_is_written_re_runnable_or_marked(tmp_path):
    cfg = TrainConfig(reward_fn=f"{__name__}:reward_len")
    assert cfg.reward_fn is reward_len
    assert cfg.to_dict()["reward_fn"] == f"{__name__}:reward_len"
    assert TrainConfig(**{**cfg.to_dict(), "hooks": ()}).reward_fn is reward_len  # round trip
    local = TrainConfig(reward_fn=lambda p, c: [0.0] * len(c)).to_dict()["reward_fn"]
    assert local.startswith("<in-memory function <lambda>") and "--reward-fn module:function" in local
    with pytest.raises(ConfigError, match="in-memory object"):
        TrainConfig(reward_fn=local)
    assert callable_spec(lambda: 0) is None


# --- generated flags -------------------------------------------------------------------------------------------


def _train_parser():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices["train"]


def test_every_field_has_a_flag_with_help_and_default():
    import alignkit.cli.train as cli_train

    assert not hasattr(cli_train, "_FLAGS") and not hasattr(cli_train, "_SWITCHES")
    actions = {a.dest: a for a in _train_parser()._actions}
    for f in dataclasses.fields(TrainConfig):
        assert f.name in actions, f.name
        a = actions[f.name]
        assert flag_of(f) in a.option_strings
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        assert f.metadata["help"] and a.help.endswith(f"[{default!r}]".replace("%", "%%")), f.name


def test_generated_flags_parse_into_a_config(model_dir, data_file):
    from alignkit.cli.train import resolve_config

    args = build_parser().parse_args(
        [
            "train", "--model", str(model_dir), "--data", str(data_file), "--packing", "--no-progress",
            "--adam-betas", "0.8", "0.95", "--lora-target-modules", "q_proj", "v_proj", "--token-budget", "64",
            "--bf16", "--no-shared-prompt", "--max-steps", "2", "--hyper-parameters", "{beta: 0.3}",
            "--label-smoothing", "0.1", "--objective", "dpo", "--output-dir", "o",
        ]
    )  # fmt: skip
    cfg = resolve_config(args)
    assert cfg.packing is True and cfg.progress is False and cfg.bf16 is True and cfg.shared_prompt is False
    assert cfg.adam_betas == (0.8, 0.95) and cfg.lora_target_modules == ["q_proj", "v_proj"]
    assert cfg.token_budget == 64 and cfg.max_steps == 2 and cfg.output_dir == "o"
    assert cfg.hyper_parameters == {"beta": 0.3, "label_smoothing": 0.1}


def test_yaml_strings_are_coerced_and_bad_yaml_fails_before_anything_is_written(
    model_dir, data_file, tmp_path, capsys
):
    from alignkit.cli.train import resolve_config

    y = tmp_path / "c.yaml"
    y.write_text(
        f"model: {model_dir}\ndata: {data_file}\nlearning_rate: 1e-5\nhyper_parameters: {{beta: 2e-1}}\n"
    )
    cfg = resolve_config(build_parser().parse_args(["train", "--config", str(y)]))
    assert cfg.learning_rate == 1e-5 and cfg.hyper_parameters == {"beta": 0.2}
    out = tmp_path / "out"
    for body, message in (
        ('max_steps: "two"', "max_steps (--max-steps): input should be a valid integer"),
        ("max_steps: 2.7", "fractional part; got 2.7"),
        ("hyper_parameters: 5", "hyper_parameters must be a mapping"),
        ("learning_rate: [", f"{y} line 5: invalid YAML"),  # PyYAML marks where the stream ended
    ):
        y.write_text(f"model: {model_dir}\ndata: {data_file}\noutput_dir: {out}\n{body}\n")
        assert main(["train", "--config", str(y)]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1, err
        assert not out.exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--beta", "-1"], "objective 'dpo': beta (--beta) must be in (0, inf); got -1.0"),
        (["--beta", "0"], "beta (--beta) must be in (0, inf); got 0"),
        (["--beta", ".nan"], "beta (--beta) must be in (0, inf); got nan"),
        (["--label-smoothing", "0.7"], "label_smoothing (--label-smoothing) must be in [0, 0.5]"),
        (["--beta", "abc"], "beta (--beta) takes a number; got 'abc'"),
        (["--warmup-ratio", "5"], "warmup_ratio (--warmup-ratio): must be in [0, 1]"),
        (["--learning-rate", "0"], "learning_rate (--learning-rate): must be in (0, inf)"),
        (["--ld-alpha", "1", "--objective", "simpo"], "objective 'simpo' has no hyper-parameter --ld-alpha"),
    ],
)
def test_cli_refuses_out_of_range_values_in_one_line(model_dir, data_file, tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    rc = main(["train", "--model", str(model_dir), "--data", str(data_file), "--output", str(out), *flags])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.count("\n") == 1, err
    assert not out.exists()


# --- hyper-parameter ranges ------------------------------------------------------------------------------------


def test_resolve_checks_ranges_and_coerces():
    dpo = get("dpo")
    assert dpo.resolve(beta="0.5")["beta"] == 0.5 and dpo.resolve(beta=1)["beta"] == 1.0
    assert dpo.resolve(ld_alpha=None)["ld_alpha"] is None and dpo.resolve(ld_alpha="0.5")["ld_alpha"] == 0.5
    for bad in (
        {"beta": -1.0},
        {"beta": 0.0},
        {"beta": float("nan")},
        {"ld_alpha": 1.5},
        {"f_divergence_type": "kl"},
    ):
        with pytest.raises(HyperParameterError, match="must be"):
            dpo.resolve(**bad)
    with pytest.raises(HyperParameterError, match="takes true/false"):
        dpo.resolve(use_weighting="maybe")
    assert dpo.resolve(beta=torch.tensor(0.2))["beta"].item() == pytest.approx(0.2)
    from alignkit.types import PreferenceBatch

    lp = -torch.ones(2, 3)
    with pytest.raises(HyperParameterError):  # the call path checks too
        dpo(
            PreferenceBatch(chosen_logps=lp, rejected_logps=lp, ref_chosen_logps=lp, ref_rejected_logps=lp),
            beta=-1,
        )


@pytest.fixture
def scratch_registry():
    """Objectives registered by a test are removed after it (the README catalogue test reads the registry)."""
    from alignkit import registry

    yield
    for name in [n for n in registry._REGISTRY if n.startswith("_test_ranges")]:
        del registry._REGISTRY[name]
    for key in [k for k, v in registry._ALIASES.items() if v.startswith("_test_ranges")]:
        del registry._ALIASES[key]


def test_register_objective_ranges_parameter(scratch_registry):
    def fn(batch, *, beta: float = 0.1, nll: str = "sum", k: int = 3):
        return batch

    obj = register_objective(
        name="_test_ranges_obj",
        paper="t",
        arxiv="0",
        ranges={"beta": "[0, 1]", "nll": ("sum", "mean"), "k": "[1, 5]"},
    )(fn)
    assert obj.resolve(beta=0.0, nll="mean", k=5) == {
        "beta": 0.0,
        "nll": "mean",
        "k": 5,
    }  # declared beats the table
    for bad in ({"beta": 1.5}, {"nll": "max"}, {"k": 6}):
        with pytest.raises(HyperParameterError):
            obj.resolve(**bad)
    assert obj.to_dict()["ranges"] == {"beta": "[0, 1]", "nll": "one of 'sum', 'mean'", "k": "[1, 5]"}
    with pytest.raises(ValueError, match="default beta=0.1 lies outside its range"):
        register_objective(name="_test_ranges_bad", paper="t", arxiv="0", ranges={"beta": "[1, 2]"})(fn)
    with pytest.raises(ValueError, match="not hyper-parameters"):
        register_objective(name="_test_ranges_bad2", paper="t", arxiv="0", ranges={"gamma": "[1, 2]"})(fn)


def test_every_registered_default_lies_in_its_range():
    from alignkit.hyperparameters import DEFAULT_RANGES, _in_range, parse_range
    from alignkit.registry import list_objectives

    used = set()
    for obj in list_objectives():
        for name, rng in obj.valid_ranges.items():
            default = obj.defaults[name]
            assert default is None or _in_range(default, rng), (obj.name, name)
        used |= set(obj.valid_ranges)
    assert {"beta", "label_smoothing"} <= used
    for spec in DEFAULT_RANGES.values():
        parse_range(spec)


# --- one line for user errors, traceback for bugs --------------------------------------------------------------


def _run_with(monkeypatch, exc):
    import alignkit.cli.train as cli_train

    def boom(args):
        raise exc

    monkeypatch.setattr(cli_train, "run", boom)
    return main(["train", "--model", "m", "--data", "d"])


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (UserError("data.jsonl row 3: field 'chosen' is empty"), "data.jsonl row 3: field 'chosen' is empty"),
        (
            FileNotFoundError(2, "No such file or directory", "/nope/model"),
            "/nope/model: No such file or directory",
        ),
        (
            OSError(28, "No space left on device", "/out/model.safetensors"),
            "no space left on device writing /out",
        ),
        (
            RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0"),
            "no space left on device",
        ),
        (shutil.SameFileError("'a' and 'a' are the same file"), "are the same file"),
    ],
)
def test_user_errors_are_one_line(monkeypatch, capsys, exc, message):
    assert _run_with(monkeypatch, exc) == 2
    err = capsys.readouterr().err
    assert err.startswith("alignkit train: error: ") and message in err and err.count("\n") == 1, err


def test_yaml_and_safetensors_errors_are_one_line(monkeypatch, capsys, tmp_path):
    import yaml
    from safetensors import SafetensorError

    for exc in (yaml.YAMLError("bad"), SafetensorError("header too large")):
        assert _run_with(monkeypatch, exc) == 2
        assert capsys.readouterr().err.count("\n") == 1


def test_ctrl_c_stops_cleanly(monkeypatch, capsys):
    assert _run_with(monkeypatch, KeyboardInterrupt()) == 130
    err = capsys.readouterr().err
    assert err == "alignkit train: interrupted\n"


@pytest.mark.parametrize("exc", [TypeError("unsupported operand"), KeyError("logps"), AttributeError("x")])
def test_bugs_keep_their_traceback(monkeypatch, exc):
    with pytest.raises(type(exc)):
        _run_with(monkeypatch, exc)


def test_unknown_component_is_a_user_error_and_still_a_key_error():
    with pytest.raises(UserError, match="no component named 'dpoo'") as exc:
        get("dpoo")
    assert isinstance(exc.value, KeyError)
