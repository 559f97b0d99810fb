"""``ak.train(...)`` trains even after ``alignkit.train`` (the package) was imported, which replaces the lazily
resolved function attribute by the package (the CLI imports ``alignkit.train.config``; ``alignkit
safety-bench`` then failed with "'module' object is not callable")."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import alignkit as ak
import alignkit.train.config  # what the CLI does: alignkit.train is now the package
from alignkit.engine.tiny import char_tokenizer, tiny_llama
tok = char_tokenizer()
rows = [{"prompt": "Q?", "completion": " yes."}] * 2
for _ in range(2):  # the second access finds the package attribute
    res = ak.train(objective="sft", model=tiny_llama(vocab_size=len(tok), hidden_size=16, num_layers=1),
                   tokenizer=tok, data=rows, batch_size=2, max_steps=1, progress=False, tensorboard=False)
    assert len(res.history) == 1, res.history
print("trained")
"""


def test_ak_train_is_callable_after_the_package_is_imported():
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=None)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("trained")
