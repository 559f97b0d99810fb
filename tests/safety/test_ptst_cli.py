"""PTST as template options: ``alignkit train --ptst`` (no safety prompt) and ``alignkit generate --ptst`` (with it)."""

from __future__ import annotations

import json

import pytest

from alignkit.cli.generate import render_chat
from alignkit.cli.main import main
from alignkit.engine.tiny import char_tokenizer, tiny_llama
from alignkit.safety.ptst import LLAMA2_SAFETY_PROMPT

TEMPLATE = (
    "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("ptst")
    tok = char_tokenizer()
    tok.chat_template = TEMPLATE
    tiny_llama(hidden_size=16, num_layers=1, seed=1).save_pretrained(root / "m")
    tok.save_pretrained(root / "m")
    return root / "m", tok


def test_render_chat_ptst_adds_the_safety_prompt_only_at_test_time(chat_model):
    _, tok = chat_model
    plain = render_chat(["hi"], tok, None, ptst=False)
    assert plain == ["<user>hi\n<assistant>"]
    assert render_chat(["hi"], tok, "be nice", ptst=False) == ["<system>be nice\n<user>hi\n<assistant>"]
    (ptst,) = render_chat(["hi"], tok, None, ptst=True)
    assert ptst == f"<system>{LLAMA2_SAFETY_PROMPT}\n<user>hi\n<assistant>"
    tok_plain = char_tokenizer()
    tok_plain.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        render_chat(["hi"], tok_plain, None, ptst=True)


def test_train_ptst_trains_without_the_safety_prompt(chat_model, tmp_path):
    from alignkit.train.setup import ptst_train_rows as _ptst_train_rows

    path, tok = chat_model
    data = tmp_path / "rows.jsonl"
    data.write_text(
        "\n".join(json.dumps({"prompt": p, "completion": c}) for p, c in [("ab", "cd"), ("ef", "g")])
    )
    rows = _ptst_train_rows(str(data), "sft", tok)
    assert rows[0]["messages"] == [{"role": "user", "content": "ab"}, {"role": "assistant", "content": "cd"}]
    assert all(m["role"] != "system" for r in rows for m in r["messages"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"prompt": "ab", "completion": "cd"}) + "\n" + json.dumps({"prompt": "x"}) + "\n"
    )
    with pytest.raises(ValueError, match=r"bad.jsonl row 2: field 'completion'"):
        _ptst_train_rows(str(bad), "sft", tok)
    with pytest.raises(ValueError, match="mode 'sft'"):
        _ptst_train_rows(str(data), "paired", tok)
    no_template = char_tokenizer()
    no_template.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        _ptst_train_rows(str(data), "sft", no_template)
    out = tmp_path / "run"
    args = [
        "train",
        "--objective",
        "sft",
        "--mode",
        "sft",
        "--model",
        str(path),
        "--data",
        str(data),
        "--ptst",
    ]
    assert main([*args, "--max-steps", "1", "--output", str(out), "--no-progress", "--no-tensorboard"]) == 0
    assert (out / "final").is_dir() or any(out.iterdir())


def test_generate_ptst_end_to_end(chat_model, capsys):
    path, _ = chat_model
    common = [
        "generate",
        "--model",
        str(path),
        "--prompt",
        "hi",
        "--max-new-tokens",
        "3",
        "--temperature",
        "0",
    ]
    assert main([*common, "--ptst"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["prompt"] == "hi" and len(row["completions"]) == 1
    assert main([*common, "--system-prompt", "x", "--ptst"]) == 0  # a custom safety prompt
    capsys.readouterr()
