"""Fast paths on a GPU: every engine path gives the plain padded full-logits path's log-probs and gradients.

    python benchmarks/cuda_check.py               # CUDA when available, else CPU
    python benchmarks/cuda_check.py --device cpu

The CPU test suite (tests/engine/test_fast_paths.py) proves the same equalities on the CPU; this script repeats
them on the device the benchmark runs on (fp32, TF32 off, so the tolerance is the CPU one), with and without LoRA,
and prints one line per path with the largest per-sequence log-prob and gradient differences. Exit code 1 when a
path differs by more than the tolerance.
"""

from __future__ import annotations

import argparse
import sys

import torch

from alignkit.engine.logprobs import completion_logps, full_logits_logps, join
from alignkit.engine.packing import pack_pairs, packed_logps, use_packed_attention

TOL = 1e-5


def _model(vocab: int, device: str, lora: bool) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
        for n, p in model.named_parameters():
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.05)
    return model.to(device)


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    out = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return out


def _grad_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys() and a
    return max(((a[n] - b[n]).abs().max() / max(1.0, a[n].abs().max().item())).item() for n in a)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    vocab = 1000
    g = torch.Generator().manual_seed(1)

    def r(n: int) -> list[int]:
        return torch.randint(3, vocab, (n,), generator=g).tolist()

    prompts = [r(n) for n in (37, 120, 5, 64)]
    chosen = [r(n) for n in (20, 3, 90, 33)]
    rejected = [r(n) for n in (41, 17, 2, 60)]
    w = torch.randn(8, generator=g, dtype=torch.float64).to(args.device)
    worst = 0.0
    print(f"device: {args.device} ({torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'})")
    for lora in (False, True):
        model = _model(vocab, args.device, lora)
        ids, att, comp = join(prompts * 2, chosen + rejected, 0, None)
        ids, att, comp = ids.to(args.device), att.to(args.device), comp.to(args.device)
        tl = full_logits_logps(model, ids, att, comp)
        (tl.sums() * w).sum().backward()
        base, base_g = tl.sums().detach(), _grads(model)
        results = []
        tl = completion_logps(model, ids, att, comp)
        (tl.sums() * w).sum().backward()
        results.append(("completion-only head", tl.sums().detach(), _grads(model)))
        with use_packed_attention(model):
            for shared in (False, True):
                tl = packed_logps(
                    model,
                    pack_pairs(prompts, chosen, rejected, torch.device(args.device), shared_prompt=shared),
                )
                (tl.sums() * w).sum().backward()
                name = "packed + shared prompt" if shared else "packed"
                results.append((name, tl.sums().detach(), _grads(model)))
        for name, sums, grads in results:
            d_lp = (sums.to(base.device) - base).abs().max().item()
            d_g = _grad_diff(base_g, grads)
            worst = max(worst, d_lp, d_g)
            ok = "ok" if max(d_lp, d_g) <= TOL else "FAIL"
            print(
                f"{'lora' if lora else 'full'} {name:>24}: max |d logp| {d_lp:.2e}, max rel |d grad| {d_g:.2e} {ok}"
            )
    print(f"worst difference {worst:.2e} (tolerance {TOL:g})")
    return 0 if worst <= TOL else 1


if __name__ == "__main__":
    sys.exit(main())
