from __future__ import annotations

import pytest

from alignkit.engine.tiny import char_tokenizer, tiny_llama


@pytest.fixture(scope="session")
def tok():
    return char_tokenizer()


@pytest.fixture(scope="session")
def aligned():
    return tiny_llama(hidden_size=16, num_layers=1, seed=1).eval()


@pytest.fixture(scope="session")
def ref():
    return tiny_llama(hidden_size=16, num_layers=1, seed=2).eval()


@pytest.fixture()
def sampling():
    return dict(max_new_tokens=6, temperature=1.0, seed=3, num_samples=2)
