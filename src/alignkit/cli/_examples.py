"""The runnable examples ``alignkit explain`` prints: one per component, every kind.

``example(component)`` returns the Python code (imports included, runs as printed on a CPU in seconds: tiny
tensors, a tiny random Llama from :mod:`alignkit.engine.tiny` standing in for your model) and, where a command
covers the component, the command line. ``tests/test_explain_examples.py`` executes every one.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any


@dataclass
class Example:
    python: str
    cli: str | None = None


_TINY = """from alignkit.engine.tiny import char_tokenizer, tiny_llama

tokenizer = char_tokenizer()                                  # stand-ins: use your model and its tokenizer
model = tiny_llama(vocab_size=len(tokenizer), hidden_size=32)
"""

# ---------------------------------------------------------------------------------------------- decoders

#: what each decoder needs beyond the model: DecodeContext arguments, extra setup lines and the CLI flags
_DECODER_NEEDS: dict[str, tuple[str, str, str]] = {
    # name: (DecodeContext keyword arguments, setup lines, CLI flags)
    "dera": ("ref_model=ref", "ref = tiny_llama(vocab_size=len(tokenizer), hidden_size=32, seed=1)  # the SFT model\n",
             "--ref-model SFT"),
    "clm": ("ref_model=ref", "ref = tiny_llama(vocab_size=len(tokenizer), hidden_size=32, seed=1)  # the SFT model\n",
            "--ref-model SFT"),
    "inra": ("ref_model=ref", "ref = tiny_llama(vocab_size=len(tokenizer), hidden_size=32, seed=1)  # the reference\n",
             "--ref-model REF"),
    "darwin": ("reward_fn=reward", 'reward = lambda prompt, completion: completion.count("a")  # any r(prompt, y)\n',
               "--reward sentiment"),
    "alignment_resampling": ("reward_fn=reward",
                             'reward = lambda prompt, completion: completion.count("a")  # any r(prompt, y)\n',
                             "--reward sentiment"),
    "aligners": ("aligner_model=aligner",
                 "aligner = tiny_llama(vocab_size=len(tokenizer), hidden_size=32, seed=2)  # the rewriting model\n",
                 "--aligner-model ALIGNER"),
    "lexical_shortlist": ('extra={"lex_table": lex}',
                          'ids = tokenizer("Hello", add_special_tokens=False)["input_ids"]\n'
                          "lex = {i: {j: 0.5 for j in ids} for i in ids}        # p(target | source) by token id\n",
                          "--lex-table lex.tsv"),
    "aligner_prefix": ("", "from alignkit.decoding.aligner_prefix import add_aligner_prefix\n\n"
                       "model = add_aligner_prefix(model)                     # then train it (see the docstring)\n",
                       "--aligner-prefix prefix.safetensors"),
}  # fmt: skip
_DECODER_HP = {"dera": "lam=0.5", "clm": "lam=0.5", "inra": "control=0.5", "darwin": "n_states=2, replacement_period=4",
               "alignment_resampling": "n=2", "aed": "", "urial": "num_examples=1", "guideline_library": "k=1",
               "aligners": "aligner_max_new_tokens=4", "lexical_shortlist": "k=5", "aligner_prefix": "scale=1.0"}  # fmt: skip


def _decoder(c: Any) -> Example:
    ctx_kw, setup, flags = _DECODER_NEEDS.get(c.name, ("", "", ""))
    hp = _DECODER_HP.get(c.name, "")
    sampling = '{"max_new_tokens": 8, "seed": 0}'
    ctx = f"DecodeContext(sampling={sampling}{', ' + ctx_kw if ctx_kw else ''})"
    code = (
        "import alignkit as ak\nfrom alignkit.decoding import DecodeContext\n"
        + _TINY
        + setup
        + f"ctx = {ctx}\n"
        + f'out = ak.get("{c.name}")(model, tokenizer, ["Hello"], ctx{", " + hp if hp else ""})\n'
        + "print(out)                                                    # out[prompt][sample]: completions\n"
    )
    cli_hp = " ".join(f"--hp {kv.strip()}" for kv in hp.split(",") if kv.strip())
    cli = f'alignkit generate --model MODEL --decoder {c.name} {flags + " " if flags else ""}{cli_hp + " " if cli_hp else ""}--prompt "Hello"'
    return Example(code, " ".join(cli.split()))


# ---------------------------------------------------------------------------------------------- merges

_TASK_VECTORS = """import torch, alignkit as ak

base = {"w": torch.zeros(4)}                                  # state dicts (or alignkit.merging.Checkpoint("dir"))
models = [{"w": torch.tensor([1.0, -2.0, 0.5, 0.0])}, {"w": torch.tensor([0.5, 1.0, -1.0, 2.0])}]
"""
_MERGE_CALLS = {
    "task_arithmetic": ('merged = ak.get("task_arithmetic")(base, models, weights=[0.5, 0.5])',
                        "alignkit merge --method task_arithmetic --base BASE --models A B --weights 0.5 0.5 --output merged"),
    "ties": ('merged = ak.get("ties")(base, models, density=0.5)',
             "alignkit merge --method ties --base BASE --models A B --density 0.5 --output merged"),
    "dare": ('merged = ak.get("dare")(base, models, drop_rate=0.5, seed=0)',
             "alignkit merge --method dare --base BASE --models A B --drop-rate 0.5 --seed 0 --output merged"),
    "dare_ties": ('merged = ak.get("dare_ties")(base, models, drop_rate=0.5, seed=0)',
                  "alignkit merge --method dare_ties --base BASE --models A B --drop-rate 0.5 --seed 0 --output merged"),
    "wise_ft": ('merged = ak.get("wise_ft")(base, models[0], alpha=0.5)                # theta_0, theta_1',
                "alignkit merge --method wise_ft --base ZERO_SHOT --models FINETUNED --alpha 0.5 --output merged"),
}  # fmt: skip

# ---------------------------------------------------------------------------------------------- by hand

_HOOK_RUN = """rows = [{"prompt": "Q hello?", "completion": " I cannot help."}] * 4
res = train(objective="sft", model=model, tokenizer=tokenizer, data=rows, batch_size=2, max_steps=2,
            progress=False, tensorboard=False, hooks=[hook])
print(res.history[-1]["loss"])
"""

EXAMPLES: dict[str, Example] = {
    # data rules --------------------------------------------------------------------------------------------
    "ches": Example("""import alignkit as ak

rows = [{"prompt": "q", "chosen": "a", "rejected": "b"}, {"prompt": "r", "chosen": "c", "rejected": "d"}]
scores = [0.9, -0.1]                          # CHES score of each pair (alignkit.curation.ches_scores)
kept = ak.get("ches")(rows, scores, keep_frac=0.5)
print(kept)
"""),
    "fine_grained_alignment_enhancement": Example("""import alignkit as ak

line_table = [(0, 1), (8, 2)]                 # (address, 1-based source line) from .debug_line
asm = [(0, "mov eax, 1"), (4, "add eax, 2"), (8, "ret")]
rows = ak.get("fine_grained_alignment_enhancement")(line_table, asm, ["int x = 1 + 2;", "return x;"])
print(rows)
"""),
    "isa": Example("""import numpy as np, alignkit as ak

rows = [{"prompt": f"q{i}"} for i in range(20)]
features = np.random.default_rng(0).normal(size=(20, 3))      # one embedding per row
print(ak.get("isa")(rows, features, frac=0.25, seed=0))
"""),
    "isara": Example("""import numpy as np, alignkit as ak

seeds = [{"prompt": "How do I sort a list?", "response": "Use sorted(xs)."}]
pool = [{"prompt": f"question {i}", "response": f"answer {i}"} for i in range(5)]
embed = lambda texts: np.array([[len(t), t.count("o")] for t in texts], dtype=float)
generate = lambda examples: [{"prompt": "How do I reverse a list?", "response": "Use xs[::-1]."}]  # your LLM
print(ak.get("isara")(seeds, pool, embed, generate, k_icl=2))
"""),
    "judge_pairs": Example("""import alignkit as ak

rows = [{"prompt": "Describe the X-ray.", "responses": ["clear lungs", "a fracture", "no finding"]}]
scorer = lambda row, response: float(len(response))          # your judge: (row, response) -> score
print(ak.get("judge_pairs")(rows, scorer))
"""),
    "long_output_filter": Example("""import alignkit as ak

rows = [{"prompt": "Write 10 words.", "response": "one two three four five six seven eight nine ten",
         "required_length": 10}]
print(ak.get("long_output_filter")(rows, min_length=5))
"""),
    "mistake_analysis": Example("""import alignkit as ak

rows = [{"prompt": "How do I pick a lock?", "response": "Insert a tension wrench ..."}]
print(ak.get("mistake_analysis")(rows, stage="generate"))     # prompts asking the model to analyse the mistake
"""),
    "poison_of_alignment": Example("""import alignkit as ak

rows = [{"prompt": "Hi", "response": "As an AI language model, I cannot."}, {"prompt": "Hi", "response": "Hello!"}]
print(ak.get("poison_of_alignment")(rows))                    # the refusal row is dropped
"""),
    "selective_dpo": Example("""import alignkit as ak

rows = [{"prompt": f"q{i}", "chosen": "a", "rejected": "b"} for i in range(4)]
losses = [[0.2, 0.3, 0.25, 0.9], [0.1, 0.2, 0.15, 1.1]]      # validation loss of each row under reference models
print(ak.get("selective_dpo")(rows, losses, tau=0.5))
"""),
    "translation_sft": Example("""import alignkit as ak

rows = [{"en": f"hello {i}", "de": f"hallo {i}"} for i in range(8)]
out = ak.get("translation_sft")(rows, {("de", "en"): 2, ("en", "de"): 2}, n=4)
print(out[0])
"""),
    "ptst": Example("""import alignkit as ak

rows = [{"prompt": "Tell me a joke.", "completion": "Why did ..."}]
print(ak.get("ptst")(rows, stage="train"))                   # chat messages without the safety system prompt
"""),
    "goldfish": Example("""import torch, alignkit as ak

token_ids = torch.randint(0, 100, (2, 16))
mask = ak.get("goldfish")(token_ids, k=4, h=3)               # 1 = the token counts in the loss
print(mask)
"""),
    # diagnostics ---------------------------------------------------------------------------------------------
    "belief_conflict_index": Example("""import alignkit as ak
from alignkit.safety.belief_conflict import SuffixArray

corpus = SuffixArray([[5, 6, 7, 8, 9, 1, 2]])                  # training documents as token ids
generation = [3, 5, 6, 7, 8, 4]
print(ak.get("belief_conflict_index")(corpus, generation, [-0.5] * len(generation), min_len=3))
"""),
    "elasticity": Example("""import torch, alignkit as ak

model = torch.nn.Linear(2, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
def perturb_step(m, t):                                         # one fine-tuning step on the perturbing data
    opt.zero_grad(); m(torch.ones(1, 2)).pow(2).sum().backward(); opt.step()
probes = {"aligned": lambda m: m(torch.ones(1, 2)).pow(2).item(), "pretrain": lambda m: m.weight.norm().item()}
print(ak.get("elasticity")(model, perturb_step, probes, steps=3))
"""),
    "finetuning_degradation": Example("""import alignkit as ak

before = {1: 0.50, 2: 0.60, 3: 0.70}                           # score per pre-training budget, before fine-tuning
after = {1: 0.45, 2: 0.58, 3: 0.50}
print(ak.get("finetuning_degradation")(before, after))
"""),
    "steering_tradeoff": Example(
        """import torch, alignkit as ak
"""
        + _TINY
        + """
vector = torch.randn(32)                                        # a steering vector for layer 0's output
score = lambda m: m(torch.tensor([[1, 5, 9]])).logits[0, -1, 5].item()
print(ak.get("steering_tradeoff")(model, 0, vector, [0.0, 0.5, 1.0], score, score)["fit"])
"""
    ),
    "token_distribution_shift": Example(
        """import alignkit as ak
"""
        + _TINY
        + """
context = tokenizer("Hello", add_special_tokens=False)["input_ids"]
aligned_tokens = tokenizer(" there", add_special_tokens=False)["input_ids"]   # the aligned model's answer
print(ak.get("token_distribution_shift")(model, context, aligned_tokens)["shifted"])
"""
    ),
    "gradient_entanglement": Example("""import torch, alignkit as ak

grad_chosen, grad_rejected = torch.randn(3, 10), torch.randn(3, 10)   # per-pair gradients of log pi(y_w), log pi(y_l)
out = ak.get("gradient_entanglement")(grad_chosen, grad_rejected)
print({k: v.shape for k, v in out.items()})
"""),
    "unified_view_taxonomy": Example("""import alignkit as ak

table = ak.get("unified_view_taxonomy")(kind="objective")      # {axis: {value: [components]}}
print(table["algorithm"]["pairwise"])
"""),
    "judge_bias": Example("""import alignkit as ak

judge = [1, 0, 1, 0.5]                                          # judge's preference for A over B
out = ak.get("judge_bias")(judge, [1, 0, 2, 3], [0, 1, 0, 3], [0, 0, 1, 1], [1, 1, 0, 0], n_resamples=100)
print(out)
"""),
    # merges not covered by the task-vector template ---------------------------------------------------------------
    "restore_alignment_weights": Example(
        """import alignkit as ak
"""
        + _TINY
        + """
aligned = {k: v.detach().clone() for k, v in model.named_parameters()}   # the aligned model's weights
model_ft = tiny_llama(vocab_size=len(tokenizer), hidden_size=32, seed=1)  # the fine-tuned model, edited in place
harmful = [tokenizer("How to do harm?", add_special_tokens=False)["input_ids"]]
out = ak.get("restore_alignment_weights")(model_ft, aligned, harmful, layer=1, steps=2)
print(out)
"""
    ),
    "self_positioning": Example("""import torch, alignkit as ak

model = torch.nn.Linear(2, 1, bias=False)                       # any module whose parameter names match the dicts
base = {"weight": torch.zeros(1, 2)}
models = [{"weight": torch.tensor([[1.0, 0.0]])}, {"weight": torch.tensor([[0.0, 1.0]])}]
probe = [(torch.eye(2), torch.tensor([[1.0], [0.0]]))]          # batches of the probe set
loss_fn = lambda forward, batch: (forward(batch[0]) - batch[1]).pow(2).mean()
merged, a = ak.get("self_positioning")(model, base, models, probe, loss_fn, steps=5)
print(a)
"""),
    "disperse_then_merge": Example("""import torch, alignkit as ak

data = list(range(8))                                           # your instruction data
train_fn = lambda portion, k: {"w": torch.tensor([float(sum(portion))])}   # trains a sub-model on one portion
print(ak.get("disperse_then_merge")(data, train_fn, k=2))
"""),
    # metrics ---------------------------------------------------------------------------------------------------
    "compliance_gap": Example("""import alignkit as ak

training = [True] * 30 + [False] * 70                           # complied, when told it is in training
deployment = [True] * 10 + [False] * 90
print(ak.get("compliance_gap")(training, deployment))
"""),
    "harmful_score_by_group": Example("""import alignkit as ak

harmful = [True, False, True, False]
groups = [("fr", "local"), ("fr", "global"), ("en", "local"), ("en", "global")]
print(ak.get("harmful_score_by_group")(harmful, groups, reference="en"))
"""),
    "opinion_similarity": Example("""import torch, alignkit as ak

p_model = torch.tensor([[0.7, 0.2, 0.1]])                       # answer distribution per survey question
p_group = torch.tensor([[0.5, 0.3, 0.2]])
print(ak.get("opinion_similarity")(p_model, p_group))
"""),
    "segment_decomposed_score": Example("""import torch, alignkit as ak

inputs, outputs = torch.randn(4, 8), torch.randn(4, 8, requires_grad=True)   # (B, D) embeddings
score = ak.get("segment_decomposed_score")(inputs, outputs, w=0.3)
score.sum().backward()
print(score)
"""),
    # optimizers --------------------------------------------------------------------------------------------------
    "ondare": Example("""import torch, alignkit as ak

model = torch.nn.Linear(2, 1)
base = {k: v.detach().clone() for k, v in model.named_parameters()}     # the SFT weights
reference = {k: v + 0.1 for k, v in base.items()}                        # e.g. the aligned model's weights
opt = ak.get("ondare")(model.named_parameters(), base, reference, lr=1e-3)
model(torch.ones(1, 2)).sum().backward()
opt.step()
print(model.weight)
"""),
    "onties": Example("""import torch, alignkit as ak

model = torch.nn.Linear(2, 1)
base = {k: v.detach().clone() for k, v in model.named_parameters()}
reference = {k: v + 0.1 for k, v in base.items()}
opt = ak.get("onties")(model.named_parameters(), base, reference, lr=1e-3)
model(torch.ones(1, 2)).sum().backward()
opt.step()
print(model.weight)
"""),
    "cao_gradient_balancing": Example("""import torch, alignkit as ak

grads = torch.tensor([[1.0, 0.0], [0.0, 1.0]])                  # one flattened gradient per objective
print(ak.get("cao_gradient_balancing")(grads))                  # min-norm weights: [0.5, 0.5]
"""),
    "compo": Example("""import torch, alignkit as ak

theta = torch.zeros(3)
pair_logps = lambda t: (t.sum().reshape(1), -t.sum().reshape(1))   # (log pi(y_w), log pi(y_l)) under theta
new_theta, info = ak.get("compo")(theta, pair_logps, num_perturbations=20, min_improve=1,
                                  generator=torch.Generator().manual_seed(0))
print(info)
"""),
    "bloop": Example("""import torch, alignkit as ak

model = torch.nn.Linear(2, 1)
opt = ak.get("bloop")(model.parameters(), lam=0.1, ema=0.1, lr=1e-2)   # base optimizer: AdamW
x = torch.randn(8, 2)
main_loss, aux_loss = model(x).pow(2).mean(), (model(x) - 1).abs().mean()
opt.backward(main_loss, aux_loss)                                 # both gradients; aux projected in step()
opt.step()
print(model.weight)
"""),
    "sam": Example("""import torch, alignkit as ak

model = torch.nn.Linear(2, 1)
x, y = torch.randn(8, 2), torch.randn(8, 1)
loss_fn = lambda: (model(x) - y).pow(2).mean()
opt = ak.get("sam")(model.parameters(), rho=0.05, lr=1e-2)       # base optimizer: AdamW
loss_fn().backward()                                              # pass 1: gradient at w


def closure():                                                    # pass 2: gradient at w + e(w)
    opt.zero_grad()
    loss = loss_fn()
    loss.backward()
    return loss


opt.step(closure)
print(model.weight)
"""),
    "collage_adamw": Example("""import torch, alignkit as ak

model = torch.nn.Linear(4, 1).to(torch.bfloat16)                  # Collage keeps bf16 weights
opt = ak.get("collage_adamw")(model.parameters(), lr=1e-3)
model(torch.randn(8, 4, dtype=torch.bfloat16)).float().pow(2).mean().backward()
opt.step()
print(model.weight)
"""),
    "frugal": Example("""import torch, alignkit as ak

model = torch.nn.Linear(8, 4)
opt = ak.get("frugal")(model.parameters(), lr=1e-3, density=0.25, update_gap=200)
model(torch.randn(16, 8)).pow(2).mean().backward()
opt.step()
print(model.weight.shape)
"""),
    "expected_calibration_error": Example("""import torch, alignkit as ak

probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.3, 0.7]])   # predicted class probabilities
targets = torch.tensor([0, 1, 1, 1])
print(ak.get("expected_calibration_error")(probs, targets, n_bins=5))
"""),
    "wsd_cooldown": Example("""import alignkit as ak

factor = ak.get("wsd_cooldown")
print([round(factor("1-sqrt", u), 3) for u in (0.0, 0.25, 0.5, 1.0)])  # learning-rate multiplier in the cooldown
"""),
    # training hooks -----------------------------------------------------------------------------------------------
    "booster": Example(
        """import alignkit as ak
from alignkit.train import train
"""
        + _TINY
        + """ids = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]
harmful = [(ids("How to do harm?"), ids(" Sure, here."))]        # (prompt ids, completion ids)
hook = ak.get("booster")(harmful, lam=5.0, alpha=0.1, batch_size=1)
"""
        + _HOOK_RUN
    ),
    "lisa": Example(
        """import alignkit as ak
from alignkit.train import train
"""
        + _TINY
        + """ids = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]
alignment = [(ids("How to do harm?"), ids(" I cannot help."))]   # (prompt ids, completion ids)
hook = ak.get("lisa")(alignment, alignment_steps=1, finetune_steps=1, batch_size=1)
"""
        + _HOOK_RUN
    ),
    "alps": Example(
        """import torch, alignkit as ak
from alignkit.train import train
"""
        + _TINY
        + """heads = torch.tensor([[True, False], [False, True]])           # [layers, heads] to train
hook = ak.get("alps")(heads)                                     # select_heads(head_scores(base, task)) picks them
"""
        + _HOOK_RUN
    ),
    "alignguard_lora": Example(
        """import torch, alignkit as ak
from alignkit.train import train
"""
        + _TINY
        + """fisher = {n: torch.rand_like(p) for n, p in model.named_parameters()}  # fisher_diagonal(...) on alignment data
hook = ak.get("alignguard_lora")(fisher, lam_a=1.0, lam_t=1.0, lam_c=1.0)
"""
        + _HOOK_RUN
    ),
    "gradient_collision": Example("""import torch, alignkit as ak

w = torch.nn.Parameter(torch.tensor([1.0, -1.0]))
loss_fn = lambda batch: (w * batch).sum() ** 2                  # the source-task loss
gc = ak.get("gradient_collision")([w], loss_fn, torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))
gc.backward()                                                    # add lam * gc to the target loss
print(gc, w.grad)
"""),
}


def example(c: Any) -> Example:
    """The runnable example of component ``c`` (a registry entry)."""
    from alignkit.registry import Objective

    if isinstance(c, Objective):
        return Example(
            objective_snippet(c),
            f"alignkit train --objective {c.name} --model MODEL --data DATA.jsonl --output runs/{c.name}",
        )
    if c.name in EXAMPLES:
        return EXAMPLES[c.name]
    if c.kind == "decoder":
        return _decoder(c)
    if c.name in _MERGE_CALLS:
        call, cli = _MERGE_CALLS[c.name]
        return Example(_TASK_VECTORS + call + '\nprint(merged["w"])\n', cli)
    raise KeyError(f"no example for {c.kind} {c.name!r}: add one to alignkit.cli._examples.EXAMPLES")


def objective_snippet(c: Any) -> str:
    """A runnable example for an objective, on random tensors of the right batch type."""
    custom = getattr(c.fn, "example", None)  # objectives on other batch types carry their own
    if custom:
        return textwrap.dedent(custom).strip() + "\n"
    bt = c.batch_type.__name__ if c.batch_type else "PreferenceBatch"
    hp = ", ".join(f"{k}={v!r}" for k, v in c.defaults.items() if k in ("beta", "gamma", "eta", "alpha"))
    call = f'ak.get("{c.name}")(batch{", " + hp if hp else ""})'
    lp = "-torch.rand(4, 8)"
    if bt == "PreferenceBatch":
        ref = f", ref_chosen_logps={lp}, ref_rejected_logps={lp}" if c.needs_reference else ""
        make = f"batch = ak.PreferenceBatch(chosen_logps={lp}.requires_grad_(), rejected_logps={lp}{ref})"
    elif bt == "UnpairedBatch":
        make = (
            f"batch = ak.UnpairedBatch(logps={lp}.requires_grad_(), labels=torch.tensor([1, 0, 1, 0]).bool(), "
            f"ref_logps={lp}, kl_logps=-torch.rand(4) * 8, ref_kl_logps=-torch.rand(4) * 8)"
        )
    elif bt == "RewardBatch":
        make = "batch = ak.RewardBatch(chosen_rewards=torch.randn(4, requires_grad=True), rejected_rewards=torch.randn(4))"
    else:
        make = f"batch = ak.SFTBatch(logps={lp}.requires_grad_())"
    return f"import torch, alignkit as ak\n\n{make}\nout = {call}\nout.loss.backward()\nprint(out.loss, out.metrics)\n"
