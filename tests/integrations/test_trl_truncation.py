"""Truncation equal to TRL 1.16's on the same rows (in-process): the token ids of prompt, chosen and rejected, and
the sequences (and scored tokens) TRL's collator builds under ``max_length`` with ``keep_start`` and ``keep_end``."""

import copy
import warnings

import pytest

pytest.importorskip("trl")
from datasets import Dataset  # noqa: E402
from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer  # noqa: E402
from trl.trainer.dpo_trainer import DataCollatorForPreference  # noqa: E402
from trl.trainer.kto_trainer import DataCollatorForUnpairedPreference  # noqa: E402

from alignkit.data.prepare import DataError, prepare  # noqa: E402
from alignkit.engine.tiny import char_tokenizer, tiny_llama  # noqa: E402

L = 24
ROWS = [
    # a prompt longer than max_length (TRL drops it under keep_start; keep_end keeps its end)
    {"prompt": "P" * 40, "chosen": "good", "rejected": "bad answer"},
    # chosen long, rejected short: per sequence, the two keep different amounts of the prompt (keep_end)
    {"prompt": "question twelve?", "chosen": " a long chosen answer here", "rejected": " no"},
    # a completion longer than max_length on its own (keep_end keeps only its end)
    {"prompt": "q?", "chosen": " " + "c" * 40, "rejected": " r"},
    # nothing to cut
    {"prompt": "hi", "chosen": " yes", "rejected": " no"},
    # conversational, a long chosen reply
    {
        "prompt": [{"role": "user", "content": "a story?"}],
        "chosen": [{"role": "assistant", "content": "once upon a time there was a cat"}],
        "rejected": [{"role": "assistant", "content": "no"}],
    },
]


def _trl_dataset(tok, rows, tmp_path, max_length, mode="keep_start"):
    """TRL's tokenised rows (string rows and conversational rows in separate datasets: Arrow needs one type)."""
    text = [r for r in rows if isinstance(r["prompt"], str)]
    chat = [r for r in rows if not isinstance(r["prompt"], str)]
    return [t for part in (text, chat) if part for t in _trl_part(tok, part, tmp_path, max_length, mode)]


def _trl_part(tok, rows, tmp_path, max_length, mode):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TRL deprecates keep_end (still supported in 1.16)
        args = DPOConfig(
            output_dir=str(tmp_path), use_cpu=True, report_to=[], max_length=max_length, truncation_mode=mode
        )
    model = tiny_llama(vocab_size=len(tok), hidden_size=32)
    trainer = DPOTrainer(
        model=model, ref_model=copy.deepcopy(model), args=args, train_dataset=Dataset.from_list(rows),
        processing_class=tok,
    )  # fmt: skip
    return list(trainer.train_dataset)


def _ours(rows, tok, mode, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return prepare(rows, mode="paired", tokenizer=tok, max_length=L, truncation_mode=mode, **kw)


@pytest.fixture(scope="module")
def tok():
    return char_tokenizer()


@pytest.fixture(scope="module")
def trl_rows(tok, tmp_path_factory):
    """TRL's tokenised rows, untruncated (TRL truncates in its collator)."""
    return _trl_dataset(tok, ROWS, tmp_path_factory.mktemp("trl"), None)


def test_untruncated_token_ids_are_trls(tok, trl_rows):
    ours = prepare(ROWS, mode="paired", tokenizer=tok, max_length=None).examples
    for i, (e, t) in enumerate(zip(ours, trl_rows, strict=True)):
        assert (e.prompt_ids, e.chosen_ids, e.rejected_ids) == (
            t["prompt_ids"],
            t["chosen_ids"],
            t["rejected_ids"],
        ), i


@pytest.mark.parametrize("mode", ["keep_start", "keep_end"])
def test_truncated_sequences_and_scored_tokens_are_trls(tok, trl_rows, mode):
    # TRL drops rows whose prompt fills max_length under keep_start; alignkit names them as bad rows, and skips
    # them (like TRL) with skip_bad_rows
    kept = [t for t in trl_rows if mode == "keep_end" or len(t["prompt_ids"]) < L]
    assert len(kept) == (len(trl_rows) - 1 if mode == "keep_start" else len(trl_rows))
    if mode == "keep_start":
        with pytest.raises(
            DataError, match=r"data row 1: field 'prompt': is 41 tokens, filling max_length=24"
        ):
            _ours(ROWS, tok, mode)
    out = _ours(ROWS, tok, mode, skip_bad_rows=True)
    ours = out.examples
    assert len(ours) == len(kept)
    batch = DataCollatorForPreference(pad_token_id=tok.pad_token_id, max_length=L, truncation_mode=mode)(kept)
    b = len(kept)
    different_prompts = 0
    for i, e in enumerate(ours):
        for row, prompt, comp in (
            (i, e.prompt_ids, e.chosen_ids),
            (b + i, e.rejected_prompt, e.rejected_ids),
        ):
            n = int(batch["attention_mask"][row].sum())
            assert prompt + comp == batch["input_ids"][row][:n].tolist(), (mode, row)
            # the scored tokens (TRL's loss uses completion_mask[..., 1:]) are the same
            ours_mask = [0] * len(prompt) + [1] * len(comp)
            assert ours_mask[1:] == batch["completion_mask"][row][1:n].tolist(), (mode, row)
        different_prompts += e.rejected_prompt != e.prompt_ids
    rep = out.report
    if mode == "keep_end":
        assert different_prompts >= 2  # rows 1 and 2 (chosen and rejected keep different prompt parts)
        # row 1: both sequences cut inside the prompt, by different amounts; rows 2, 3 and 5: the chosen sequence
        # cut past the prompt, into the completion
        assert rep.truncated == 4 and rep.truncated_sequences == 5
        assert rep.truncated_prompts == 5 and rep.truncated_completions == 3
        assert ours[0].prompt_ids != ours[0].rejected_prompt and len(ours[0].rejected_prompt) == L - 11
        assert rep.to_dict()["truncated_sequences"] == 5 and not rep.skipped
    else:
        assert different_prompts == 0
        assert rep.truncated == 3 and rep.truncated_sequences == 3 and rep.truncated_completions == 3
        assert rep.truncated_prompts == 0 and len(rep.skipped) == 1
    total_cut = sum(
        len(t["prompt_ids"]) * 2 + len(t["chosen_ids"]) + len(t["rejected_ids"]) for t in kept
    ) - int(batch["attention_mask"].sum())
    assert rep.truncated_tokens == total_cut


def test_keep_start_filter_matches_trls_dropped_rows(tok, tmp_path):
    trl_kept = _trl_dataset(tok, ROWS, tmp_path, L, "keep_start")
    ours = _ours(ROWS, tok, "keep_start", skip_bad_rows=True).examples
    assert len(trl_kept) == len(ROWS) - 1 and [e.prompt_ids for e in ours] == [
        t["prompt_ids"] for t in trl_kept
    ]
    assert [e.chosen_ids for e in ours] == [t["chosen_ids"][: L - len(t["prompt_ids"])] for t in trl_kept]


def test_kto_sequences_and_kl_sequences_are_trls(tok, tmp_path):
    rows = [
        {"prompt": "question?", "completion": " " + "a" * 30, "label": True},
        {"prompt": "q" * 18, "completion": " b", "label": False},
        {"prompt": "x", "completion": " " + "c" * 12, "label": True},
    ]
    args = KTOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=3, use_cpu=True, report_to=[], max_length=L
    )
    model = tiny_llama(vocab_size=len(tok), hidden_size=32)
    trainer = KTOTrainer(
        model=model, ref_model=copy.deepcopy(model), args=args, train_dataset=Dataset.from_list(rows),
        processing_class=tok,
    )  # fmt: skip
    data = list(trainer.train_dataset)
    batch = DataCollatorForUnpairedPreference(pad_token_id=tok.pad_token_id, max_length=L)(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ours = prepare(rows, mode="unpaired", tokenizer=tok, max_length=L, with_kl=True, kl_group=3)
    for i, e in enumerate(ours.examples):
        n = int(batch["attention_mask"][i].sum())
        assert e.prompt_ids + e.completion_ids == batch["input_ids"][i][:n].tolist(), i
        k = int(batch["KL_attention_mask"][i].sum())
        assert e.prompt_ids + e.kl_completion_ids == batch["KL_input_ids"][i][:k].tolist(), i
    assert ours.report.truncated_sequences == 1


def test_max_prompt_and_completion_length_cut_first(tok):
    rows = [{"prompt": "abcdefgh", "chosen": " long answer", "rejected": " no"}]
    p = tok("abcdefgh")["input_ids"]
    for mode, want in (("keep_start", p[:4]), ("keep_end", p[-4:])):
        e = _ours(rows, tok, mode, max_prompt_length=4, max_completion_length=5).examples[0]
        assert e.prompt_ids == want and len(e.chosen_ids) == 5 and len(e.rejected_ids) == 4  # " no" + EOS
    rep = _ours(rows, tok, "keep_start", max_prompt_length=4, max_completion_length=5).report
    assert rep.truncated_prompts == 2 and rep.truncated_completions == 1 and rep.truncated_sequences == 0


@pytest.mark.parametrize("mode", ["keep_start", "keep_end"])
def test_sft_sequences_and_labels_are_trls(tok, tmp_path, mode):
    from trl import SFTConfig, SFTTrainer

    rows = [
        {
            "prompt": "P" * 30,
            "completion": " answer",
        },  # keep_start: the prompt fills max_length (TRL drops it)
        {"prompt": "q?", "completion": " " + "c" * 40},  # keep_end: only the completion's end is left
        {"prompt": "hi", "completion": " yo"},
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        args = SFTConfig(
            output_dir=str(tmp_path), use_cpu=True, report_to=[], max_length=L, truncation_mode=mode
        )
    trainer = SFTTrainer(
        model=tiny_llama(vocab_size=len(tok), hidden_size=32), args=args, train_dataset=Dataset.from_list(rows),
        processing_class=tok,
    )  # fmt: skip
    trl = list(trainer.train_dataset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ours = prepare(
            rows, mode="sft", tokenizer=tok, max_length=L, truncation_mode=mode, skip_bad_rows=True
        )
    assert len(ours.examples) == len(trl) == (2 if mode == "keep_start" else 3)
    for e, t in zip(ours.examples, trl, strict=True):
        assert e.prompt_ids + e.completion_ids == t["input_ids"]
        scored = [0] * len(e.prompt_ids) + [1] * len(e.completion_ids)  # TRL scores labels[1:]
        assert scored[1:] == [int(x != -100) for x in t["labels"][1:]]
