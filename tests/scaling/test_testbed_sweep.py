"""The scaling tool on runs produced here: a tiny sweep of the testbed's base model, and the shipped sweep."""

from pathlib import Path

import numpy as np
import pytest

import alignkit as ak
from alignkit.scaling import fit, read_runs
from tests.claims_io import record_claims

SHIPPED = Path(ak.__file__).parent / "scaling" / "data" / "testbed_sweep.csv"


@pytest.mark.slow
def test_tiny_sweep_runs_and_loss_falls_with_steps(tmp_path):
    from alignkit.scaling.testbed_sweep import run_sweep

    out = tmp_path / "sweep.csv"
    rows = run_sweep(
        sizes=((32, 1, 2, 88), (64, 1, 2, 176)), steps=(10, 40), batch_size=8, context=32, out=out
    )
    assert len(rows) == 4
    d = read_runs(out)
    assert set(d) >= {"params", "tokens", "loss", "steps"}
    for p in np.unique(d["params"]):
        m = d["params"] == p
        assert d["loss"][m][np.argmax(d["steps"][m])] < d["loss"][m][np.argmin(d["steps"][m])]


def test_chinchilla_fits_the_shipped_testbed_sweep():
    d = read_runs(SHIPPED)
    r = fit("chinchilla", d, n_boot=0, starts=3, seed=0)
    record_claims(
        "scaling_testbed_chinchilla",
        {"runs": r.n, "r2": r.r2, "E": r.params["E"], "alpha": r.params["alpha"], "beta": r.params["beta"]},
        tolerance=1e-3,
    )
    assert r.n == 9 and r.r2 > 0.9, r
    # more tokens and more parameters both lower the predicted loss
    big = r.predict({"params": np.array([d["params"].max()]), "tokens": np.array([d["tokens"].max()])})[0]
    small = r.predict({"params": np.array([d["params"].min()]), "tokens": np.array([d["tokens"].min()])})[0]
    assert big < small
