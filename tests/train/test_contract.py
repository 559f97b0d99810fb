"""The objective spec contract: the trainer supplies every declared field from data columns or computation,
refuses what it cannot supply before step 1, and reports optional fields it leaves out."""

import json
import subprocess
import sys

import pytest
import torch

import alignkit as ak
from alignkit.batches_extra import (
    EditedPreferenceBatch,
    MultiObjectivePreferenceBatch,
    RewardedBatch,
    SoftPreferenceBatch,
)
from alignkit.engine.tiny import char_tokenizer, tiny_llama
from alignkit.errors import UserError
from alignkit.objectives.preference.figa import edit_masks
from alignkit.spec import ObjectiveSpec, merge_specs
from alignkit.train import Hook
from tests.stop_hook import StopAt

TOK = char_tokenizer()


class Capture(Hook):
    """Keeps each micro-batch's batch and the objective's output (hooks see both)."""

    def __init__(self):
        self.seen = []

    def extra_loss(self, ctx, micro, out):
        self.seen.append((micro.examples, micro.batch, out))
        return None


def _pairs(n=8, **extra):
    rows = []
    for i in range(n):
        r = {"prompt": f"q{i % 3}:", "chosen": "good day" if i % 2 else "fine", "rejected": "bad day"}
        for k, v in extra.items():
            r[k] = v(i) if callable(v) else v
        rows.append(r)
    return rows


def _train(objective, data, **kw):
    cap = Capture()
    base = dict(tokenizer=TOK, batch_size=4, max_steps=1, learning_rate=1e-3, progress=False, hooks=[cap])
    base.update(kw)
    res = ak.train(
        objective=objective, model=tiny_llama(vocab_size=len(TOK), hidden_size=32, seed=1), data=data, **base
    )
    return res, cap


def test_figa_trains_on_edit_masks_from_the_token_alignment():
    res, cap = _train("figa", _pairs())
    examples, batch, out = cap.seen[0]
    assert isinstance(batch, EditedPreferenceBatch)
    for i, e in enumerate(examples):
        ini, rev = edit_masks(e.rejected_ids, e.chosen_ids)
        c_pos = batch.chosen.mask[i].nonzero().flatten()
        r_pos = batch.rejected.mask[i].nonzero().flatten()
        assert batch.chosen_edit_mask[i, c_pos].tolist() == rev
        assert batch.rejected_edit_mask[i, r_pos].tolist() == ini
    # the loss is FIGA on those masks, and differs from the every-token-edited limiting case
    assert torch.allclose(out.loss, ak.get("figa")(batch).loss)
    plain = ak.PreferenceBatch(
        chosen_logps=batch.chosen_logps, rejected_logps=batch.rejected_logps,
        chosen_mask=batch.chosen_mask, rejected_mask=batch.rejected_mask,
    )  # fmt: skip
    assert not torch.allclose(out.loss, ak.get("figa")(plain).loss)
    assert res.notes == []


def test_irepo_reads_preference_probabilities_and_reports_their_absence(tmp_path):
    probs = [0.9, 0.6, 0.75, 0.55, 0.8, 0.7, 0.65, 0.95]
    res, cap = _train("irepo", _pairs(preference_prob=lambda i: probs[i]), reference="model", batch_size=8)
    examples, batch, out = cap.seen[0]
    assert isinstance(batch, SoftPreferenceBatch)
    by_row = {e.where: e.extras["preference_prob"] for e in examples}
    assert sorted(batch.preference_probs.tolist()) == pytest.approx(sorted(by_row.values()))
    assert torch.allclose(out.loss, ak.get("irepo")(batch).loss)
    # without the column: trained as the hard-label limiting case, and said so at the start and in the report
    res2, cap2 = _train("irepo", _pairs(), reference="model", output_dir=str(tmp_path / "run"))
    assert type(cap2.seen[0][1]) is ak.PreferenceBatch
    assert res2.notes and "preference_prob" in res2.notes[0] and res2.notes[0].startswith("irepo:")
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["field_notes"] == res2.notes


def test_a_bad_preference_probability_names_the_row_and_field():
    rows = _pairs(preference_prob=0.5)
    rows[3]["preference_prob"] = 1.5
    with pytest.raises(ValueError, match=r"row 4: field 'preference_prob': must be a number in \[0, 1\]"):
        _train("irepo", rows, reference="model")


def test_cao_numbers_named_objectives_in_sorted_order():
    names = ["style", "fidelity", "safety"]
    res, cap = _train("cao", _pairs(objective=lambda i: names[i % 3]), reference="model", batch_size=8)
    examples, batch, out = cap.seen[0]
    assert isinstance(batch, MultiObjectivePreferenceBatch)
    expect = [sorted(names).index(e.extras["objective"]) for e in examples]
    assert batch.objective_ids.tolist() == expect
    assert torch.allclose(out.loss, ak.get("cao")(batch).loss)


def test_task_reward_is_refused_without_rewards_and_trains_on_the_reward_column():
    rows = [{"prompt": f"p{i % 2}:", "completion": "ab" * (i % 3 + 1), "label": True} for i in range(8)]
    with pytest.raises(UserError, match="task_reward.*needs rewards.*'reward'"):
        _train("task_reward", rows)
    rows = [{"prompt": f"p{i % 2}:", "completion": "ab" * (i % 3 + 1), "reward": float(i)} for i in range(8)]
    res, cap = _train("task_reward", rows, batch_size=8)
    examples, batch, out = cap.seen[0]
    assert isinstance(batch, RewardedBatch)
    assert batch.rewards.tolist() == [e.extras["reward"] for e in examples]
    prompts = [tuple(e.prompt_ids) for e in examples]
    ids = batch.group_ids.tolist()
    assert all((prompts[a] == prompts[b]) == (ids[a] == ids[b]) for a in range(8) for b in range(8))
    assert torch.allclose(out.loss, ak.get("task_reward")(batch).loss)


def test_online_mode_reaches_policy_gradient_objectives():
    calls = []

    def reward_fn(prompts, completions):
        calls.append(len(completions))
        return [float(len(c)) for c in completions]

    rows = [{"prompt": f"p{i}:"} for i in range(4)]
    res, cap = _train(
        "task_reward", rows, reward_fn=reward_fn, batch_size=2, online_samples=3, online_max_new_tokens=4
    )
    examples, batch, out = cap.seen[0]
    assert isinstance(batch, RewardedBatch) and batch.batch_size == 6  # 2 prompts x 3 samples
    assert batch.group_ids.tolist() == [0, 0, 0, 1, 1, 1]
    assert batch.rewards.tolist() == [float(len(e.completion_ids)) for e in examples]
    assert calls == [6] and "online/reward_mean" in res.history[0]


def test_cringe_without_contrast_tokens_is_reported():
    res, _ = _train("pairwise_cringe", _pairs())
    assert any(n.startswith("pairwise_cringe: no sampled contrast tokens") for n in res.notes)


def test_trra_is_refused_by_the_lm_trainer_with_a_reason():
    with pytest.raises(UserError, match="takes a DistillBatch"):
        _train("trra", _pairs())


def _grads_after(objective, **kw):
    res, _ = _train(objective, _pairs(16), max_steps=2, **kw)
    return torch.cat([p.detach().flatten() for p in res.model.parameters()]), [h["loss"] for h in res.history]


def test_combine_is_order_invariant_under_gradient_accumulation():
    a = ak.combine([("sft", 1.0), ("dpo", 1.0)])
    b = ak.combine([("dpo", 1.0), ("sft", 1.0)])
    assert (
        a.spec.requires == b.spec.requires and a.spec.needs_reference and a.normalisation == b.normalisation
    )
    wa, la = _grads_after(a, batch_size=2, grad_accum=4, reference="model")
    wb, lb = _grads_after(b, batch_size=2, grad_accum=4, reference="model")
    assert torch.allclose(wa, wb, atol=1e-6) and la == pytest.approx(lb, abs=1e-6)
    # and accumulation equals one big micro-batch: the sft part is weighted per token, dpo per pair
    wc, lc = _grads_after(a, batch_size=8, grad_accum=1, reference="model")
    assert torch.allclose(wa, wc, atol=1e-5) and la == pytest.approx(lc, abs=1e-5)


def test_merge_specs_is_order_independent():
    s1 = ak.get("figa").spec
    s2 = ak.get("irepo").spec
    s3 = ak.get("dpo").spec
    assert merge_specs([s1, s2, s3]) == merge_specs([s3, s2, s1])
    with pytest.raises(ValueError, match="unknown batch field 'nope'"):
        ObjectiveSpec(requires=("nope",))
    assert ak.get("dpo").requires_fields(use_weighting=True) == ("ref_logps", "log_sum_sq_probs")


def test_import_alignkit_imports_neither_trainer_nor_safety():
    code = (
        "import sys, alignkit as ak; ak.get('dpo'); ak.get('kto');"
        "bad = [m for m in sys.modules if m.startswith(('alignkit.train.trainer', 'alignkit.safety', 'alignkit.cli'))];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert ak.get("alignment_resampling").kind == "decoder"  # other kinds load on demand


def test_dropout_is_disabled_like_trl_so_step_zero_dpo_is_log_2():
    from transformers import GPT2Config, GPT2LMHeadModel

    def gpt2():
        torch.manual_seed(0)
        cfg = GPT2Config(vocab_size=len(TOK), n_positions=64, n_embd=32, n_layer=2, n_head=2, resid_pdrop=0.3,
                         embd_pdrop=0.3, attn_pdrop=0.3)  # fmt: skip
        return GPT2LMHeadModel(cfg)

    kw = dict(tokenizer=TOK, data=_pairs(), batch_size=8, max_steps=1, progress=False, reference="model")
    on = ak.train(objective="dpo", model=gpt2(), **kw)
    assert on.history[0]["loss"] == pytest.approx(0.6931471805599453, abs=1e-6)
    assert on.fast_paths["dropout_disabled"] > 0
    off = ak.train(objective="dpo", model=gpt2(), disable_dropout=False, **kw)
    assert abs(off.history[0]["loss"] - 0.6931471805599453) > 1e-4


def test_multi_turn_sft_padded_equals_packed_and_counts_only_assistant_tokens():
    conv = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hey there"},
        {"role": "user", "content": "and?"},
        {"role": "assistant", "content": "bye"},
    ]
    rows = [{"messages": conv}, {"messages": conv[:2]}] * 4
    pad, cap = _train("sft", rows, packing=False, max_steps=2)
    packed, _ = _train("sft", rows, packing=True, max_steps=2)
    assert [h["loss"] for h in pad.history] == pytest.approx([h["loss"] for h in packed.history], abs=1e-5)
    examples, batch, _ = cap.seen[0]
    assert int(batch.mask.sum()) == sum(e.n_targets() for e in examples)
    assert sum(e.n_targets() for e in examples) < sum(len(e.completion_ids) for e in examples)


def test_optimizer_and_cooldown_from_the_config():
    """SAM runs its second pass through the trainer (rho=0 is AdamW exactly); WSD cooldown shapes apply."""
    base, _ = _grads_after("dpo", reference="model")
    sam0, _ = _grads_after("dpo", reference="model", optimizer="sam", optimizer_kwargs={"rho": 0.0})
    sam, _ = _grads_after("dpo", reference="model", optimizer="sam", optimizer_kwargs={"rho": 0.5})
    assert torch.allclose(base, sam0, atol=1e-6) and not torch.allclose(base, sam, atol=1e-4)
    res, _ = _train("dpo", _pairs(16), reference="model", max_steps=4, lr_scheduler="wsd", wsd_decay_ratio=0.5,
                    wsd_cooldown="1-sqrt")  # fmt: skip
    lrs = [h["learning_rate"] for h in res.history]
    assert lrs[:3] == pytest.approx([1e-3] * 3) and lrs[3] == pytest.approx(
        1e-3 * (1 - 0.5**0.5)
    )  # linear: 0.5e-3
    with pytest.raises(UserError, match="bloop"):
        _train("dpo", _pairs(), optimizer="bloop")


def test_sam_run_resumes_to_the_uninterrupted_run(tmp_path):
    kw = dict(reference="model", optimizer="sam", optimizer_kwargs={"rho": 0.05}, max_steps=4, save_steps=2)
    full, _ = _train("dpo", _pairs(16), **kw)
    out = str(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        _train("dpo", _pairs(16), output_dir=out, hooks=[StopAt(3)], **kw)
    resumed, _ = _train("dpo", _pairs(16), output_dir=out, hooks=[StopAt(0)], resume=True, **kw)
    assert [h["step"] for h in resumed.history] == [1, 2, 3, 4]
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in full.history], abs=1e-6)
