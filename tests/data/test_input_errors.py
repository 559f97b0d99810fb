"""Data problems a person can act on: file, line and field named; silent problems counted and warned."""

import json

import pytest

from alignkit.data import load_records, prepare
from alignkit.engine.tiny import char_tokenizer
from alignkit.errors import InputFileError, UserError


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_identical_pairs_are_counted_and_warned(tmp_path, tok):
    rows = [
        {"prompt": "q", "chosen": "a", "rejected": "b"},
        {"prompt": "q", "chosen": "same", "rejected": "same"},
    ]
    f = _jsonl(tmp_path / "d.jsonl", rows)
    with pytest.warns(UserWarning, match=r"1 of 2 pair\(s\) have chosen == rejected.*d.jsonl row 2"):
        out = prepare(f, mode="paired", tokenizer=tok)
    report = out.report.to_dict()
    assert report["identical_pairs"] == 1 and report["identical_pair_rows"] == [f"{f} row 2"]
    assert "1 pairs with chosen == rejected" in out.report.summary()


def test_all_identical_pairs_are_refused(tmp_path, tok):
    f = _jsonl(tmp_path / "d.jsonl", [{"prompt": "q", "chosen": "x", "rejected": "x"}] * 3)
    with pytest.raises(UserError, match=r"d.jsonl: every pair \(3\) has chosen == rejected"):
        prepare(f, mode="paired", tokenizer=tok)


def test_empty_file_names_the_file(tmp_path, tok):
    f = tmp_path / "empty.jsonl"
    f.write_text("")
    with pytest.raises(UserError, match=r"empty.jsonl: no rows \(the data is empty\)"):
        prepare(f, mode="paired", tokenizer=tok)


def test_invalid_utf8_names_file_line_and_byte(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_bytes(b'{"prompt": "a"}\n{"prompt": "caf\xff"}\n')
    with pytest.raises(InputFileError, match=r"bad.jsonl line 2: not UTF-8 text \(byte 0xff at column 16\)"):
        load_records(f)
    c = tmp_path / "bad.csv"
    c.write_bytes(b"prompt,chosen\nok,fine\nx,\xfe\n")
    with pytest.raises(InputFileError, match=r"bad.csv line 3: not UTF-8 text \(byte 0xfe at column 3\)"):
        load_records(c)


def test_json_error_reads_plainly(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"prompt": "a"}\n{"prompt": "unterminated')
    with pytest.raises(InputFileError) as exc:
        load_records(f)
    msg = str(exc.value)
    assert "bad.jsonl row 2: not valid JSON (Unterminated string starting at column 12)" in msg
    assert "at at" not in msg


def test_csv_rows_are_named_by_their_file_line(tmp_path):
    c = tmp_path / "d.csv"
    c.write_text('prompt,chosen,rejected\nq1,a,b\n"multi\nline",c,d\nq3,e,f\n')
    recs = load_records(c)
    assert [r.row for r in recs] == [2, 3, 5]
    assert recs[2].where == f"{c} row 5" and recs[2].fields["prompt"] == "q3"


def test_wrong_chat_role_says_so(tmp_path, tok):
    tok.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    row = {
        "prompt": [{"role": "user", "content": "hi"}],
        "chosen": [{"role": "user", "content": "a"}],
        "rejected": [{"role": "assistant", "content": "b"}],
    }
    with pytest.raises(
        UserError, match=r"field 'chosen'.*roles \['user', 'user'\].*usually role 'assistant'"
    ):
        prepare([row], mode="paired", tokenizer=tok)
