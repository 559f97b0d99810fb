"""Output-folder rules, run identity, checkpoint manifests / verification / fallback / resume refusal, torn history.

Direct tests of ``alignkit.train.run_dir`` and ``alignkit.train.checkpoint`` (no trainer): a tiny model, a real
optimizer and scheduler, files written and damaged by hand."""

import json
import warnings

import pytest
import torch

from alignkit.errors import CheckpointError, OutputDirError, UserError
from alignkit.train.checkpoint import (
    MANIFEST,
    find_resume_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_history,
    save_checkpoint,
    verify_checkpoint,
)
from alignkit.train.config import TrainConfig
from alignkit.train.run_dir import RUN_FILE, prepare_output_dir, read_identity, run_identity


@pytest.fixture
def data_file(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n")
    return f


def _cfg(model_dir, data_file, out, **kw):
    return TrainConfig(model=str(model_dir), data=str(data_file), output_dir=str(out), **kw)


def _parts():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    sched.step()
    return model, opt, sched


def _save(out, step, identity, total=10, limit=None):
    model, opt, sched = _parts()
    with torch.no_grad():
        model.weight.fill_(float(step))
    state = {"step": step, "total_steps": total, "objective_state": {}}
    return save_checkpoint(out, step, model, opt, sched, state, [{"x": step}], limit, identity=identity)


# --- identity --------------------------------------------------------------------------------------------------


def test_identity_is_stable_and_names_what_differs(model_dir, data_file, tmp_path):
    a = run_identity(_cfg(model_dir, data_file, tmp_path / "o"))
    assert a == run_identity(_cfg(model_dir, data_file, tmp_path / "other", resume=True, max_steps=7))
    other_data = tmp_path / "d2.jsonl"
    other_data.write_text(data_file.read_text().replace('"a"', '"c"'))
    b = run_identity(_cfg(model_dir, other_data, tmp_path / "o"))
    assert b.differs(a) == ["data"]
    c = run_identity(_cfg(model_dir, data_file, tmp_path / "o", learning_rate=1e-3))
    assert c.differs(a) == ["config"]
    d = run_identity(_cfg(model_dir, data_file, tmp_path / "o", hyper_parameters={"beta": 0.2}))
    assert d.fingerprint != a.fingerprint
    rows = [{"prompt": "q", "chosen": "a", "rejected": "b"}]
    e = run_identity(TrainConfig(model=torch.nn.Linear(2, 2), data=rows))
    assert (
        e.parts["data"]
        == run_identity(TrainConfig(model=torch.nn.Linear(2, 2), data=list(rows))).parts["data"]
    )
    assert (
        e.parts["model"] != run_identity(TrainConfig(model=torch.nn.Linear(2, 2), data=rows)).parts["model"]
    )


# --- output-folder rules ---------------------------------------------------------------------------------------


def test_fresh_and_empty_folders_are_used_and_marked(model_dir, data_file, tmp_path):
    ident = run_identity(_cfg(model_dir, data_file, tmp_path / "new"))
    out = prepare_output_dir(tmp_path / "new" / "deep", ident)
    assert read_identity(out) == ident
    (tmp_path / "empty").mkdir()
    prepare_output_dir(tmp_path / "empty", ident)
    assert (tmp_path / "empty" / RUN_FILE).is_file()


def test_unrelated_non_empty_folder_is_refused_unless_overwrite(model_dir, data_file, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    ident = run_identity(_cfg(model_dir, data_file, out))
    with pytest.raises(
        OutputDirError, match=r"not empty: it holds 1 file\(s\) of something else \(thesis.tex\)"
    ):
        prepare_output_dir(out, ident)
    assert not (out / RUN_FILE).exists()
    prepare_output_dir(out, ident, overwrite=True)
    assert (out / "thesis.tex").read_text() == "years of work"  # unrelated files are not deleted


def test_output_never_the_model_or_data_path(model_dir, data_file, tmp_path):
    ident = run_identity(_cfg(model_dir, data_file, model_dir))
    for out in (model_dir, model_dir / "sub"):
        with pytest.raises(OutputDirError, match="model folder"):
            prepare_output_dir(out, ident, overwrite=True, inputs={"model": model_dir, "data": data_file})
    clash = tmp_path / "runs"
    clash.mkdir()
    (clash / "history.jsonl").write_text("{}\n")
    with pytest.raises(OutputDirError, match="holds the data file history.jsonl"):
        prepare_output_dir(clash, ident, overwrite=True, inputs={"data": clash / "history.jsonl"})


def test_another_run_is_refused_naming_what_differs_and_overwrite_clears_it(model_dir, data_file, tmp_path):
    out = tmp_path / "run"
    a = run_identity(_cfg(model_dir, data_file, out))
    prepare_output_dir(out, a)
    _save(out, 12, a.fingerprint, total=12)
    (out / "history.jsonl").write_text('{"step": 1}\n')
    b = run_identity(_cfg(model_dir, data_file, out, learning_rate=1e-3))
    for resume in (False, True):
        with pytest.raises(OutputDirError, match=r"another alignkit run \(its config differ"):
            prepare_output_dir(out, b, resume=resume)
    assert (out / "checkpoint-12").is_dir()
    with pytest.warns(UserWarning, match="removed 3 item"):
        prepare_output_dir(out, b, overwrite=True)
    assert not list_checkpoints(out) and not (out / "history.jsonl").exists()
    assert read_identity(out) == b


def test_same_run_with_checkpoints_needs_resume_or_overwrite(model_dir, data_file, tmp_path):
    out = tmp_path / "run"
    a = run_identity(_cfg(model_dir, data_file, out))
    prepare_output_dir(out, a)
    _save(out, 2, a.fingerprint)
    with pytest.raises(OutputDirError, match="checkpoints of this same run.*--resume"):
        prepare_output_dir(out, a)
    prepare_output_dir(out, a, resume=True)
    assert (out / "checkpoint-2").is_dir()
    prepare_output_dir(out, a, overwrite=True)
    assert not (out / "checkpoint-2").exists()


def test_legacy_run_without_identity_is_refused(model_dir, data_file, tmp_path):
    out = tmp_path / "old"
    (out / "checkpoint-4").mkdir(parents=True)
    (out / "checkpoint-4" / "trainer_state.json").write_text("{}")
    with pytest.raises(OutputDirError, match="without a run identity"):
        prepare_output_dir(out, run_identity(_cfg(model_dir, data_file, out)), resume=True)


# --- checkpoints -----------------------------------------------------------------------------------------------


def test_manifest_is_written_last_and_verifies(tmp_path):
    path = _save(tmp_path, 3, "abc")
    manifest = verify_checkpoint(path)
    assert manifest["identity"] == "abc" and manifest["step"] == 3 and manifest["total_steps"] == 10
    on_disk = {p.name for p in path.iterdir()} - {MANIFEST}
    assert set(manifest["files"]) == on_disk
    for name, meta in manifest["files"].items():
        assert meta["size"] == (path / name).stat().st_size


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: (p / MANIFEST).unlink(), "manifest.json is missing"),
        (lambda p: (p / "optimizer.pt").unlink(), "optimizer.pt is missing"),
        (lambda p: (p / "model.safetensors").write_bytes(b"\0" * 10), "model.safetensors is 10 bytes"),
        (
            lambda p: (p / "scheduler.pt").write_bytes(
                bytes(b ^ 1 for b in (p / "scheduler.pt").read_bytes())
            ),
            "scheduler.pt does not match its sha256",
        ),
    ],
)
def test_verification_names_the_bad_file(tmp_path, damage, message):
    path = _save(tmp_path, 3, "abc")
    damage(path)
    with pytest.raises(CheckpointError, match=message):
        verify_checkpoint(path)


def test_resume_falls_back_to_the_newest_complete_checkpoint_and_says_which(tmp_path):
    for step in (2, 4, 6):
        _save(tmp_path, step, "run")
    (tmp_path / "checkpoint-6" / "model.safetensors").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match=r"resuming from checkpoint-4.*checkpoint-6/model.safetensors"):
        point = find_resume_checkpoint(tmp_path, identity="run", total_steps=10)
    assert point.step == 4 and point.skipped
    model, opt, sched = _parts()
    state = load_checkpoint(point.path, model, opt, sched)
    assert state["step"] == 4 and torch.all(model.weight == 4.0)


def test_resume_fails_naming_every_bad_file_when_none_is_complete(tmp_path):
    for step in (2, 4):
        _save(tmp_path, step, "run")
        (tmp_path / f"checkpoint-{step}" / "optimizer.pt").write_bytes(b"x")
    with pytest.raises(
        CheckpointError, match=r"no complete checkpoint.*checkpoint-4/optimizer.pt.*checkpoint-2"
    ):
        find_resume_checkpoint(tmp_path, identity="run", total_steps=10)
    assert find_resume_checkpoint(tmp_path / "nothing", identity="run", total_steps=10) is None


def test_resume_refuses_another_runs_checkpoint_and_one_past_max_steps(tmp_path):
    _save(tmp_path, 12, "run-A", total=12)
    with pytest.raises(
        CheckpointError, match=r"checkpoint-12 belongs to another run \(identity run-A; this run is run-B"
    ):
        find_resume_checkpoint(tmp_path, identity="run-B", total_steps=12)
    with pytest.raises(CheckpointError, match=r"step 12 of a 12-step run; this run has max_steps 6"):
        find_resume_checkpoint(tmp_path, identity="run-A", total_steps=6)
    with pytest.raises(CheckpointError, match=r"12-step run; this run has max_steps 20"):
        find_resume_checkpoint(tmp_path, identity="run-A", total_steps=20)
    assert find_resume_checkpoint(tmp_path, identity="run-A", total_steps=12).step == 12


def test_save_total_limit_prunes_only_this_runs_checkpoints(tmp_path):
    _save(tmp_path, 12, "A", total=12)
    for step in (1, 2, 3):
        _save(tmp_path, step, "B", limit=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 3, 12]


def test_corrupt_safetensors_at_load_is_a_checkpoint_error_naming_the_file(tmp_path):
    path = _save(tmp_path, 2, "run")
    (path / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json")
    model, opt, sched = _parts()
    with pytest.raises(CheckpointError, match="checkpoint-2/model.safetensors"):
        load_checkpoint(path, model, opt, sched)


def test_full_disk_is_a_user_error_and_leaves_no_temporary(tmp_path, monkeypatch):
    import errno

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(UserError, match="no space left on device while writing checkpoint-2"):
        _save(tmp_path, 2, "run")
    assert not any(p.name.startswith(".tmp-") for p in tmp_path.iterdir())
    assert not list_checkpoints(tmp_path)


# --- history ---------------------------------------------------------------------------------------------------


def test_torn_last_history_line_is_dropped_and_the_file_rewritten(tmp_path):
    f = tmp_path / "history.jsonl"
    f.write_text('{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.9}\n{"step": 3, "lo')
    with pytest.warns(UserWarning, match="line 3: dropped a torn last record"):
        recs = restore_history(tmp_path, upto_step=2)
    assert [r["step"] for r in recs] == [1, 2]
    assert f.read_text() == '{"step": 1, "loss": 1.0}\n{"step": 2, "loss": 0.9}\n'
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert [r["step"] for r in restore_history(tmp_path, upto_step=1)] == [1]


def test_bad_history_line_in_the_middle_names_file_and_line(tmp_path):
    (tmp_path / "history.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(CheckpointError, match=r"history.jsonl line 2"):
        restore_history(tmp_path, upto_step=5)
    assert restore_history(tmp_path / "none", upto_step=5) == []
