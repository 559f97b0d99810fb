from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def tiny_config(task: str = "sentiment", **overrides):
    """A base model small enough to build in a few seconds (never the 100 s default)."""
    from alignkit.testbed import get_task

    settings = dict(
        pretrain_steps=30,
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        intermediate_size=64,
        batch_size=8,
        context=64,
    )
    if task == "sentiment":
        settings.update(vocab_size=512, corpus_chars=300_000)
    else:
        settings.update(task_examples=3000)
    settings.update(overrides)
    return get_task(task).base_config(**settings)


@pytest.fixture(scope="session", name="tiny_config")
def tiny_config_fixture():
    return tiny_config


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("alignkit-cache")


@pytest.fixture(scope="session")
def tiny_sentiment(tiny_cache):
    from alignkit.testbed import get_base_model

    return get_base_model("sentiment", tiny_config(), cache_dir=tiny_cache, progress=False)
