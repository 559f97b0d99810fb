"""Base models: deterministic builds, the XDG cache, rebuilding a corrupt cache, bad configs."""

from __future__ import annotations

import pytest
import torch

from alignkit.testbed import BaseModelConfig, cache_root, get_base_model


def test_cache_root_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("ALIGNKIT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_root() == tmp_path / "alignkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root().parts[-2:] == (".cache", "alignkit")


def test_build_is_cached_and_deterministic(tiny_sentiment, tiny_cache, tiny_config, tmp_path):
    base = tiny_sentiment
    assert base.path.parent == tiny_cache / "testbed"
    assert base.path.name.startswith("sentiment-")
    assert (base.path / "meta.json").is_file()
    assert base.stats["steps"] == 30 and base.stats["train_loss_ema"] < 6.3  # ln 512 = 6.24 at init
    again = get_base_model("sentiment", tiny_config(), cache_dir=tiny_cache, progress=False)
    assert again.loaded_from_cache
    for (n, p), (_, q) in zip(base.model.state_dict().items(), again.model.state_dict().items(), strict=True):
        assert torch.equal(p, q), n
    # an independent build in another folder gives the same weights and tokenizer
    fresh = get_base_model("sentiment", tiny_config(), cache_dir=tmp_path, progress=False)
    assert not fresh.loaded_from_cache
    assert fresh.tokenizer.get_vocab() == base.tokenizer.get_vocab()
    for (n, p), (_, q) in zip(base.model.state_dict().items(), fresh.model.state_dict().items(), strict=True):
        assert torch.equal(p, q), n


def test_corrupt_cache_is_rebuilt(tiny_config, tmp_path):
    cfg = tiny_config(pretrain_steps=5)
    first = get_base_model("sentiment", cfg, cache_dir=tmp_path, progress=False)
    weights = next(first.path.glob("*.safetensors"))
    weights.write_bytes(b"garbage")
    second = get_base_model("sentiment", cfg, cache_dir=tmp_path, progress=False)
    assert not second.loaded_from_cache
    third = get_base_model("sentiment", cfg, cache_dir=tmp_path, progress=False)
    assert third.loaded_from_cache
    # a different config is a different cache entry
    other = get_base_model("sentiment", tiny_config(pretrain_steps=6), cache_dir=tmp_path, progress=False)
    assert other.path != third.path


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="pretrain_steps"):
        BaseModelConfig(pretrain_steps=0)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        BaseModelConfig(hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="vocab_size"):
        BaseModelConfig(vocab_size=100)
    with pytest.raises(ValueError, match="config.task is 'arith'"):
        get_base_model("sentiment", BaseModelConfig(task="arith"))


def test_arith_base_model_builds(tiny_config, tmp_path):
    base = get_base_model("arith", tiny_config("arith", pretrain_steps=5), cache_dir=tmp_path, progress=False)
    ids = base.tokenizer("12+34=", add_special_tokens=False)["input_ids"]
    assert base.tokenizer.decode(ids) == "12+34="
    assert base.model.config.vocab_size == len(base.tokenizer)


def test_cache_path_follows_task_settings(tmp_path):
    from alignkit.testbed.model import model_path
    from alignkit.testbed.tasks import ArithTask

    cfg = ArithTask().base_config()
    default, two = (
        model_path(ArithTask(max_digits=3, curriculum=False), cfg, tmp_path),
        model_path(ArithTask(max_digits=2, curriculum=False), cfg, tmp_path),
    )
    assert default != two and default.name == f"arith-{cfg.key()}" and two.name == f"arith-d2-{cfg.key()}"
