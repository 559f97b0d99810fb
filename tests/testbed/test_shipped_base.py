"""The default base model ships in the package (so the main job does not pretrain on first use), is checked against
its SHA-256 before use, and a damaged shipped copy is never used silently."""

from __future__ import annotations

import json
import os
import pathlib
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


def test_a_folder_named_by_the_environment_is_searched_after_the_package(tiny_config, tmp_path, monkeypatch):
    """``ALIGNKIT_BASE_MODELS`` names more folders of shipped base models (the test suite's effect bases live in
    one); a copy found there is checked and used like the package's own."""
    cfg = tiny_config(pretrain_steps=5)
    built = get_base_model("sentiment", cfg, cache_dir=tmp_path / "build", progress=False)
    shutil.copytree(built.path, tmp_path / "team" / built.path.name)
    monkeypatch.setenv(
        model_mod.BASE_MODELS_ENV, os.pathsep.join([str(tmp_path / "none"), str(tmp_path / "team")])
    )
    assert model_mod.shipped_path(built.path) == tmp_path / "team" / built.path.name
    monkeypatch.setattr(model_mod, "pretrain", _no_pretraining)
    used = get_base_model("sentiment", cfg, cache_dir=tmp_path / "user", progress=False)
    assert used.from_shipped
    monkeypatch.delenv(model_mod.BASE_MODELS_ENV)
    assert model_mod.shipped_path(built.path) == model_mod.SHIPPED_DIR / built.path.name


def test_the_effect_tests_base_models_are_shipped_and_current(tmp_path, monkeypatch):
    """Every base model the slow effect tests build (tests/effect.py: effect_bases()) ships in
    tests/assets/base_models with its SHA-256 (``python tools/ship_base_model.py --effect``), found through
    ``ALIGNKIT_BASE_MODELS`` (tests/conftest.py), and is used without pretraining: a config change that leaves it
    stale fails here instead of silently pretraining in every CI run."""
    from tests.effect import effect_bases

    effect_dir = pathlib.Path(__file__).resolve().parents[1] / "assets" / "base_models"
    assert str(effect_dir) in os.environ[model_mod.BASE_MODELS_ENV].split(os.pathsep)
    monkeypatch.setattr(model_mod, "pretrain", _no_pretraining)
    for task, cfg in effect_bases():
        folder = model_mod.shipped_path(model_path(task, cfg, tmp_path))
        hint = f"{folder.name} is not shipped or stale: run python tools/ship_base_model.py --effect"
        assert folder.parent == effect_dir, hint
        meta = json.loads((folder / "meta.json").read_text())
        assert meta["key"] == cfg.key(), hint
        base = get_base_model(task, cfg, cache_dir=tmp_path, progress=False)
        assert base.from_shipped, hint
    shipped = {p.name for p in effect_dir.iterdir() if p.is_dir()}
    assert shipped == {
        model_path(t, c, tmp_path).name for t, c in effect_bases()
    }  # nothing stale left behind
