"""Every objective: finite gradients that reach the policy log-probs and never the reference; bad input gets a
ValueError naming the field, never a silent NaN."""

from __future__ import annotations

import pytest
import torch
from helpers import preference_batch, token_inputs

import alignkit as ak

# Objectives over the four standard batches; ones taking an extended batch (e.g. trra's DistillBatch) have their
# own gradient tests next to them.
_STANDARD = (ak.PreferenceBatch, ak.UnpairedBatch, ak.SFTBatch, ak.RewardBatch, None)
OBJECTIVES = [o for o in ak.list_objectives() if o.batch_type in _STANDARD]


def _batch_for(obj, x):
    if obj.batch_type is ak.UnpairedBatch:
        labels = torch.tensor([True, False, True, False])
        return ak.UnpairedBatch(
            logps=x["chosen_logps"],
            mask=x["chosen_mask"],
            labels=labels,
            ref_logps=x["ref_chosen_logps"],
            kl_logps=x["ref_rejected_logps"].sum(-1) * 0.9,
            ref_kl_logps=x["ref_rejected_logps"].sum(-1),
        ), [x["chosen_logps"]]
    if obj.batch_type is ak.RewardBatch:
        rc = x["chosen_logps"].sum(-1)
        return ak.RewardBatch(rc, x["rejected_logps"].sum(-1)), [x["chosen_logps"], x["rejected_logps"]]
    if obj.batch_type is None:  # sft takes either
        return ak.SFTBatch(x["chosen_logps"], x["chosen_mask"]), [x["chosen_logps"]]
    return preference_batch(x), [x["chosen_logps"], x["rejected_logps"]]


@pytest.mark.parametrize("obj", OBJECTIVES, ids=[o.name for o in OBJECTIVES])
def test_gradients_finite_reach_policy_not_reference(obj):
    x = token_inputs(b=4, t=6, seed=1)
    x["ref_chosen_logps"].requires_grad_()
    x["ref_rejected_logps"].requires_grad_()
    batch, policy = _batch_for(obj, x)
    hp = {"center_rewards_coefficient": 0.01} if obj.name == "bradley_terry" else {}
    out = obj(batch, **hp)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert out.losses.shape == (4,)
    assert torch.isfinite(out.losses).all()
    out.loss.backward()
    for p in policy:
        assert p.grad is not None and torch.isfinite(p.grad).all()
        assert p.grad.abs().sum() > 0
        if obj.batch_type is ak.RewardBatch:
            continue
        # padding positions get no gradient
        mask = x["chosen_mask"] if p is x["chosen_logps"] else x["rejected_mask"]
        assert (p.grad[mask == 0] == 0).all()
    assert x["ref_chosen_logps"].grad is None and x["ref_rejected_logps"].grad is None
    for v in out.metrics.values():
        assert isinstance(v, float)


@pytest.mark.parametrize("obj", OBJECTIVES, ids=[o.name for o in OBJECTIVES])
def test_float32_matches_float64(obj):
    x64 = token_inputs(b=4, t=6, seed=2)
    x32 = {k: v.detach().float() for k, v in x64.items()}
    hp = {"center_rewards_coefficient": 0.01} if obj.name == "bradley_terry" else {}
    a = obj(_batch_for(obj, x64)[0], **hp).loss.item()
    b = obj(_batch_for(obj, x32)[0], **hp).loss.item()
    assert b == pytest.approx(a, rel=1e-4, abs=1e-5)


# --- bad input ---------------------------------------------------------------------------------------------------
def _x():
    return {k: v.detach().clone() for k, v in token_inputs(b=3, t=4, seed=3).items()}


def test_mismatched_shapes_name_the_field():
    x = _x()
    x["chosen_mask"] = x["chosen_mask"][:, :3]
    with pytest.raises(ValueError, match="chosen_mask"):
        preference_batch(x)
    x = _x()
    x["rejected_logps"] = x["rejected_logps"][:2]
    x["rejected_mask"] = x["rejected_mask"][:2]
    with pytest.raises(ValueError, match="rejected_logps"):
        preference_batch(x)
    x = _x()
    x["ref_chosen_logps"] = x["ref_chosen_logps"][:, :2]
    with pytest.raises(ValueError, match="ref_chosen_logps"):
        preference_batch(x)


def test_empty_mask_rows_are_rejected():
    x = _x()
    x["rejected_mask"][1] = 0
    with pytest.raises(ValueError, match=r"rejected_mask selects no token in row\(s\) \[1\]"):
        preference_batch(x)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_log_probs_are_rejected(bad):
    x = _x()
    x["chosen_logps"][2, 0] = bad
    with pytest.raises(ValueError, match=r"chosen_logps holds a non-finite value .* \(2, 0\)"):
        preference_batch(x)
    x = _x()
    x["ref_rejected_logps"][0, 0] = bad
    with pytest.raises(ValueError, match="ref_rejected_logps"):
        preference_batch(x)


def test_nan_on_padding_is_ignored():
    x = _x()
    row, col = (x["chosen_mask"] == 0).nonzero()[0].tolist()
    x["chosen_logps"][row, col] = float("nan")
    out = ak.get("dpo")(preference_batch(x))
    assert torch.isfinite(out.loss)


def test_positive_log_probs_are_rejected():
    x = _x()
    x["rejected_logps"][0, 1] = 0.7
    with pytest.raises(ValueError, match="rejected_logps holds a positive log-probability"):
        preference_batch(x)
    with pytest.raises(ValueError, match="chosen_logps holds a positive"):
        ak.PreferenceBatch.from_sequence_logps(torch.tensor([0.5]), torch.tensor([-1.0]))


@pytest.mark.parametrize(
    "name", [o.name for o in OBJECTIVES if o.needs_reference and o.batch_type is ak.PreferenceBatch]
)
def test_missing_reference_names_the_field(name):
    x = _x()
    b = ak.PreferenceBatch(
        chosen_logps=x["chosen_logps"],
        rejected_logps=x["rejected_logps"],
        chosen_mask=x["chosen_mask"],
        rejected_mask=x["rejected_mask"],
    )
    with pytest.raises(ValueError, match="ref_chosen_logps and ref_rejected_logps are missing"):
        ak.get(name)(b)


def test_one_sided_reference_is_rejected():
    x = _x()
    with pytest.raises(ValueError, match="ref_rejected_logps"):
        ak.PreferenceBatch(
            chosen_logps=x["chosen_logps"],
            rejected_logps=x["rejected_logps"],
            ref_chosen_logps=x["ref_chosen_logps"],
        )


def test_unpaired_missing_fields():
    x = _x()
    b = ak.UnpairedBatch(
        logps=x["chosen_logps"],
        mask=x["chosen_mask"],
        labels=torch.tensor([1, 0, 1]),
        ref_logps=x["ref_chosen_logps"],
    )
    with pytest.raises(ValueError, match="kl_logps and ref_kl_logps are missing"):
        ak.get("kto")(b)
    b2 = ak.UnpairedBatch(logps=x["chosen_logps"], mask=x["chosen_mask"], labels=torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match="ref_logps is missing"):
        ak.get("apo_zero_unpaired")(b2)
    with pytest.raises(ValueError, match="labels must be boolean"):
        ak.UnpairedBatch(logps=x["chosen_logps"], labels=torch.tensor([1, 2, 0]))
    with pytest.raises(ValueError, match="UnpairedBatch needs labels"):
        ak.UnpairedBatch(logps=x["chosen_logps"])


def test_sequence_level_batch_limits():
    b = ak.PreferenceBatch.from_sequence_logps(
        torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.0]), torch.tensor([-1.0])
    )
    assert ak.get("dpo")(b).loss.item() > 0
    with pytest.raises(ValueError, match="chosen_lengths and rejected_lengths"):
        ak.get("simpo")(b)
    with pytest.raises(ValueError, match="per-token"):
        ak.get("dpo")(b, ld_alpha=0.5)
    with pytest.raises(ValueError, match="chosen_log_sum_sq_probs"):
        x = _x()
        ak.get("dpo")(preference_batch(x), use_weighting=True)


def test_unknown_hyper_parameter_and_name():
    with pytest.raises(TypeError, match="no hyper-parameter 'betta'.*beta"):
        ak.get("dpo")(preference_batch(_x()), betta=0.1)
    with pytest.raises(KeyError, match="did you mean 'dpo'"):
        ak.get("dpoo")
    with pytest.raises(TypeError, match="takes a PreferenceBatch, got UnpairedBatch"):
        x = _x()
        ak.get("dpo")(ak.UnpairedBatch(logps=x["chosen_logps"], labels=torch.tensor([1, 0, 1])))


def test_invalid_hyper_parameter_values():
    b = preference_batch(_x())
    with pytest.raises(ValueError, match="f_divergence_type"):
        ak.get("dpo")(b, f_divergence_type="kl")
    with pytest.raises(ValueError, match="label_smoothing"):
        ak.get("exo_pair")(b, label_smoothing=0.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        ak.get("robust")(b, label_smoothing=0.5)
    with pytest.raises(ValueError, match="nll"):
        ak.get("rpo")(b, nll="median")
    # TRL allows the f-divergence only on some losses; so do we
    with pytest.raises(TypeError, match="f_divergence_type"):
        ak.get("nca_pair")(b, f_divergence_type="forward_kl")


def test_combine_contract():
    b = preference_batch(_x())
    mix = ak.combine([("dpo", 1.0), ("sft", 0.5, {})], name="rpo_mean")
    assert mix.needs_reference and mix.name == "rpo_mean"
    out = mix(b, beta=0.3)
    assert out.loss.item() == pytest.approx(
        ak.get("dpo")(b, beta=0.3).loss.item() + 0.5 * ak.get("sft")(b).loss.item()
    )
    assert {"loss/dpo", "loss/sft", "rewards/margins"} <= set(out.metrics)
    with pytest.raises(TypeError, match="no hyper-parameter"):
        ak.combine([("dpo", 1.0, {"gamma": 1.0})])
    with pytest.raises(ValueError, match="different batch types"):
        ak.combine([("dpo", 1.0), ("kto", 1.0)])
    with pytest.raises(ValueError, match="at least one"):
        ak.combine([])
    free = ak.combine([("simpo", 1.0), ("sft", 1.0)])
    assert not free.needs_reference and free.aggregation == "mean"
