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

# ---------------------------------------------------------------------------------------------- distillation

#: a tiny BERT teacher, a 1-layer student copied from it and an in-memory word-piece tokenizer (no download)
_TINY_BERT = """from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast
from alignkit.objectives.distillation import student_from_teacher

texts = ["the cat sat on the mat", "a dog ran in the park", "the sun is hot today", "we read a good book"]
words = sorted({w for t in texts for w in t.split()})
vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
wordpiece = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
wordpiece.pre_tokenizer = pre_tokenizers.Whitespace()
tokenizer = PreTrainedTokenizerFast(tokenizer_object=wordpiece, pad_token="[PAD]", unk_token="[UNK]",
                                    cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")  # stand-in: your tokenizer
torch.manual_seed(0)
teacher = BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64), add_pooling_layer=False).eval()        # stand-in: your teacher
student = student_from_teacher(teacher, layers=(0,))            # DistilBERT init: every other teacher layer
"""

# ---------------------------------------------------------------------------------------------- recipes

#: the data each recipe's training stages read (``alignkit recipe run ... --data STAGE=FILE``) and extra flags
_RECIPE_RUN = {
    "lion": (
        "--data sft=sft.jsonl --data dpo=pairs.jsonl --data online_dpo=prompts.jsonl --reward-fn my_mod:judge"
    ),
    "baichuan": "--data sft=sft.jsonl --data dpo=pairs.jsonl",
    "guardrail_ipo": "--data sft=sft.jsonl --data ipo=pairs.jsonl",
    "guardrail_kto": "--data sft=sft.jsonl --data kto=unpaired.jsonl",
}


def _recipe(name: str) -> Example:
    first_train = {"lion": "dpo", "baichuan": "dpo", "guardrail_ipo": "ipo", "guardrail_kto": "kto"}[name]
    code = f"""import alignkit as ak
from alignkit import recipes

r = recipes.load("{name}")                                      # the stages ak.get("{name}")(...) runs in order
for s in r.stages:
    print(s.name, s.kind, s.config.get("objective") if s.config else s.merge)
print(r.stage_yaml("{first_train}"))                            # one stage as an `alignkit train --config` file
# train every stage: ak.get("{name}")(model="BASE", data={{STAGE: FILE, ...}}, output_dir="runs/{name}")
"""
    return Example(code, f"alignkit recipe run {name} --model BASE {_RECIPE_RUN[name]} --output runs/{name}")


# ---------------------------------------------------------------------------------------------- scaling laws

#: (inputs of the example call, `scaling predict --at` values, a comment)
_SCALING = {
    "chinchilla": ('{"params": np.array([1e9, 7e10]), "tokens": np.array([2e10, 1.4e12])}',
                   "params=7e10 tokens=1.4e12", "loss of a 1B and a 70B model (Chinchilla)"),
    "time_matters": ('{"params": np.array([1e8, 1e9]), "seconds": np.array([3600.0, 3600.0]),\n'
                     '     "tokens_per_second": np.array([2e5, 3e4])}',
                     "params=1e9 seconds=3600 tokens_per_second=3e4", "loss after one hour of training"),
    "cpt_law": ('{"s1": np.array([10.0, 20.0]), "s2": np.array([0.0, 2.0]), "s1_cpt": np.array([0.0, 5.0])}',
                "s1=20 s2=2 s1_cpt=5", "loss in continual pre-training (s1, s2: alignkit.scaling.lr_areas)"),
    "downstream_ce_law": ('{"pretrain_tokens": np.array([1e8, 1e9, 1e10])}', "pretrain_tokens=1e10",
                          "downstream cross-entropy after fine-tuning"),
    "downstream_log_law": ('{"pretrain_tokens": np.array([1e8, 1e9, 1e10])}', "pretrain_tokens=1e10",
                           "translation score (e.g. BLEU) after fine-tuning"),
    "llms_on_the_line": ('{"loss_x": np.array([2.5, 3.0, 3.5])}', "loss_x=3.0",
                         "one model family's loss on data y from its loss on data x"),
    "loss_to_loss": ('{"loss_x": np.array([2.5, 3.0, 3.5])}', "loss_x=3.0",
                     "loss on data y from the loss on data x"),
    "repeated_data": ('{"params": np.array([4e8, 8e8])}', "params=8e8",
                      "converged loss on unique data (effective_params maps a loss back to a size)"),
}  # fmt: skip
_SCALING_COEF = {
    "loss_to_loss": "K=1.2, kappa=0.9, E0=1.5, E1=1.8",
    "llms_on_the_line": "K=1.2, kappa=0.9, E0=1.5, E1=1.8",
}


def _scaling(name: str) -> Example:
    inputs, at, what = _SCALING[name]
    coef = _SCALING_COEF.get(name, "")
    code = f"""import numpy as np, alignkit as ak

x = {inputs}
print(ak.get("{name}")(x{", " + coef if coef else ""}))        # {what}
# fit it to your runs: from alignkit.scaling import fit, read_runs; fit("{name}", read_runs("runs.csv"))
"""
    cli_coef = " ".join(kv.strip() for kv in coef.split(","))
    return Example(
        code, f"alignkit scaling predict --law {name} --at {at}" + (f" --coef {cli_coef}" if coef else "")
    )


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
from alignkit.safety import SuffixArray, trace_shield, unigram_probs

docs = [[5, 6, 7, 8, 9, 1, 2], [1, 2, 1, 2, 1, 2]]             # training documents as token ids
p_train = unigram_probs(docs, vocab_size=10)                  # P_train(t); unseen ids get 1e-9
span = [5, 6, 7, 8]
print(ak.get("belief_conflict_index")(p_train[span]))         # -sum log P_train(t) over the span
print(trace_shield(SuffixArray(docs), [3, 5, 6, 7, 8, 4], p_train, tau=5.0, window=3))  # (start, BCI) > tau
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
    "neuron_alignment": Example("""import torch
import alignkit as ak

X = torch.tensor([[1.0, 0.1], [0.9, -0.1], [-1.0, 0.2], [-0.8, -0.1]])   # two separable classes
y = torch.tensor([1.0, 1.0, -1.0, -1.0])
W = torch.randn(6, 2) * 1e-3                                             # small first-layer init (6 neurons)
v = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0]) * 1e-3
out = ak.get("neuron_alignment")(W, v, X, y)
print({k: (v if not hasattr(v, "tolist") else [round(x, 3) for x in v.flatten().tolist()]) for k, v in out.items()})
"""),
    "z_loss": Example("""import torch
import alignkit as ak

logits = torch.randn(2, 5, 11) * 4                 # (batch, positions, vocabulary) of an LM head
print(float(ak.get("z_loss")(logits, coef=1e-4)))  # coef * mean (log sum exp logits)^2
"""),
    "lr_sensitivity": Example("""import alignkit as ak

final = {1e-4: 3.1, 1e-3: 2.6, 1e-2: 2.9, 1e-1: 7.0}   # final loss of a sweep over learning rates
print(ak.get("lr_sensitivity")(final, init_loss=4.0))  # mean excess over the best, capped at the initial loss
"""),
    "scaled_embed": Example("""from transformers import LlamaConfig, LlamaForCausalLM
import alignkit as ak

model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32))
ak.get("scaled_embed")(model)                      # embeddings multiplied by sqrt(d) in the forward
print(model.get_input_embeddings()(__import__("torch").tensor([[1, 2]])).std().item())
"""),
    "spike_no_more_init": Example("""from transformers import LlamaConfig, LlamaForCausalLM
import alignkit as ak

model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32))
ak.get("spike_no_more_init")(model, d_model=16, num_layers=2)   # small-std initialisation of the paper
print(model.model.layers[0].mlp.down_proj.weight.std().item())
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
    # data rules (adaptation, vision, data tools) -------------------------------------------------------------
    "cdul_pseudo_labels": Example("""import torch, alignkit as ak

global_sim = torch.tensor([[0.6, 0.3, 0.1]])                    # (B, C) CLIP class scores of the whole image
local_sims = torch.tensor([[[0.7, 0.2, 0.1], [0.2, 0.3, 0.5]]])   # (B, J, C) the same per crop
print(ak.get("cdul_pseudo_labels")(global_sim, local_sims, threshold=0.5))   # soft pseudo-labels (B, C)
"""),
    "daso_pseudo_labels": Example("""import torch, alignkit as ak

linear_probs = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.1, 0.7]])   # (B, C) linear-classifier probabilities
semantic = torch.tensor([[0.3, 0.6, 0.1], [0.1, 0.1, 0.8]])       # (B, C) similarity-based probabilities
pl_distribution = torch.tensor([100.0, 10.0, 1.0])              # recent pseudo-label counts per class
print(ak.get("daso_pseudo_labels")(linear_probs, semantic, pl_distribution))
"""),
    "speaker_group_targets": Example("""import alignkit as ak

segments = ["hello how are you", "fine thanks", "and you"]     # transcript segments in time order
groups = ["primary", "non-primary", "primary"]                  # who speaks each segment
print(ak.get("speaker_group_targets")(segments, groups))        # the training transcript with group tokens
"""),
    "trajectory_matching": Example("""import torch, alignkit as ak

expert_start, expert_target = torch.zeros(10), torch.ones(10)    # expert parameters at epoch t and t + M
student_end = torch.full((10,), 0.8, requires_grad=True)        # the student after N steps on the synthetic set
loss = ak.get("trajectory_matching")(student_end, expert_start, expert_target)
loss.backward()                                                 # flows back to the synthetic images in distill()
print(loss)
"""),
    "control_shift": Example("""import alignkit as ak

z_train, z_test = ak.get("control_shift")(200, 200, 2, intensity=0.5, seed=0)   # latents to decode with one G
print(z_train.shape, (z_train[:, 0] < 0).mean(), (z_test[:, 0] < 0).mean())     # train over-samples z_1 < 0
"""),
    # diagnostics (curvature, attribution, dynamics) ----------------------------------------------------------
    "hessian_top_eigenvalue": Example("""import torch, alignkit as ak

torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
x, y = torch.randn(16, 4), torch.randn(16, 1)
loss_fn = lambda: (model(x) - y).pow(2).mean()                  # the loss on a fixed batch
out = ak.get("hessian_top_eigenvalue")(loss_fn, list(model.parameters()), iters=5, learning_rate=0.1)
print(out)                                                      # lambda_max, eta * lambda_max, unstable, ...
"""),
    "hessian_trace": Example("""import torch, alignkit as ak

torch.manual_seed(0)
model = torch.nn.Linear(4, 1)
x, y = torch.randn(16, 4), torch.randn(16, 1)
loss_fn = lambda: (model(x) - y).pow(2).mean()                  # the pre-training loss on a fixed batch
print(ak.get("hessian_trace")(loss_fn, list(model.parameters()), n_samples=8))
"""),
    "shift_shapley": Example("""import numpy as np, alignkit as ak

rng = np.random.default_rng(0)
losses = rng.random(100)                                        # per-sample loss on source samples
weights = {"P(x)": rng.uniform(0.5, 1.5, 100), "P(y|x)": 0.5 + losses}   # P_tgt / P_src of each mechanism
out = ak.get("shift_shapley")(losses, weights)
print(out["attribution"], out["total"])                         # the attributions sum to the total change
"""),
    "vfa_frequency_profile": Example("""import torch, alignkit as ak

torch.manual_seed(0)
images, labels = torch.randn(8, 3, 16, 16), torch.randint(0, 2, (8,))
classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 2))   # your vision model
bands = [(0.0, 0.25), (0.25, 0.5), (0.5, 1.0)]                  # low / mid / high frequencies
human = torch.tensor([0.9, 0.6, 0.3])                           # human accuracy per band
print(ak.get("vfa_frequency_profile")(classifier, images, labels, bands, human_profile=human))
"""),
    "loss_by_frequency": Example("""import torch, alignkit as ak

torch.manual_seed(0)
counts = torch.tensor([500.0, 200.0, 100.0, 50.0, 20.0, 10.0])  # class frequencies in the training data
logits, targets = torch.randn(32, 6), torch.multinomial(counts, 32, replacement=True)
out = ak.get("loss_by_frequency")(logits, targets, counts, n_groups=2)
print(out["loss_per_group"], out["grad_share_per_group"])
"""),
    "layer_alignment": Example("""import torch, alignkit as ak

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
x, y = torch.randn(12, 3), torch.randint(0, 2, (12,))
onehot = torch.nn.functional.one_hot(y, 2).float()              # (n, k) label matrix
print(ak.get("layer_alignment")(model, x, onehot))              # {layer: kernel-label alignment}
"""),
    "zero_sum_learning": Example("""import torch, alignkit as ak

loss_before = torch.tensor([2.0, 1.5, 3.0, 2.5])                # per-example losses before a step (or window)
loss_after = torch.tensor([1.5, 2.0, 2.6, 2.8])                 # ... and after it
print(ak.get("zero_sum_learning")(loss_before, loss_after))
"""),
    # metrics (representations, vision, distillation, preferences) --------------------------------------------
    "task_covariance_similarity": Example("""import torch, alignkit as ak

torch.manual_seed(0)
x_i, x_j = torch.randn(20, 4), torch.randn(30, 4)               # two tasks' inputs (n, d)
x_k = torch.cat([torch.randn(30, 2), torch.zeros(30, 2)], 1)    # a task on half of the directions
print(ak.get("task_covariance_similarity")(x_i, x_j), ak.get("task_covariance_similarity")(x_i, x_k))
"""),
    "f_clipscore": Example("""import torch, alignkit as ak

clipscore = torch.tensor([0.30, 0.28])                          # (B,) global CLIPScore of each image-caption pair
attributions = torch.tensor([[0.02, -0.01, 0.03], [0.01, -0.05, 0.00]])   # (B, T) per-token attribution
token_mask = torch.tensor([[1, 1, 1], [1, 1, 0]])               # real tokens
print(ak.get("f_clipscore")(clipscore, attributions, token_mask))
"""),
    "idealized_ranking_accuracy": Example("""import alignkit as ak

ref_chosen, ref_rejected = [-12.0, -20.0, -15.0], [-10.0, -21.0, -15.0]   # log ref(y) of each completion
p_chosen = [0.6, 0.9, 0.5]                                      # true P(y_w > y_l)
acc = ak.get("idealized_ranking_accuracy")(ref_chosen, ref_rejected, p_chosen, beta=0.1)
print(acc, acc.mean())
"""),
    "alignment": Example("""import torch, alignkit as ak

torch.manual_seed(0)
x = torch.randn(8, 16)                                          # embeddings of the anchors
y = x + 0.1 * torch.randn(8, 16)                                # embeddings of their positives
print(ak.get("alignment")(x, y))                                # lower is better
"""),
    "uniformity": Example("""import torch, alignkit as ak

torch.manual_seed(0)
embeddings = torch.randn(32, 16)
print(ak.get("uniformity")(embeddings), ak.get("uniformity")(embeddings[:1].repeat(32, 1)))  # spread vs collapsed
"""),
    "contextual_word_retrieval": Example("""import torch, alignkit as ak

torch.manual_seed(0)
source = torch.randn(10, 16)                                    # contextual vectors of aligned words, language A
target = source + 0.3 * torch.randn(10, 16)                     # their aligned partners, language B
print(ak.get("contextual_word_retrieval")(source, target), ak.get("contextual_word_retrieval")(source, target, csls_k=3))
"""),
    # procedures ---------------------------------------------------------------------------------------------
    "cdul_label_update": Example("""import torch, alignkit as ak

labels = torch.tensor([[0.6, 0.4, 0.5]])                        # soft pseudo-labels (B, C)
logits = torch.tensor([[2.0, -1.0, 0.0]])                       # the network's logits after its step
print(ak.get("cdul_label_update")(labels, logits, label_lr=0.3))
"""),
    "class_gaussian_stats": Example("""import torch, alignkit as ak

torch.manual_seed(0)
features, labels = torch.randn(40, 4), torch.arange(40) % 2     # labelled source features
mu, precision = ak.get("class_gaussian_stats")(features, labels, num_classes=2)
print(mu.shape, precision.shape)                                # class means (C, D), shared Sigma^-1 (D, D)
"""),
    "dwgcs_weights": Example("""import torch, alignkit as ak

torch.manual_seed(0)
x_train = torch.randn(20, 2)
x_test = torch.randn(15, 2) + torch.tensor([1.0, 0.0])          # covariate shift
beta, alpha = ak.get("dwgcs_weights")(x_train, x_test, D=4.0, max_iter=100)
print(beta.round(decimals=2), alpha.round(decimals=2))          # training weights (n,), test weights (t,)
"""),
    "svd_task_weights": Example("""import torch, alignkit as ak

task_vectors = torch.tensor([[1.0, 1.0, 0.0], [1.1, 0.9, 0.1], [0.0, -0.2, 1.0]])   # one single-task solution per row
print(ak.get("svd_task_weights")(task_vectors, rank=1))         # the outlying third task gets less weight
"""),
    "grounding_aware_position_ids": Example("""import torch, alignkit as ak

keep_mask = torch.tensor([[1, 0, 1, 1, 0, 1], [1, 1, 0, 0, 0, 1]]).bool()   # visual tokens kept by the pruner
print(ak.get("grounding_aware_position_ids")(keep_mask))                    # original positions (GAP)
print(ak.get("grounding_aware_position_ids")(keep_mask, mode="contiguous"))  # the naive re-indexing
"""),
    "attention_refocusing": Example("""import torch, alignkit as ak

torch.manual_seed(0)
hw, k = 16, 2                                                   # a 4x4 latent, two grounded tokens
cross_attn = torch.rand(hw, k).softmax(0).requires_grad_()      # (HW, k) cross-attention of each grounded token
self_attn = torch.rand(hw, hw).softmax(-1)                      # (HW, HW) self-attention
box_masks = torch.zeros(k, hw)
box_masks[0, :8], box_masks[1, 8:] = 1, 1                       # each token's box (top / bottom half)
out = ak.get("attention_refocusing")(cross_attn, self_attn, box_masks)
out["loss"].backward()                                          # the latent takes a step on this gradient
print(out)
"""),
    "compositional_t2i_constraints": Example("""import torch, alignkit as ak

torch.manual_seed(0)
attn = torch.rand(3, 8, 8)                                      # cross-attention maps of tokens "red", "cat", "dog"
out = ak.get("compositional_t2i_constraints")(attn, entities=[1, 2], bindings=[(0, 1)],
                                               relations=[(1, "left", 2)])
print(out)                                                      # refine the noise on the unmet constraints
"""),
    # distillation ------------------------------------------------------------------------------------------
    "distillation_train_student": Example(
        """import torch, alignkit as ak
"""
        + _TINY_BERT
        + """student, log = ak.get("distillation_train_student")(teacher, student, tokenizer, texts, steps=2, batch_size=2)
print(log)                                                      # per-step loss terms (DistilBERT's triple loss)
"""
    ),
    "distillation_agreement": Example(
        """import torch, alignkit as ak
"""
        + _TINY_BERT
        + """print(ak.get("distillation_agreement")(teacher, student, tokenizer, texts, bootstrap=100))
"""
    ),
    "wid_squeeze": Example("""import torch, alignkit as ak
from alignkit.objectives.distillation import CompactedFFN

torch.manual_seed(0)
ffn = CompactedFFN(torch.nn.Linear(8, 32), torch.nn.GELU(), torch.nn.Linear(32, 8))   # a teacher FFN + compactor
opt = torch.optim.AdamW(ffn.parameters(), lr=1e-2)
for step in range(1, 4):
    opt.zero_grad()
    ffn(torch.randn(4, 8)).pow(2).mean().backward()               # your task (masked-LM) loss
    masked = ak.get("wid_squeeze")([ffn.compactor], step, w_step=1, target=16)   # after backward, before step
    opt.step()
print(masked, ffn.compactor.keep.sum())                         # masked units; units kept
"""),
    # recipes and scaling laws --------------------------------------------------------------------------------
    **{name: _recipe(name) for name in ("baichuan", "guardrail_ipo", "guardrail_kto", "lion")},
    **{name: _scaling(name) for name in _SCALING},
}


def example(c: Any) -> Example:
    """The runnable example of component ``c`` (a registry entry)."""
    from alignkit.registry import Objective

    if isinstance(c, Objective):
        from alignkit.train.teacher import reads_teacher

        teacher = " --teacher TEACHER" if reads_teacher(c) else ""  # distillation: the teacher's outputs
        return Example(
            objective_snippet(c),
            f"alignkit train --objective {c.name} --model MODEL{teacher} --data DATA.jsonl --output runs/{c.name}",
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
