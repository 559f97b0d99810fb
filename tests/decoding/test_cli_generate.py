from __future__ import annotations

import json

import pytest

from alignkit.cli.main import main


@pytest.fixture(scope="module")
def saved(tmp_path_factory, aligned, ref, tok):
    root = tmp_path_factory.mktemp("models")
    for name, m in (("aligned", aligned), ("ref", ref)):
        m.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    return root


def _rows(capsys):
    return [json.loads(x) for x in capsys.readouterr().out.splitlines()]


def _texts(rows):
    return [(r["prompt"], r["completions"]) for r in rows]


def test_plain_and_dera_endpoint(saved, capsys):
    common = ["--prompt", "hi", "--prompt", "ok", "--max-new-tokens", "4", "--temperature", "0"]
    assert main(["generate", "--model", str(saved / "ref"), *common]) == 0
    plain_ref = _rows(capsys)
    assert [r["prompt"] for r in plain_ref] == ["hi", "ok"] and len(plain_ref[0]["completions"]) == 1
    args = ["generate", "--model", str(saved / "aligned"), "--ref-model", str(saved / "ref")]
    assert plain_ref[0]["decoder"] is None and plain_ref[0]["sampling"]["max_new_tokens"] == 4
    assert main([*args, "--decoder", "dera", "--hp", "lam=0", *common]) == 0
    rows = _rows(capsys)
    assert _texts(rows) == _texts(plain_ref)
    assert rows[0]["decoder"] == "dera" and rows[0]["hyper_parameters"] == {"lam": 0}


def test_errors_name_the_field(saved, capsys):
    m = ["generate", "--model", str(saved / "aligned"), "--prompt", "x"]
    assert main([*m, "--decoder", "dera", "--hp", "beta=1"]) == 2
    assert "no hyper-parameter 'beta'" in capsys.readouterr().err
    assert main([*m, "--decoder", "dera"]) == 2
    assert "--decoder dera needs --ref-model" in capsys.readouterr().err
    assert main([*m, "--decoder", "dpo"]) == 2
    assert "not a decoder" in capsys.readouterr().err


# --- --reward ---------------------------------------------------------------------------------------------------


def length_reward(prompt: str, completion: str) -> float:
    """A reward for the ``module:function`` form of ``--reward``: longer completions score higher."""
    return float(len(completion))


def test_named_rewards_by_hand():
    from alignkit.cli.generate import resolve_reward
    from alignkit.testbed.tasks import vader_compound

    sentiment = resolve_reward("sentiment")
    assert sentiment("x", "What a lovely, happy day") == vader_compound("What a lovely, happy day") > 0.5
    assert sentiment("x", "a terrible, hateful death") < -0.5
    arith = resolve_reward("arith")
    assert arith("12+30=", " 42") == 1.0 and arith("12+30=", "41") == 0.0
    assert arith("7-9=", "-2") == 1.0
    with pytest.raises(ValueError, match="does not end in"):
        arith("hello", "1")
    assert resolve_reward("tests.decoding.test_cli_generate:length_reward")("p", "abc") == 3.0
    with pytest.raises(ValueError, match="unknown reward"):
        resolve_reward("gold")
    with pytest.raises(ValueError, match="cannot import module 'no_such_module_xyz'"):
        resolve_reward("no_such_module_xyz:f")
    with pytest.raises(ValueError, match="no callable 'nope'"):
        resolve_reward("tests.decoding.test_cli_generate:nope")


def test_reward_selects_among_watermarked_candidates(saved, capsys, aligned, tok):
    """``--reward module:function`` reaches alignment_resampling: each output is the highest-reward one of the n
    watermarked candidates the same seed draws (here: the longest, first on ties)."""
    from alignkit.decoding import sample_text
    from alignkit.decoding.watermark_resampling import GreenListWatermark

    prompts, n = ["hi", "ok", "so"], 4
    cmd = ["generate", "--model", str(saved / "aligned"), "--max-new-tokens", "8", "--seed", "7"]
    for p in prompts:
        cmd += ["--prompt", p]
    reward = ["--reward", "tests.decoding.test_cli_generate:length_reward"]
    assert main([*cmd, "--decoder", "alignment_resampling", *reward, "--hp", f"n={n}"]) == 0
    rows = _rows(capsys)
    got = [r["completions"] for r in rows]
    # each row records the decoder, its settings and the scores it optimised (reward; watermark z of the output)
    assert all(r["decoder"] == "alignment_resampling" and r["hyper_parameters"]["n"] == n for r in rows)
    assert all(r["hyper_parameters"]["gamma"] == 0.25 and r["sampling"]["seed"] == 7 for r in rows)
    assert all(r["rewards"] == [float(len(r["completions"][0]))] for r in rows)
    assert all(len(r["watermark_z"]) == 1 and r["watermark_z"][0] > 0 for r in rows)
    wm = GreenListWatermark(aligned.get_output_embeddings().weight.shape[0])
    cands = sample_text(aligned, tok, prompts, logits_processor=wm, max_new_tokens=8, seed=7, num_samples=n)
    assert got == [[max(c, key=len)] for c in cands]
    assert any(len(set(c)) > 1 for c in cands)  # the choice was not trivial
    assert main([*cmd, "--decoder", "alignment_resampling", "--reward", "sentiment"]) == 0
    assert all(len(r["completions"]) == 1 for r in _rows(capsys))


def test_reward_errors(saved, capsys):
    m = ["generate", "--model", str(saved / "aligned"), "--prompt", "x"]
    assert main([*m, "--decoder", "alignment_resampling"]) == 2
    assert "--decoder alignment_resampling needs --reward" in capsys.readouterr().err
    assert main([*m, "--reward", "sentiment"]) == 2
    assert "--reward given without --decoder" in capsys.readouterr().err
    assert main([*m, "--decoder", "alignment_resampling", "--reward", "gold"]) == 2
    assert "--reward 'gold': unknown reward" in capsys.readouterr().err


# --- --lex-table ------------------------------------------------------------------------------------------------


def test_lex_table_formats_agree(tmp_path, tok):
    from alignkit.cli.generate import read_lex_table

    a, b = tok.get_vocab()["a"], tok.get_vocab()["b"]
    want = {a: {b: 0.75, 5: 0.25}, 9: {a: 1.0}}
    (tmp_path / "t.json").write_text(json.dumps({"a": {"b": 0.75, "5": 0.25}, "9": {"a": 1}}))
    rows = [
        {"source": "a", "target": "b", "prob": 0.75},
        {"source": a, "target": 5, "prob": "0.25"},
        {"source": 9, "target": "a", "prob": 1.0},
    ]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    (tmp_path / "t.tsv").write_text("source\ttarget\tprob\n# a comment\na\tb\t0.75\n\na\t5\t0.25\n9\ta\t1\n")
    for name in ("t.json", "rows.json", "t.tsv"):
        assert read_lex_table(tmp_path / name, tok) == want, name


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.tsv", "a\tb\t0.5\na\tb\n", "bad.tsv line 2: expected 3 tab-separated fields"),
        ("bad.tsv", "a\tb\tlots\n", "bad.tsv line 1: field 'prob' must be a number"),
        ("bad.tsv", "a\tb\t-1\n", "bad.tsv line 1: field 'prob' must be a finite number >= 0"),
        ("bad.tsv", "a\tzzz\t0.5\n", "bad.tsv line 1: field 'target' token 'zzz' is not in the tokenizer"),
        ("bad.tsv", "100000\tb\t0.5\n", "bad.tsv line 1: field 'source' token id 100000 is outside"),
        ("bad.tsv", "# only a comment\n", "the table is empty"),
        ("bad.json", '[{"source": "a", "prob": 1}]', "bad.json row 1: missing field 'target'"),
        ("bad.json", '{"a": 3}', "bad.json source 'a': expected an object"),
        ("bad.json", "{oops", "bad.json: not valid JSON"),
    ],
)
def test_lex_table_errors_name_file_row_and_field(tmp_path, tok, name, text, message):
    from alignkit.cli.generate import read_lex_table

    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=message):
        read_lex_table(tmp_path / name, tok)


def test_lex_table_restricts_generated_tokens(saved, capsys, tmp_path, tok):
    """``--lex-table`` reaches lexical_shortlist: with every prompt token mapped to {a, b}, the completions use
    only a and b (EOS is always allowed and dropped from the text)."""
    rows = [f"{c}\t{t}\t0.5" for c in "hio" for t in "ab"]
    (tmp_path / "lex.tsv").write_text("\n".join(rows) + "\n")
    cmd = ["generate", "--model", str(saved / "aligned"), "--prompt", "hi", "--prompt", "oh"]
    opts = ["--decoder", "lexical_shortlist", "--max-new-tokens", "12", "--num-samples", "3"]
    assert main([*cmd, *opts, "--lex-table", str(tmp_path / "lex.tsv")]) == 0
    out = [c for r in _rows(capsys) for c in r["completions"]]
    assert len(out) == 6 and any(out) and all(set(c) <= {"a", "b", " "} for c in out), out
    assert main([*cmd, *opts, "--lex-table", str(tmp_path / "missing.tsv")]) == 2
    assert "--lex-table: no file" in capsys.readouterr().err
    assert main([*cmd, "--lex-table", str(tmp_path / "lex.tsv")]) == 2
    assert "--lex-table given without --decoder" in capsys.readouterr().err


def test_reward_reaches_darwin(saved, capsys):
    """``--reward`` also feeds darwin: one completion per prompt; without it darwin names what it needs."""
    cmd = ["generate", "--model", str(saved / "aligned"), "--prompt", "hi", "--prompt", "ok"]
    cmd += [
        "--max-new-tokens",
        "6",
        "--decoder",
        "darwin",
        "--hp",
        "n_states=3",
        "--hp",
        "replacement_period=2",
    ]
    assert main([*cmd, "--reward", "tests.decoding.test_cli_generate:length_reward"]) == 0
    rows = _rows(capsys)
    assert [r["prompt"] for r in rows] == ["hi", "ok"] and all(len(r["completions"]) == 1 for r in rows)
    assert rows[0]["decoder"] == "darwin" and rows[0]["hyper_parameters"]["n_states"] == 3
    assert all(r["rewards"] == [float(len(r["completions"][0]))] for r in rows)
    assert main(cmd) == 2
    assert "--decoder darwin needs --reward" in capsys.readouterr().err


# --- --aligner-model / --aligner-prefix ------------------------------------------------------------------------


def test_aligner_prefix_file_roundtrip_and_cli(saved, tmp_path, aligned, tok, capsys):
    import torch

    from alignkit.decoding.aligner_prefix import add_aligner_prefix, read_aligner_prefix, save_aligner_prefix

    m = add_aligner_prefix(aligned)
    with torch.no_grad():
        m.aligner_prefix.gates.fill_(0.5)
        m.aligner_prefix.prefix.normal_(0, 1.0)
    f = save_aligner_prefix(m, tmp_path / "prefix.safetensors")
    state = read_aligner_prefix(f)
    assert torch.equal(state["gates"], m.aligner_prefix.gates.detach())
    common = ["generate", "--model", str(saved / "aligned"), "--prompt", "hi", "--max-new-tokens", "5"]
    common += ["--temperature", "0"]
    assert main(common) == 0
    plain = _rows(capsys)
    assert main([*common, "--decoder", "aligner_prefix", "--aligner-prefix", str(f), "--hp", "scale=0"]) == 0
    assert _texts(_rows(capsys)) == _texts(plain)  # scale 0 = the base model
    assert main([*common, "--decoder", "aligner_prefix", "--aligner-prefix", str(f), "--hp", "scale=20"]) == 0
    assert _texts(_rows(capsys)) != _texts(plain)  # the trained prefix changes the output
    assert main([*common, "--decoder", "aligner_prefix", "--aligner-prefix", str(tmp_path / "nope.st")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([*common, "--aligner-prefix", str(f)]) == 2
    assert "--aligner-prefix given without --decoder" in capsys.readouterr().err


def test_aligners_cli_uses_the_aligner_model(saved, aligned, ref, tok, capsys):
    from alignkit.decoding import DecodeContext
    from alignkit.decoding.aligners import aligners

    common = ["generate", "--model", str(saved / "ref"), "--prompt", "hi", "--max-new-tokens", "4"]
    common += ["--temperature", "0"]
    assert main([*common, "--decoder", "aligners", "--aligner-model", str(saved / "aligned")]) == 0
    got = _rows(capsys)
    ctx = DecodeContext(aligner_model=aligned, sampling=dict(max_new_tokens=4, temperature=0.0, seed=0,
                        num_samples=1, top_p=1.0, top_k=0), extra={"aligner_tokenizer": tok})  # fmt: skip
    want = aligners(ref, tok, ["hi"], ctx)
    assert got[0]["completions"] == want[0]
