import json

import pytest


def _tiny_encoder(folder, seed: int = 0):
    """A 1-layer BERT (hidden 16, no dropout) with a word-level vocabulary, saved with its tokenizer."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = (
        "the a cat dog sat ran on mat log red blue green big small fast slow bird fish tree sun moon".split()
    )
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=len(words) + 5,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory):
    return _tiny_encoder(tmp_path_factory.mktemp("tiny-bert"))


def _sentences(n: int, seed: int = 0) -> list[str]:
    import random

    rng = random.Random(seed)
    adj = "red blue green big small fast slow".split()
    noun = "cat dog bird fish".split()
    verb = "sat ran".split()
    place = "mat log tree sun moon".split()
    return [
        f"the {rng.choice(adj)} {rng.choice(noun)} {rng.choice(verb)} on the {rng.choice(place)}"
        for _ in range(n)
    ]


@pytest.fixture(scope="session")
def pair_file(tmp_path_factory):
    """32 pairs: a sentence and the same sentence with one word dropped."""
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    rows = []
    for s in _sentences(32):
        w = s.split()
        rows.append({"anchor": s, "positive": " ".join(w[:2] + w[3:])})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture(scope="session")
def labelled_file(tmp_path_factory):
    """Labelled rows: the label is the animal of the sentence."""
    path = tmp_path_factory.mktemp("labelled") / "labelled.jsonl"
    rows = [{"text": s, "label": s.split()[2]} for s in _sentences(48, seed=1)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path
