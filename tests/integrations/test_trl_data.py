"""Data handling that must equal TRL 1.16's on the same rows (in-process)."""

import copy

import pytest

pytest.importorskip("trl")
from datasets import Dataset  # noqa: E402
from trl import KTOConfig, KTOTrainer  # noqa: E402

from alignkit.data.prepare import prepare  # noqa: E402
from alignkit.engine.tiny import char_tokenizer, tiny_llama  # noqa: E402


def test_kto_mismatched_kl_completions_are_trls(tmp_path):
    tok = char_tokenizer()
    rows = [
        {"prompt": f"p{i}:", "completion": "ab"[: 1 + i % 2] + "c" * i, "label": bool(i % 2)}
        for i in range(5)
    ]
    args = KTOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, use_cpu=True, report_to=[])
    model = tiny_llama(vocab_size=len(tok), hidden_size=32)
    trainer = KTOTrainer(
        model=model,
        ref_model=copy.deepcopy(model),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
    )
    trl_kl = trainer.train_dataset["KL_completion_ids"]
    trl_comp = trainer.train_dataset["completion_ids"]
    ours = prepare(rows, mode="unpaired", tokenizer=tok, with_kl=True, kl_group=2).examples
    assert [e.completion_ids for e in ours] == [list(c) for c in trl_comp]
    assert [e.kl_completion_ids for e in ours] == [list(c) for c in trl_kl]
    # the rotation is within chunks of the per-device batch: row 0 takes row 1's completion, row 4 its own chunk's
    assert (
        ours[0].kl_completion_ids == ours[1].completion_ids
        and ours[4].kl_completion_ids == ours[4].completion_ids
    )


def _bpe():
    from alignkit.testbed.model import train_tokenizer

    docs = [
        "Human: is it good? Assistant: this movie is great",
        "Assistant: the movie was bad",
        "a movie",
    ] * 20
    return train_tokenizer(docs, 300)


def test_token_ids_equal_trls_on_implicit_prompts_split_mid_word_and_trailing_spaces(tmp_path):
    from trl import DPOConfig, DPOTrainer

    tok = _bpe()
    rows = [
        # implicit prompt: the shared prefix ends in " th" (mid-word)
        {"chosen": "Human: is it good? Assistant: this movie is great", "rejected": "Human: is it good? Assistant: the movie was bad"},
        # a prompt ending in a space
        {"prompt": "Human: is it good? Assistant: ", "chosen": "movie is great", "rejected": "movie was bad"},
        # clean row
        {"prompt": "Human: is it good? Assistant:", "chosen": " this movie", "rejected": " a movie"},
    ]  # fmt: skip
    args = DPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=2, use_cpu=True, report_to=[])
    model = tiny_llama(vocab_size=len(tok), hidden_size=32)
    out = {}
    for i, row in enumerate(rows):
        trainer = DPOTrainer(
            model=model, ref_model=copy.deepcopy(model), args=args, train_dataset=Dataset.from_list([row]),
            processing_class=tok,
        )  # fmt: skip
        out[i] = trainer.train_dataset[0]
    with pytest.warns(UserWarning, match="not a prefix"):
        ours = prepare(rows, mode="paired", tokenizer=tok).examples
    for i, e in enumerate(ours):
        assert e.prompt_ids == out[i]["prompt_ids"], i
        assert e.chosen_ids == out[i]["chosen_ids"], i
        assert e.rejected_ids == out[i]["rejected_ids"], i


GEN_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{% if m['role'] == 'assistant' %}{% generation %}"
    "{{ m['content'] }}</s>{% endgeneration %}{% else %}{{ m['content'] }}</s>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def test_sft_trains_every_assistant_turn_like_trls_assistant_only_loss(tmp_path):
    from trl import SFTConfig, SFTTrainer

    tok = char_tokenizer()
    tok.chat_template = GEN_TEMPLATE
    conv = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hey"},
        {"role": "user", "content": "and?"},
        {"role": "assistant", "content": "bye"},
    ]
    args = SFTConfig(
        output_dir=str(tmp_path), assistant_only_loss=True, use_cpu=True, report_to=[], max_length=None
    )
    model = tiny_llama(vocab_size=len(tok), hidden_size=32)
    trl_row = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list([{"messages": conv}]),
                         processing_class=tok).train_dataset[0]  # fmt: skip
    trl_trained = [t for t, lab in zip(trl_row["input_ids"], trl_row["labels"], strict=True) if lab != -100]
    ex = prepare([{"messages": conv}], mode="sft", tokenizer=tok).examples[0]
    ours = [t for t, m in zip(ex.completion_ids, ex.target_mask, strict=True) if m]
    assert tok.decode(ours) == "hey</s>bye</s>"
    assert ours == trl_trained
    assert ex.prompt_ids + ex.completion_ids == trl_row["input_ids"]
    last = prepare([{"messages": conv}], mode="sft", tokenizer=tok, assistant_turns="last").examples[0]
    assert tok.decode(last.completion_ids) == "bye</s>" and last.target_mask is None
