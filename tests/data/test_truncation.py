"""Training on sequences truncated per sequence (``keep_end``: chosen and rejected keep different prompt parts):
padded, packed (no shared prompt for such pairs) and cached-reference runs agree; the counts reach data_report.json;
the CLI reads a DatasetDict folder's split."""

import json

import pytest

import alignkit as ak
from alignkit.engine.tiny import char_tokenizer, tiny_llama

TOK = char_tokenizer()
ROWS = [
    {"prompt": "P" * 30 + f"{i}", "chosen": " good" * (1 + i % 3), "rejected": " bad"} for i in range(8)
] + [{"prompt": "q?", "chosen": " fine", "rejected": " no"}] * 4


def _run(**kw):
    base = dict(
        objective="dpo", tokenizer=TOK, data=ROWS, batch_size=4, max_steps=3, learning_rate=1e-3, progress=False,
        max_length=24, truncation_mode="keep_end",
    )  # fmt: skip
    base.update(kw)
    with pytest.warns(UserWarning, match="truncated 8 example"):
        return ak.train(model=tiny_llama(vocab_size=len(TOK), hidden_size=32, seed=1), **base)


def test_keep_end_pairs_train_alike_padded_packed_and_cached():
    padded = _run(packing=False, reference="model")
    packed = _run(packing=True, reference="model")
    cached = _run(packing=False, reference="cache")
    losses = [h["loss"] for h in padded.history]
    assert losses == pytest.approx([h["loss"] for h in packed.history], abs=1e-5)
    assert losses == pytest.approx([h["loss"] for h in cached.history], abs=1e-5)
    rep = padded.data_report
    assert rep["truncated"] == 8 and rep["truncated_sequences"] == 16 and rep["truncated_prompts"] == 16
    assert rep["truncated_completions"] == 0 and rep["skipped"] == 0


def test_cli_reads_a_split_and_writes_the_counts(tmp_path, model_dir):
    datasets = pytest.importorskip("datasets")
    from alignkit.cli.main import main

    dd = datasets.DatasetDict(
        {"train_prefs": datasets.Dataset.from_list(ROWS), "test_prefs": datasets.Dataset.from_list(ROWS[:2])}
    )
    dd.save_to_disk(tmp_path / "prefs")
    out = tmp_path / "run"
    argv = ["train", "--objective", "dpo", "--model", str(model_dir), "--data", str(tmp_path / "prefs"),
            "--split", "train_prefs", "--max-length", "40", "--output", str(out), "--max-steps", "1",
            "--batch-size", "4", "--no-progress", "--dataset-num-proc", "2"]  # fmt: skip
    with pytest.warns(UserWarning):
        assert main(argv) in (0, None)
    rep = json.loads((out / "data_report.json").read_text())
    # keep_start: the 32-token prompts leave room for the completions, some of which are cut
    assert rep["rows"] == 12 and rep["truncated_sequences"] > 0 and rep["truncated_completions"] > 0
    assert rep["truncated_prompts"] == 0
