"""The TRL bridge: TRL's DPOTrainer with an alignkit objective as its loss (trl==1.16.0, in-process, CPU)."""

import copy

import pytest
import torch

pytest.importorskip("trl")
from datasets import Dataset  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402

from alignkit.engine.tiny import char_tokenizer, tiny_llama  # noqa: E402
from alignkit.integrations.trl import AlignkitDPOTrainer  # noqa: E402

TOK = char_tokenizer()


def _data():
    rows = []
    for i in range(16):
        rows.append(
            {"prompt": f"q{i % 5}:", "chosen": " good" + "d" * (i % 3), "rejected": " bad" + "x" * (i % 4)}
        )
    return Dataset.from_list(rows)


def _run(cls, tmp_path, loss_type, **extra):
    torch.manual_seed(0)
    model = tiny_llama(vocab_size=len(TOK), hidden_size=32, seed=1)
    args = DPOConfig(
        output_dir=str(tmp_path / f"{cls.__name__}-{loss_type}"), per_device_train_batch_size=4, max_steps=3,
        learning_rate=1e-2, use_cpu=True, report_to=[], loss_type=[loss_type], beta=0.1, seed=0, logging_steps=1,
        save_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    trainer = cls(model=model, ref_model=copy.deepcopy(model), args=args, train_dataset=_data(),
                  processing_class=TOK, **extra)  # fmt: skip
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return losses, torch.cat([p.detach().flatten() for p in trainer.model.parameters()])


@pytest.mark.parametrize(("loss_type", "objective"), [("sigmoid", "dpo"), ("ipo", "ipo"), ("hinge", "hinge")])
def test_bridge_equals_trl_for_trl_loss_types(tmp_path, loss_type, objective):
    trl_losses, trl_w = _run(DPOTrainer, tmp_path, loss_type)
    ak_losses, ak_w = _run(AlignkitDPOTrainer, tmp_path, loss_type, objective=objective,
                           hyper_parameters={"beta": 0.1})  # fmt: skip
    assert len(trl_losses) == 3
    assert ak_losses == pytest.approx(trl_losses, abs=1e-5)
    assert torch.allclose(ak_w, trl_w, atol=1e-5)


@pytest.mark.parametrize("objective", ["figa", "discopop", "logic_cpo"])
def test_objectives_trl_lacks_train_through_it(tmp_path, objective):
    torch.manual_seed(0)
    w0 = torch.cat(
        [p.detach().flatten() for p in tiny_llama(vocab_size=len(TOK), hidden_size=32, seed=1).parameters()]
    )
    losses, w = _run(AlignkitDPOTrainer, tmp_path, "sigmoid", objective=objective)
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    assert not torch.allclose(w, w0)


def test_bridge_refuses_objectives_that_are_not_pairwise(tmp_path):
    from alignkit.errors import UserError

    with pytest.raises(UserError, match="takes a UnpairedBatch"):
        _run(AlignkitDPOTrainer, tmp_path, "sigmoid", objective="kto")
