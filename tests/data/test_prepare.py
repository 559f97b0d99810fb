import json
import os

import pytest

from alignkit.data import DataError, load_records, prepare
from alignkit.engine.tiny import char_tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_formats_read_alike(tmp_path):
    import datasets

    rows = [
        {"prompt": "a b", "chosen": "yes", "rejected": "no"},
        {"prompt": "c", "chosen": "x", "rejected": "y"},
    ]
    _write_jsonl(tmp_path / "d.jsonl", rows)
    (tmp_path / "d.json").write_text(json.dumps(rows))
    ds = datasets.Dataset.from_list(rows)
    ds.to_parquet(str(tmp_path / "d.parquet"))
    ds.to_csv(str(tmp_path / "d.csv"), index=False)
    ds.save_to_disk(str(tmp_path / "folder"))
    for src in ("d.jsonl", "d.json", "d.parquet", "d.csv", "folder"):
        recs = load_records(tmp_path / src)
        assert [r.fields["chosen"] for r in recs] == ["yes", "x"], src
    assert load_records(rows)[1].where == "data row 2"


def test_paired_tokenised_separately_and_joined(tok):
    out = prepare([{"prompt": "ab", "chosen": "cd", "rejected": "e"}], mode="paired", tokenizer=tok)
    ex = out.examples[0]
    assert ex.prompt_ids == tok("ab")["input_ids"]  # with BOS
    assert ex.chosen_ids == tok("cd", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    assert ex.rejected_ids[-1] == tok.eos_token_id


def test_implicit_prompt_and_conversational(tok):
    out = prepare([{"chosen": "Q: hi A: yes", "rejected": "Q: hi A: no"}], mode="paired", tokenizer=tok)
    assert out.report.implicit_prompts == 1
    assert tok.decode(out.examples[0].prompt_ids, skip_special_tokens=True) == "Q: hi A:"
    conv = [
        {
            "prompt": [{"role": "user", "content": "hi"}],
            "chosen": [{"role": "assistant", "content": "hey"}],
            "rejected": [{"role": "assistant", "content": "go"}],
        }
    ]
    ex = prepare(conv, mode="paired", tokenizer=tok).examples[0]
    assert tok.decode(ex.prompt_ids) == "<|user|>hi</s><|assistant|>"
    assert tok.decode(ex.chosen_ids) == "hey</s>"


def test_pretokenised_unpaired_and_sft_and_kl(tok):
    rows = [
        {"prompt_ids": [5, 6], "completion_ids": [7], "label": True},
        {"prompt_ids": [8], "completion_ids": [9, 10], "label": 0},
    ]
    out = prepare(rows, mode="unpaired", vocab_size=16, with_kl=True)
    assert [e.label for e in out.examples] == [True, False]
    assert out.examples[0].kl_completion_ids == [9, 10] and out.examples[1].kl_completion_ids == [7]
    paired = prepare([{"prompt": "a", "chosen": "b", "rejected": "c"}], mode="unpaired", tokenizer=tok)
    assert [e.label for e in paired.examples] == [True, False] and paired.report.split_pairs == 1
    sft = prepare(
        [
            {"text": "hello"},
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        ],
        mode="sft",
        tokenizer=tok,
    )
    assert len(sft.examples) == 2 and sft.examples[0].prompt_ids == [tok.bos_token_id]


@pytest.mark.parametrize(
    "row, mode, message",
    [
        ({"prompt": "a", "rejected": "b"}, "paired", "field 'chosen': is missing"),
        ({"prompt": "a", "chosen": "", "rejected": "b"}, "paired", "field 'chosen': is empty"),
        ({"prompt": 3, "chosen": "a", "rejected": "b"}, "paired", "field 'prompt': must be a string"),
        (
            {"prompt": "a", "completion": "b", "label": "maybe"},
            "unpaired",
            "field 'label': must be a boolean",
        ),
        ({"prompt": "a", "completion": "b"}, "unpaired", "field 'label': is missing"),
        (
            {"prompt_ids": [1, 2], "chosen_ids": [3], "rejected_ids": [999]},
            "paired",
            "outside the vocabulary",
        ),
        ({"prompt_ids": [1], "chosen_ids": ["a"], "rejected_ids": [3]}, "paired", "must be a list of int"),
        (
            {"prompt": "x" * 50, "chosen": "a", "rejected": "b"},
            "paired",
            "field 'prompt': is 51 tokens, filling max_length=20",
        ),
        ({"messages": [{"role": "user"}]}, "sft", "needs string 'role' and 'content'"),
    ],
)
def test_bad_rows_name_file_row_and_field(tmp_path, tok, row, mode, message):
    good = {"prompt": "a", "chosen": "b", "rejected": "c", "completion": "d", "label": True}
    f = _write_jsonl(tmp_path / "train.jsonl", [good, row])
    with pytest.raises(DataError) as info:
        prepare(f, mode=mode, tokenizer=tok, max_length=20)
    text = str(info.value)
    assert f"{f} row 2: " in text and message in text
    with pytest.warns(UserWarning, match="skipped 1 bad row"):
        out = prepare(f, mode=mode, tokenizer=tok, max_length=20, skip_bad_rows=True)
    assert len(out.report.skipped) == 1 and out.report.rows == 2


def test_text_without_tokenizer_and_bad_json(tmp_path):
    with pytest.raises(DataError, match="no tokenizer was given"):
        prepare([{"prompt": "a", "chosen": "b", "rejected": "c"}], mode="paired")
    f = tmp_path / "bad.jsonl"
    f.write_text('{"prompt": "a"}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad.jsonl row 2: not valid JSON"):
        load_records(f)


def test_truncation_counted(tok):
    rows = [{"prompt": "abc", "chosen": "x" * 20, "rejected": "y"}]
    with pytest.warns(UserWarning, match="truncated 1 example"):
        out = prepare(rows, mode="paired", tokenizer=tok, max_length=10)
    ex = out.examples[0]
    assert len(ex.prompt_ids) + len(ex.chosen_ids) == 10 and ex.prompt_ids == tok("abc")["input_ids"]
    assert out.report.truncated == 1 and out.report.truncated_tokens == 4 + 21 - 10
    with pytest.warns(UserWarning):
        end = prepare(rows, mode="paired", tokenizer=tok, max_length=20, truncation_mode="keep_end")
    e = end.examples[0]
    # per sequence, as TRL: the chosen sequence is the last 20 tokens of prompt + chosen (its first token stands
    # as the prompt), the rejected one (6 tokens) keeps its whole prompt
    p, c = tok("abc")["input_ids"], tok("abc" + "x" * 20)["input_ids"][4:] + [tok.eos_token_id]
    assert e.prompt_ids + e.chosen_ids == (p + c)[-20:] and len(e.prompt_ids) == 1 and len(e.chosen_ids) == 19
    assert e.rejected_prompt_ids == p and e.rejected_prompt == p
    assert end.report.truncated_sequences == 1 and end.report.truncated_prompts == 1
