"""Effect test: distil the real all-MiniLM-L6-v2 (6 layers) into 3-layer students initialised from its layers
0, 2, 4 (DistilBERT-style), on the shipped Shakespeare text, with DistilBERT's triple loss (paper weights and
without the MLM term) and with WID (masked-LM task loss + FFN compactors folded to a quarter of the width);
compare with the untrained 3-layer student on held-out lines (embedding cosine with a bootstrap interval,
nearest-neighbour agreement, tied-head token agreement, size, speed). Prints the table for docs/claims.md."""

from __future__ import annotations

import pytest
import torch

from alignkit.objectives.distillation import (
    compare_to_teacher,
    load_minilm_teacher,
    student_from_teacher,
    train_student,
)
from alignkit.testbed.corpus import pretraining_documents, prompt_lines
from tests.claims_io import record_claims

LAYERS = (0, 2, 4)
RUN = dict(steps=30, batch_size=8, max_length=24)


@pytest.mark.slow
def test_minilm_distillation_students():
    torch.manual_seed(0)
    teacher, tok = load_minilm_teacher()
    docs = pretraining_documents(max_chars=100_000)
    train = [line.strip() for d in docs for line in d.splitlines() if len(line.split()) >= 6][:1000]
    held_out = prompt_lines()[:64]  # lines of plays kept out of `train`

    students = {"init (layers 0,2,4)": student_from_teacher(teacher, LAYERS)}
    students["distilbert (5/2/1)"], _ = train_student(
        teacher,
        student_from_teacher(teacher, LAYERS),
        tok,
        train,
        method="distilbert",
        learning_rate=5e-4,
        **RUN,
    )
    students["distilbert (5/0/1, no MLM)"], _ = train_student(
        teacher,
        student_from_teacher(teacher, LAYERS),
        tok,
        train,
        method="distilbert",
        learning_rate=5e-4,
        hyper_parameters={"alpha_mlm": 0.0},
        **RUN,
    )
    students["wid (MLM, FFN 1536->384)"], wid_log = train_student(
        teacher,
        student_from_teacher(teacher, LAYERS),
        tok,
        train,
        method="wid",
        learning_rate=1e-6,  # WID README: the inherited weights move at 1e-6, the compactors learn
        compactor_learning_rate=1e-3,
        w_step=1,
        target=384,
        **RUN,
    )
    rows = {
        name: compare_to_teacher(teacher, s, tok, held_out, max_tokens=256) for name, s in students.items()
    }
    print("\nstudent | embedding cosine [95% CI] | NN agreement | token agreement | params (M) | speedup")
    for name, m in rows.items():
        print(
            f"{name} | {m['embedding_cosine']:.3f} [{m['embedding_cosine_lo']:.3f}, {m['embedding_cosine_hi']:.3f}]"
            f" | {m['retrieval_agreement']:.3f} | {m['token_agreement']:.3f} | {m['params'] / 1e6:.2f}"
            f" | {m['speedup']:.2f}x"
        )
    init, kd = rows["init (layers 0,2,4)"], rows["distilbert (5/0/1, no MLM)"]
    keys = {"init (layers 0,2,4)": "init", "distilbert (5/2/1)": "triple", "distilbert (5/0/1, no MLM)": "kd"}
    keys["wid (MLM, FFN 1536->384)"] = "wid"
    record_claims(
        "distill_minilm",
        {
            f"{keys[name]}_{k}": v
            for name, m in rows.items()
            for k, v in (
                ("cos", m["embedding_cosine"]),
                ("cos_ci", [m["embedding_cosine_lo"], m["embedding_cosine_hi"]]),
                ("params_m", m["params"] / 1e6),
            )
        }
        | {"teacher_params_m": sum(p.numel() for p in teacher.parameters()) / 1e6},
        tolerance={f"{k}_{f}": 0.01 for k in keys.values() for f in ("cos", "cos_ci")},
    )
    # The distillation signal (soft targets + hidden-state cosine) moves the student towards the teacher.
    assert kd["embedding_cosine_lo"] > init["embedding_cosine_hi"]
    # WID folds its compactors: a narrower, smaller student.
    wid = students["wid (MLM, FFN 1536->384)"]
    assert wid_log[-1]["masked"] == 1152
    assert all(layer.intermediate.dense.out_features == 384 for layer in wid.encoder.layer)
    assert (
        rows["wid (MLM, FFN 1536->384)"]["params"]
        < init["params"]
        < sum(p.numel() for p in teacher.parameters())
    )
    for m in rows.values():
        assert all(torch.isfinite(torch.tensor(v)) for v in m.values())
