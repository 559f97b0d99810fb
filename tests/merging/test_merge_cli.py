"""``alignkit merge`` on tiny Llama checkpoints saved with save_pretrained: a loadable HF folder whose logits equal
a hand merge (PEFT's merge_utils applied tensor by tensor), and errors that name the file and the tensor."""

from __future__ import annotations

import pytest
import torch
from peft.utils import merge_utils as pm
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from alignkit.cli.main import main
from alignkit.engine.tiny import tiny_llama


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    base = tiny_llama(seed=0)
    paths = {"base": root / "base"}
    base.save_pretrained(paths["base"])
    for name, seed in (("a", 1), ("b", 2)):
        m = tiny_llama(seed=0)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
        paths[name] = root / name
        m.save_pretrained(paths[name])
    return root, paths


def logits(model):
    ids = torch.tensor([[1, 5, 9, 20, 33, 7]])
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_ties_writes_a_loadable_folder_equal_to_a_hand_merge(ckpts):
    root, paths = ckpts
    out = root / "out_ties"
    rc = main(["merge", "--method", "ties", "--base", str(paths["base"]), "--models", str(paths["a"]),
               str(paths["b"]), "--weights", "0.5", "0.5", "--density", "0.2", "--convention", "peft",
               "--output", str(out), "--quiet"])  # fmt: skip
    assert rc == 0 and (out / "config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(out)
    sds = {k: load_file(paths[k] / "model.safetensors") for k in ("base", "a", "b")}
    hand = {
        k: b + pm.ties([sds["a"][k] - b, sds["b"][k] - b], torch.tensor([0.5, 0.5]), 0.2)
        for k, b in sds["base"].items()
    }
    ref = tiny_llama(seed=0)
    ref.load_state_dict(hand)
    assert torch.allclose(logits(merged), logits(ref), atol=1e-5)
    assert not torch.allclose(logits(merged), logits(tiny_llama(seed=0)), atol=1e-3)  # it did change


def test_bare_safetensors_and_wise_ft_endpoint(ckpts):
    root, paths = ckpts
    out = root / "wise.safetensors"
    assert main(["merge", "--method", "wise_ft", "--base", str(paths["base"] / "model.safetensors"),
                 "--models", str(paths["a"] / "model.safetensors"), "--alpha", "1", "--output", str(out), "--quiet"]) == 0  # fmt: skip
    got, want = load_file(out), load_file(paths["a"] / "model.safetensors")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)


def test_errors_name_the_file_and_the_tensor(ckpts, tmp_path, capsys):
    root, paths = ckpts
    narrow = tmp_path / "narrow"
    tiny_llama(hidden_size=16, seed=0).save_pretrained(narrow)
    argv = [
        "merge",
        "--method",
        "task_arithmetic",
        "--base",
        str(paths["base"]),
        "--output",
        str(tmp_path / "o"),
    ]
    assert main([*argv, "--models", str(narrow), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(narrow) in err and "tensor 'lm_head.weight' has shape [128, 16]" in err
    # a bare file with one tensor missing
    sd = load_file(paths["a"] / "model.safetensors")
    del sd["model.norm.weight"]
    partial = tmp_path / "partial.safetensors"
    save_file(sd, str(partial))
    assert main([*argv, "--models", str(partial), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(partial) in err and "missing tensor 'model.norm.weight'" in err
    # pickles are refused, not loaded
    pick = tmp_path / "pickled"
    pick.mkdir()
    (pick / "pytorch_model.bin").write_bytes(b"not loaded")
    assert main([*argv, "--models", str(pick), "--quiet"]) == 2
    assert "pickle checkpoints are not loaded" in capsys.readouterr().err
    # a flag the method does not use
    assert main([*argv, "--models", str(paths["a"]), "--density", "0.3", "--quiet"]) == 2
    assert "--density is not used by --method task_arithmetic" in capsys.readouterr().err


def test_merged_folder_records_its_own_origin(ckpts, tmp_path):
    """The output holds a fresh merge.json (method, hyper-parameters, SHA-256 of inputs and output) and the
    model/tokenizer files only — not the inputs' training records, whose hashes describe other weights."""
    import hashlib
    import json
    import shutil

    root, paths = ckpts
    base = tmp_path / "base"
    shutil.copytree(paths["base"], base)
    for stale in ("meta.json", "history.jsonl", "config.yaml", "data_report.json"):
        (base / stale).write_text("{}\n")
    out = tmp_path / "out"
    rc = main(["merge", "--method", "dare", "--base", str(base), "--models", str(paths["a"]), str(paths["b"]),
               "--density", "0.5", "--seed", "3", "--output", str(out), "--quiet"])  # fmt: skip
    assert rc == 0
    names = {p.name for p in out.iterdir()}
    assert names == {"config.json", "generation_config.json", "model.safetensors", "merge.json"}, names
    rec = json.loads((out / "merge.json").read_text())

    def sha(p):
        return hashlib.sha256(p.read_bytes()).hexdigest()

    assert rec["method"] == "dare"
    assert rec["hyper_parameters"]["drop_rate"] == 0.5 and rec["hyper_parameters"]["seed"] == 3
    assert rec["hyper_parameters"]["rescale"] is True  # defaults not given are recorded too
    assert [i["role"] for i in rec["inputs"]] == ["base", "model 0", "model 1"]
    assert rec["inputs"][1]["sha256"] == {"model.safetensors": sha(paths["a"] / "model.safetensors")}
    assert rec["output"] == {"model.safetensors": sha(out / "model.safetensors")}
    assert rec["output"] != rec["inputs"][0]["sha256"]
    bare = tmp_path / "w.safetensors"
    assert main(["merge", "--method", "wise_ft", "--base", str(base), "--models", str(paths["a"]), "--alpha",
                 "0.25", "--output", str(bare), "--quiet"]) == 0  # fmt: skip
    side = json.loads((tmp_path / "w.safetensors.merge.json").read_text())
    assert side["hyper_parameters"] == {"alpha": 0.25, "keys": None} and side["output"] == {
        "w.safetensors": sha(bare)
    }


def test_convention_flag_reaches_the_merge(ckpts, capsys):
    """Default --convention is mergekit (weights are relative): equal to ``ties(...)`` in-process, and 2x PEFT's
    delta with weights 0.5 / 0.5 on entries where both models agree."""
    from alignkit.merging import ties

    root, paths = ckpts
    argv = ["merge", "--method", "ties", "--base", str(paths["base"]), "--models", str(paths["a"]),
            str(paths["b"]), "--weights", "0.5", "0.5", "--density", "0.2", "--quiet"]  # fmt: skip
    assert main([*argv, "--output", str(root / "mk.safetensors")]) == 0
    assert main([*argv, "--convention", "peft", "--output", str(root / "pf.safetensors")]) == 0
    mk, pf = load_file(root / "mk.safetensors"), load_file(root / "pf.safetensors")
    sds = {k: load_file(paths[k] / "model.safetensors") for k in ("base", "a", "b")}
    want = ties(sds["base"], [sds["a"], sds["b"]], weights=[0.5, 0.5], density=0.2)
    assert all(torch.equal(mk[k], want[k]) for k in want)
    k = "model.layers.0.mlp.up_proj.weight"
    d_mk, d_pf = mk[k] - sds["base"][k], pf[k] - sds["base"][k]
    assert torch.allclose(d_pf, 0.5 * d_mk, atol=1e-6)
    ta = ["merge", "--method", "task_arithmetic", "--base", str(paths["base"]), "--models", str(paths["a"])]
    assert main([*ta, "--convention", "peft", "--output", str(root / "x"), "--quiet"]) == 2
    assert "--convention is not used by --method task_arithmetic" in capsys.readouterr().err
