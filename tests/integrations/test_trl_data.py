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
