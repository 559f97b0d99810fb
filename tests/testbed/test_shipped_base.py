"""The default base model ships in the package (so the main job does not pretrain on first use), is checked against
its SHA-256 before use, and a damaged shipped copy is never used silently."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import alignkit.testbed.model as model_mod
from alignkit.testbed import get_base_model, get_task
from alignkit.testbed.model import _sha256, model_path


def _no_pretraining(*args, **kwargs):
    raise AssertionError("pretrain() was called: the shipped copy should have been used")


def test_default_sentiment_base_model_is_shipped_and_used_without_pretraining(tmp_path, monkeypatch):
    task = get_task("sentiment")
    config = task.base_config()
    shipped = model_mod.SHIPPED_DIR / model_path(task, config, tmp_path).name
    meta = json.loads((shipped / "meta.json").read_text())
    assert meta["key"] == config.key(), "the shipped model is stale: run python tools/ship_base_model.py"
    for name, digest in meta["files"].items():  # the shipped files are the ones the checksums name
        assert _sha256(shipped / name) == digest, name

    monkeypatch.setattr(model_mod, "pretrain", _no_pretraining)
    base = get_base_model("sentiment", cache_dir=tmp_path, progress=False)
    assert base.from_shipped and base.path.parent == tmp_path / "testbed"
    assert sum(p.numel() for p in base.model.parameters()) == meta["stats"]["parameters"]
    # the copy in the cache is the shipped one; the next call loads it from the cache
    assert _sha256(base.path / "model.safetensors") == meta["files"]["model.safetensors"]
    again = get_base_model("sentiment", cache_dir=tmp_path, progress=False)
    assert again.loaded_from_cache and not again.from_shipped
    # it is a trained model, not a fresh initialisation: the held-out loss is the recorded one, far below log(V)
    assert meta["stats"]["heldout_loss"] < 0.7 * torch.log(torch.tensor(float(config.vocab_size))).item()


def test_shipped_copy_is_checked_and_a_damaged_one_is_rebuilt_with_a_warning(
    tiny_config, tmp_path, monkeypatch
):
    cfg = tiny_config(pretrain_steps=5)
    built = get_base_model("sentiment", cfg, cache_dir=tmp_path / "build", progress=False)
    fake_ship = tmp_path / "shipped"
    shutil.copytree(built.path, fake_ship / built.path.name)
    monkeypatch.setattr(model_mod, "SHIPPED_DIR", fake_ship)

    real_pretrain = model_mod.pretrain
    monkeypatch.setattr(model_mod, "pretrain", _no_pretraining)
    used = get_base_model("sentiment", cfg, cache_dir=tmp_path / "user1", progress=False)
    assert used.from_shipped
    for (n, p), (_, q) in zip(built.model.state_dict().items(), used.model.state_dict().items(), strict=True):
        assert torch.equal(p, q), n

    (fake_ship / built.path.name / "model.safetensors").write_bytes(b"damaged")
    monkeypatch.setattr(model_mod, "pretrain", real_pretrain)
    with pytest.warns(UserWarning, match="does not match its recorded checksums"):
        rebuilt = get_base_model("sentiment", cfg, cache_dir=tmp_path / "user2", progress=False)
    assert not rebuilt.from_shipped and not rebuilt.loaded_from_cache


def test_rebuild_ignores_the_shipped_copy(tiny_config, tmp_path, monkeypatch):
    cfg = tiny_config(pretrain_steps=5)
    built = get_base_model("sentiment", cfg, cache_dir=tmp_path / "build", progress=False)
    shutil.copytree(built.path, tmp_path / "shipped" / built.path.name)
    monkeypatch.setattr(model_mod, "SHIPPED_DIR", tmp_path / "shipped")
    fresh = get_base_model("sentiment", cfg, cache_dir=tmp_path / "user", rebuild=True, progress=False)
    assert not fresh.from_shipped and not fresh.loaded_from_cache
