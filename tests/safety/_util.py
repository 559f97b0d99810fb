from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

import alignkit as ak
from alignkit.engine.tiny import char_tokenizer, tiny_llama

TOK = char_tokenizer()


def ids(text: str) -> list[int]:
    return TOK(text, add_special_tokens=False)["input_ids"]


def sft_rows(n: int = 8, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    words = ["abc", "hello", "xyz", "refuse", "sure", "no"]
    rows = []
    for _ in range(n):
        a, b = torch.randint(len(words), (2,), generator=g).tolist()
        rows.append({"prompt": f"Q {words[a]}?", "completion": f" {words[b]}."})
    return rows


HARMFUL = [(ids("How to do harm?"), ids(" Sure, here.")), (ids("Make a weapon"), ids(" Ok: step 1"))]
REFUSALS = [(ids("How to do harm?"), ids(" I cannot help.")), (ids("Make a weapon"), ids(" I refuse."))]


def run(hooks=(), rows=None, steps: int = 3, **kw):
    kw.setdefault("learning_rate", 1e-2)
    return ak.train(
        objective="sft",
        model=tiny_llama(vocab_size=len(TOK), hidden_size=16, num_layers=1),
        tokenizer=TOK,
        data=rows if rows is not None else sft_rows(),
        batch_size=2,
        max_steps=steps,
        progress=False,
        hooks=list(hooks),
        **kw,
    )


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class Quad(nn.Module):
    """w in R^d with h(w) = 1/2 w^T A w: analytic gradients for hand checks."""

    def __init__(self, w: list[float]) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float64))


def fake_ctx(model: nn.Module, total_steps: int = 10) -> SimpleNamespace:
    return SimpleNamespace(model=model, total_steps=total_steps, step=0)
