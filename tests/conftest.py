import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the effect tests' base models ship here (tests/effect.py: effect_bases()), so CI copies them instead of pretraining
os.environ.setdefault(
    "ALIGNKIT_BASE_MODELS", os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "base_models")
)

import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

import pytest  # noqa: E402

from tests.effect import effect_base_config  # noqa: E402


@pytest.fixture(scope="session")
def effect_cache(tmp_path_factory):
    """One cache folder for every slow effect test, so the effect base model and arena data are built once
    (``ALIGNKIT_EFFECT_CACHE``: a persistent folder instead, to reuse built base models across sessions)."""
    if os.environ.get("ALIGNKIT_EFFECT_CACHE"):
        return os.environ["ALIGNKIT_EFFECT_CACHE"]
    return tmp_path_factory.mktemp("alignkit-effect-cache")


@pytest.fixture(scope="session")
def effect_sentiment(effect_cache):
    """The built effect base model for ``sentiment`` (a :class:`alignkit.testbed.model.BaseModel`)."""
    from alignkit.testbed import get_base_model

    return get_base_model("sentiment", effect_base_config(), cache_dir=effect_cache, progress=False)


@pytest.fixture(scope="session")
def effect_sentiment_arena(effect_cache):
    """One sentiment effect arena (SFT, DPO, iREPO, Pairwise Cringe over training seeds 0, 1, 2) shared by the DPO,
    ranking-accuracy, iREPO and Pairwise Cringe effect tests, so the runs are trained once per session."""
    from tests.effect import sentiment_effect_arena

    return sentiment_effect_arena(effect_cache)


@pytest.fixture(scope="session")
def safety_dpo(effect_cache):
    """The safety effect arena's data, SFT figures and DPO models of three training seeds
    (:func:`tests.effect.safety_dpo_arena`), trained once and shared by the safety-arena claim and harmful
    fine-tuning of the DPO-aligned model."""
    from tests.effect import safety_dpo_arena

    return safety_dpo_arena(effect_cache)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A saved tiny Llama + character tokenizer folder (``save_pretrained``), for tests that load from disk."""
    from alignkit.engine.tiny import char_tokenizer, tiny_llama

    d = tmp_path_factory.mktemp("tiny-llama")
    tok = char_tokenizer()
    tiny_llama(vocab_size=len(tok), hidden_size=32).save_pretrained(d)
    tok.save_pretrained(d)
    return d
