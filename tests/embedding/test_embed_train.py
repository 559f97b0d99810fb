"""The embedding trainer: data checks, batch building, the CLI end to end, a saved folder that loads, and
torchrun x2 equal to one process with the global batch (in-batch negatives gathered with gradient)."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch

from alignkit.cli.main import main
from alignkit.embedding import EmbedTrainConfig, embed_train, encode, load_embedding_data, pool

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_pool_mean_ignores_padding_and_cls_takes_first():
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    m = torch.tensor([[1, 1, 0]])
    assert torch.equal(pool(h, m, "mean"), torch.tensor([[2.0, 3.0]]))
    assert torch.equal(pool(h, m, "cls"), torch.tensor([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="pooling"):
        pool(h, m, "max")


def test_data_formats_and_errors_name_file_row_field(tmp_path):
    assert load_embedding_data([{"anchor": "a", "positive": "b"}]).format == "pairs"
    assert load_embedding_data([{"anchor": "a", "positive": "b", "negative": "c"}]).format == "triplets"
    d = load_embedding_data([{"text": "a", "label": "y"}, {"text": "b", "label": "x"}])
    assert d.format == "labelled" and d.labels == [1, 0] and d.label_names == ["x", "y"]
    f = tmp_path / "bad.jsonl"
    f.write_text('{"anchor": "a", "positive": "b"}\n{"anchor": "a", "positive": ""}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl row 2: field 'positive' must be a non-empty string"):
        load_embedding_data(f)
    f.write_text('{"anchor": "a", "positive": "b"}\n{"anchor": "a"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl row 2: missing field 'positive'"):
        load_embedding_data(f)
    f.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": [1]}\n')
    with pytest.raises(ValueError, match=r"row 2: field 'label' must be an int or a string"):
        load_embedding_data(f)
    f.write_text('{"foo": 1}\n')
    with pytest.raises(ValueError, match=r"row 1: cannot tell the data format"):
        load_embedding_data(f)


def test_objective_and_data_must_fit(tiny_encoder, labelled_file, pair_file):
    with pytest.raises(ValueError, match="takes a PairBatch"):
        embed_train(
            objective="clip", model=str(tiny_encoder), data=labelled_file, max_steps=1, progress=False
        )
    with pytest.raises(ValueError, match="takes PreferenceBatch|takes an LM batch"):
        embed_train(objective="dpo", model=str(tiny_encoder), data=pair_file, max_steps=1, progress=False)
    with pytest.raises(TypeError, match="has no hyper-parameter 'beta'"):
        embed_train(
            objective="clip", model=str(tiny_encoder), data=pair_file, max_steps=1, progress=False,
            hyper_parameters={"beta": 1.0},
        )  # fmt: skip


def test_labelled_rows_train_batch_hard_in_pk_batches(tiny_encoder, labelled_file):
    cfg = EmbedTrainConfig(
        objective="batch_hard_triplet", model=str(tiny_encoder), data=labelled_file, max_steps=3,
        batch_size=8, samples_per_label=4, learning_rate=1e-3, progress=False,
    )  # fmt: skip
    r = embed_train(cfg)
    assert len(r.history) == 3 and all(torch.isfinite(torch.tensor(h["loss"])) for h in r.history)
    assert r.history[-1]["loss"] != r.history[0]["loss"]  # the encoder moved
    assert r.history[0]["triplet/hardest_pos"] > 0


def test_cli_trains_and_saves_a_folder_automodel_and_sentence_transformers_load(
    tiny_encoder, pair_file, tmp_path
):
    out = tmp_path / "run"
    rc = main(
        ["embed-train", "--objective", "clip", "--model", str(tiny_encoder), "--data", str(pair_file),
         "--output", str(out), "--max-steps", "4", "--batch-size", "8", "--learning-rate", "1e-3",
         "--hp", "temperature=0.1", "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    log = json.loads((out / "embed_train.json").read_text())
    assert len(log["history"]) == 4 and log["config"]["hyper_parameters"] == {"temperature": 0.1}
    from transformers import AutoModel

    model = AutoModel.from_pretrained(out)
    texts = ["the red cat sat on the mat", "the dog ran"]
    ours = encode(out, texts)
    from transformers import AutoTokenizer

    again = encode(model, texts, tokenizer=AutoTokenizer.from_pretrained(out))
    assert torch.allclose(ours, again)
    st = pytest.importorskip("sentence_transformers")
    theirs = torch.tensor(st.SentenceTransformer(str(out), device="cpu").encode(texts))
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_cli_user_error_is_one_line(tiny_encoder, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"anchor": "a"}\n')
    rc = main(["embed-train", "--objective", "clip", "--model", str(tiny_encoder), "--data", str(bad)])
    assert rc == 2
    assert "bad.jsonl row 1: missing field 'positive'" in capsys.readouterr().err


DDP_SCRIPT = """
import json, sys, torch
torch.set_num_threads(1)
from alignkit.embedding import embed_train
r = embed_train(objective=sys.argv[3], model=sys.argv[1], data=sys.argv[2], max_steps=3, batch_size=int(sys.argv[4]),
                learning_rate=1e-3, progress=False, samples_per_label=2)
import torch.distributed as dist
if not dist.is_initialized() or dist.get_rank() == 0:
    w = torch.cat([p.detach().flatten() for p in r.model.parameters()])
    print("RESULT", json.dumps({"losses": [h["loss"] for h in r.history], "wsum": w.double().abs().sum().item()}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("objective,data", [("clip", "pair_file"), ("batch_hard_triplet", "labelled_file")])
def test_torchrun_two_processes_equal_one_with_the_global_batch(
    tiny_encoder, objective, data, request, tmp_path
):
    data_file = request.getfixturevalue(data)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    args = [str(script), str(tiny_encoder), str(data_file), objective]
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", *args, "4"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, *args, "8"], env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    r2 = json.loads(two.stdout.split("RESULT", 1)[1].strip().splitlines()[0])
    r1 = json.loads(one.stdout.split("RESULT", 1)[1].strip().splitlines()[0])
    assert len(r1["losses"]) == 3
    assert torch.allclose(torch.tensor(r2["losses"]), torch.tensor(r1["losses"]), atol=1e-5), (r1, r2)
    assert abs(r2["wsum"] - r1["wsum"]) < 1e-4 * r1["wsum"], (r1, r2)
