"""Data through ``datasets``: save_to_disk folders and their splits, folders of data files (README configs), hub
ids (a fast clear error offline), IterableDataset, and ``num_proc`` tokenisation equal to the serial path."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

datasets = pytest.importorskip("datasets")

from alignkit.data import DataError, load_records, prepare  # noqa: E402
from alignkit.engine.tiny import char_tokenizer  # noqa: E402
from alignkit.errors import InputPathError, NoNetworkError  # noqa: E402

ROWS = [{"prompt": f"q{i}?", "chosen": f" yes {i}", "rejected": " no"} for i in range(6)]
SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_save_to_disk_dataset_dict_picks_the_split_and_lists_them_when_missing(tmp_path):
    dd = datasets.DatasetDict(
        {
            "train_prefs": datasets.Dataset.from_list(ROWS[:4]),
            "test_prefs": datasets.Dataset.from_list(ROWS[4:]),
        }
    )
    dd.save_to_disk(tmp_path / "uf")
    recs = load_records(tmp_path / "uf", split="test_prefs")
    assert [r.fields["prompt"] for r in recs] == ["q4?", "q5?"]
    assert recs[1].where == f"{tmp_path / 'uf'} [test_prefs] row 2"
    with pytest.raises(
        InputPathError, match=r"no split 'train'; it has 'train_prefs', 'test_prefs': pass --split"
    ):
        load_records(tmp_path / "uf")
    with pytest.raises(InputPathError, match=r"no split 'nope'"):
        load_records(tmp_path / "uf", split="nope")
    # in memory too
    assert len(load_records(dd, split="train_prefs")) == 4


def test_folder_of_data_files_uses_readme_configs_and_names_file_and_line(tmp_path, tok):
    d = tmp_path / "ds"
    _write_jsonl(d / "data" / "train_prefs-00000-of-00001.jsonl", ROWS[:3])
    _write_jsonl(d / "data" / "test_prefs-00000-of-00001.jsonl", ROWS[3:])
    _write_jsonl(d / "small" / "train_prefs.jsonl", ROWS[:1])
    (d / "README.md").write_text(
        "---\nconfigs:\n- config_name: default\n  data_files:\n  - split: train_prefs\n    path: data/train_prefs-*\n"
        "  - split: test_prefs\n    path: data/test_prefs-*\n- config_name: small\n  data_files:\n"
        "  - split: train_prefs\n    path: small/train_prefs.jsonl\n---\n"
    )
    recs = load_records(d, split="train_prefs")
    assert len(recs) == 3 and recs[0].where == f"{d / 'data' / 'train_prefs-00000-of-00001.jsonl'} row 1"
    assert len(load_records(d, split="train_prefs", config="small")) == 1
    with pytest.raises(InputPathError, match=r"it has 'train_prefs', 'test_prefs'"):
        load_records(d)
    with pytest.raises(InputPathError, match=r"not a dataset folder datasets can read.*nope"):
        load_records(d, split="train_prefs", config="nope")
    # a bad row in one of the files: named by that file, its line and the field
    _write_jsonl(d / "data" / "test_prefs-00000-of-00001.jsonl", [ROWS[0], {"prompt": "p", "chosen": "c"}])
    with pytest.raises(
        DataError, match=r"test_prefs-00000-of-00001.jsonl row 2: field 'rejected': is missing"
    ):
        prepare(load_records(d, split="test_prefs"), mode="paired", tokenizer=tok)


def test_plain_folder_splits_from_file_names(tmp_path):
    _write_jsonl(tmp_path / "f" / "train.jsonl", ROWS[:2])
    _write_jsonl(tmp_path / "f" / "test.jsonl", ROWS[2:])
    assert len(load_records(tmp_path / "f")) == 2
    assert len(load_records(tmp_path / "f", split="test")) == 4
    # a single file has no splits: a --split other than train is refused, not ignored
    with pytest.raises(InputPathError, match="a single data file has no splits"):
        load_records(tmp_path / "f" / "train.jsonl", split="test")


def test_iterable_dataset_is_read_in_full(tok):
    it = datasets.Dataset.from_list(ROWS).to_iterable_dataset()
    recs = load_records(it)
    assert len(recs) == len(ROWS) and recs[2].where == "iterable dataset row 3"
    assert prepare(it, mode="paired", tokenizer=tok).report.examples == len(ROWS)


def test_hub_id_offline_fails_fast_and_says_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    with pytest.raises(NoNetworkError, match=r"org/prefs.*cannot reach the hub"):
        load_records("org/prefs", split="train_prefs")
    assert time.time() - t0 < 3
    # a missing local data file is named as a missing file, not looked up on the hub
    with pytest.raises(FileNotFoundError, match="train.jsonl does not exist"):
        load_records("train.jsonl")


def test_hub_id_without_network_fails_within_seconds(tmp_path):
    """No offline variable, no route to the hub (HF_ENDPOINT at a closed local port): one short attempt."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path), PYTHONPATH=SRC)
    code = (
        "import time\n"
        "import huggingface_hub.constants\n"
        "from alignkit.sources import check_data_source\n"
        "t = time.time()\n"
        "try: check_data_source('org/prefs')\n"
        "except Exception as e: print(type(e).__name__, e, round(time.time()-t, 1))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    ).stdout
    assert out.startswith("NoNetworkError") and "no network" in out, out
    assert float(out.split()[-1]) < 5


def test_num_proc_tokenisation_equals_serial(tok):
    rows = [
        *ROWS,
        {"prompt": "x" * 30, "chosen": " a", "rejected": " b"},  # truncated (keep_end)
        {"prompt": "p", "chosen": "c"},  # a bad row: named the same way
        {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "yo"}],
         "rejected": [{"role": "assistant", "content": "no"}]},
    ]  # fmt: skip
    kw = dict(mode="paired", tokenizer=tok, max_length=20, truncation_mode="keep_end", skip_bad_rows=True)
    with pytest.warns(UserWarning):
        serial = prepare(rows, **kw)
    with pytest.warns(UserWarning):
        par = prepare(rows, num_proc=2, **kw)
    assert serial.examples == par.examples and len(par.examples) == len(rows) - 1
    assert serial.report.to_dict() == par.report.to_dict()
    assert par.report.skipped == ["data row 8: field 'rejected': is missing"]


def test_trl_names_for_the_dataset_settings():
    from alignkit.integrations.trl_config import translate
    from alignkit.train.config import TrainConfig

    got = translate(
        {"dataset_name": "org/prefs", "dataset_config": "default", "dataset_train_split": "train_prefs",
         "dataset_num_proc": 4},
        "dpo.yaml",
        set(TrainConfig.field_names()),
    )  # fmt: skip
    assert got == {
        "data": "org/prefs",
        "dataset_config": "default",
        "split": "train_prefs",
        "dataset_num_proc": 4,
    }


def test_train_on_an_iterable_dataset_and_a_dataset_dict_split(tok):
    import alignkit as ak
    from alignkit.engine.tiny import tiny_llama

    kw = dict(objective="dpo", tokenizer=tok, batch_size=3, max_steps=1, progress=False, learning_rate=1e-3)
    it = datasets.Dataset.from_list(ROWS).to_iterable_dataset()
    res = ak.train(model=tiny_llama(vocab_size=len(tok), hidden_size=32, seed=1), data=it, **kw)
    assert res.data_report["rows"] == len(ROWS) and len(res.history) == 1
    dd = datasets.DatasetDict({"train_prefs": datasets.Dataset.from_list(ROWS[:3])})
    res = ak.train(
        model=tiny_llama(vocab_size=len(tok), hidden_size=32, seed=1), data=dd, split="train_prefs", **kw
    )
    assert res.data_report["rows"] == 3


def test_cli_hub_data_offline_is_one_line_before_anything_loads(model_dir, tmp_path, capsys, monkeypatch):
    from alignkit.cli.main import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    code = main(["train", "--model", str(model_dir), "--data", "org/prefs", "--split", "train_prefs",
                 "--output", str(tmp_path / "run")])  # fmt: skip
    err = capsys.readouterr().err
    assert (
        code == 2 and "--data) org/prefs: not a local file or folder" in err and "cannot reach the hub" in err
    )
    assert time.time() - t0 < 5 and not (tmp_path / "run").exists()
