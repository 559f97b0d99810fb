from __future__ import annotations

import pytest
import torch

import alignkit as ak
from alignkit.decoding import DecodeContext, sample_text
from alignkit.decoding.urial import EXAMPLES, token_distribution_shift, urial, urial_prompt


def test_prompt_format():
    p = urial_prompt("Why?", EXAMPLES[:1], system="SYS")
    assert p.startswith("# Instruction\n\nSYS\n") and p.endswith(
        "# Query:\n```\nWhy?\n```\n\n# Answer:\n```\n"
    )
    assert p.count("# Query:") == 2 and EXAMPLES[0][1] in p


def test_urial_is_plain_sampling_of_the_prompt(aligned, tok):
    ctx = DecodeContext(sampling=dict(max_new_tokens=5, temperature=0.0))
    got = urial(aligned, tok, ["hi"], ctx, num_examples=1)
    raw = sample_text(aligned, tok, [urial_prompt("hi", EXAMPLES[:1])], max_new_tokens=5, temperature=0.0)
    assert got == [[raw[0][0].split("```")[0].strip()]]
    with pytest.raises(ValueError, match="num_examples"):
        urial(aligned, tok, ["hi"], ctx, num_examples=9)


def test_tds_limits(aligned, ref):
    ctx = [1, 40, 41]
    greedy = []
    ids = list(ctx)
    rank5 = []
    ids5 = list(ctx)
    with torch.no_grad():
        for _ in range(5):
            z = aligned(input_ids=torch.tensor([ids])).logits[0, -1]
            greedy.append(int(z.argmax()))
            ids.append(greedy[-1])
            z5 = ref(input_ids=torch.tensor([ids5])).logits[0, -1]
            rank5.append(int(z5.argsort(descending=True)[4]))
            ids5.append(rank5[-1])
    same = token_distribution_shift(aligned, ctx, greedy, aligned)
    assert same["unshifted"] == 1.0 and same["ranks"] == [1] * 5
    assert same["kl"] == pytest.approx([0.0] * 5, abs=1e-6)
    shifted = token_distribution_shift(ref, ctx, rank5)
    assert shifted["ranks"] == [5] * 5 and shifted["shifted"] == 1.0 and shifted["marginal"] == 0.0
    assert token_distribution_shift(ref, ctx, rank5, marginal_max_rank=5)["marginal"] == 1.0
    assert ak.get("tds").kind == "diagnostic"
    with pytest.raises(ValueError, match="aligned_tokens"):
        token_distribution_shift(ref, ctx, [])


def test_prompt_file_replaces_the_stand_in_prompt(aligned, tok, tmp_path, capsys):
    """``--prompt-file`` (``context.extra["prompt_text"]``): the file's preamble + the query block, sampled as is."""
    import json

    from alignkit.cli.main import main
    from alignkit.decoding.urial import query_block

    prefix = "# Instruction\n\nBe brief.\n\n# Query:\n```\nhey\n```\n\n# Answer:\n```\nhello\n```\n"
    assert urial_prompt("hi", prefix=prefix) == prefix + "\n" + query_block("hi")
    ctx = DecodeContext(sampling=dict(max_new_tokens=5, temperature=0.0), extra={"prompt_text": prefix})
    got = urial(aligned, tok, ["hi"], ctx)
    raw = sample_text(aligned, tok, [urial_prompt("hi", prefix=prefix)], max_new_tokens=5, temperature=0.0)
    assert got == [[raw[0][0].split("```")[0].strip()]]
    with pytest.raises(ValueError, match="prompt_text"):
        urial(aligned, tok, ["hi"], DecodeContext(sampling={}, extra={"prompt_text": "  "}))
    # the CLI flag reaches the decoder
    aligned.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    (tmp_path / "p.txt").write_text(prefix)
    argv = [
        "generate",
        "--model",
        str(tmp_path / "m"),
        "--prompt",
        "hi",
        "--max-new-tokens",
        "5",
        "--temperature",
        "0",
    ]
    assert main([*argv, "--decoder", "urial", "--prompt-file", str(tmp_path / "p.txt")]) == 0
    assert json.loads(capsys.readouterr().out)["completions"] == got[0]
    assert main([*argv, "--prompt-file", str(tmp_path / "p.txt")]) == 2  # no --decoder
    assert "--prompt-file given without --decoder" in capsys.readouterr().err
