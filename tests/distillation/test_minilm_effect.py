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
    """Each trained student over training seeds 0, 1, 2 (the seed sets masking and batch order; the starting
    weights are the teacher's layers on every seed): its mean cosine and 95% Student-t interval across seeds, and
    its per-seed change against the untrained student (which has no training seed and keeps its bootstrap
    interval over the held-out lines)."""
    from alignkit.eval.metrics import seed_interval
    from tests.effect import TRAINING_SEEDS

    torch.manual_seed(0)
    teacher, tok = load_minilm_teacher()
    docs = pretraining_documents(max_chars=100_000)
    train = [line.strip() for d in docs for line in d.splitlines() if len(line.split()) >= 6][:1000]
    held_out = prompt_lines()[:64]  # lines of plays kept out of `train`

    def compare(student: torch.nn.Module) -> dict[str, float]:
        return compare_to_teacher(teacher, student, tok, held_out, max_tokens=256)

    init_student = student_from_teacher(teacher, LAYERS)
    init = compare(init_student)
    arms = {
        "triple": dict(method="distilbert", learning_rate=5e-4),  # DistilBERT's weights 5/2/1
        "kd": dict(method="distilbert", learning_rate=5e-4, hyper_parameters={"alpha_mlm": 0.0}),  # 5/0/1
        # WID: masked-LM task loss, FFN compactors 1536 -> 384; its README: the inherited weights move at 1e-6, the
        # compactors learn
        "wid": dict(method="wid", learning_rate=1e-6, compactor_learning_rate=1e-3, w_step=1, target=384),
    }
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in arms}
    for seed in TRAINING_SEEDS:
        for name, settings in arms.items():
            student, log = train_student(
                teacher, student_from_teacher(teacher, LAYERS), tok, train, seed=seed, **settings, **RUN
            )
            rows[name].append(compare(student))
            if name == "wid":  # WID folds its compactors: a narrower, smaller student
                assert log[-1]["masked"] == 1152
                assert all(layer.intermediate.dense.out_features == 384 for layer in student.encoder.layer)
    print("\nstudent | embedding cosine per seed | NN agreement | token agreement | params (M)")
    print(f"init | {init['embedding_cosine']:.3f} | {init['retrieval_agreement']:.3f} | ...")
    for name, ms in rows.items():
        print(
            f"{name} | {[round(m['embedding_cosine'], 3) for m in ms]} | {[round(m['retrieval_agreement'], 3) for m in ms]}"
            f" | {[round(m['token_agreement'], 3) for m in ms]} | {ms[0]['params'] / 1e6:.2f}"
        )
    cos = {name: [m["embedding_cosine"] for m in ms] for name, ms in rows.items()}
    init_lo, init_hi = init["embedding_cosine_lo"], init["embedding_cosine_hi"]
    figures: dict[str, float | list[float]] = {
        "init_cos": init["embedding_cosine"],
        "init_cos_ci": [init_lo, init_hi],
        "init_params_m": init["params"] / 1e6,
        "teacher_params_m": sum(p.numel() for p in teacher.parameters()) / 1e6,
    }
    for name, vals in cos.items():
        iv = seed_interval(vals)
        change = seed_interval([v - init["embedding_cosine"] for v in vals])  # the untrained student: no seed
        figures |= {
            f"{name}_cos": iv["mean"],
            f"{name}_cos_ci": iv["ci95"],
            f"{name}_cos_seeds": iv["values"],
            f"{name}_vs_init": change["mean"],
            f"{name}_vs_init_ci": change["ci95"],
            f"{name}_params_m": rows[name][0]["params"] / 1e6,
        }
    record_claims(
        "distill_minilm",
        figures,
        tolerance={
            f"{k}_{f}": 0.01
            for k in ("init", *arms)
            for f in ("cos", "cos_ci", "cos_seeds", "vs_init", "vs_init_ci")
            if k != "init" or f in ("cos", "cos_ci")
        },
    )
    # measured: the distillation signal (soft targets + hidden-state cosine) moves the student towards the teacher
    # on every seed (each seed above the untrained student's cosine), but by less than the seed-to-seed spread: the
    # change's across-seed interval includes 0 and seed 2 lies inside the untrained student's interval
    # (inconclusive; one seed alone read as held)
    assert min(cos["kd"]) > init["embedding_cosine"]
    assert figures["kd_vs_init_ci"][0] < 0 < figures["kd_vs_init_ci"][1]
    # measured: with the MLM term (no masked-LM head on this checkpoint) both the 5/2/1 student and WID fall below
    # the untrained student on every seed
    assert max(cos["triple"]) < init_lo and max(cos["wid"]) < init_lo
    assert rows["wid"][0]["params"] < init["params"] < figures["teacher_params_m"] * 1e6
    for m in [init, *(m for ms in rows.values() for m in ms)]:
        assert all(torch.isfinite(torch.tensor(v)) for v in m.values())
