"""`alignkit scaling fit` on a paper's own data reproduces the paper's own coefficients.

Loss-to-Loss Prediction (Brandfonbrener et al., arXiv:2411.12925): the authors' runs
(shared/scaling/loss_to_loss.csv, from their repository KempnerInstitute/loss-to-loss-notebooks at 457ce81)
and the coefficients they print for the paper (shared/scaling/loss_to_loss_published.csv, two decimals).
Procedure as in the paper: E0, E1 are held at the irreducible losses of the per-dataset compute laws, K and
kappa are fitted on the sweep (models up to 4.84e19 FLOPs), and the 3.3B models at 1e21 FLOPs
(split=extrapolation) are held out.

Tolerance: |ours - published| <= 0.02 for K and kappa. The published values are rounded to 0.005, and the
authors' solver is a least-squares line through (log(loss_x - E0), log(loss_y - E1)) while ours minimises the
error of log(loss_y) itself; on the noisiest pair (MMLU-Humanities, R^2 0.98) that moves kappa by 0.013, on
the others by less than 0.007. The published value must also lie within 0.01 of our 95% bootstrap interval
(twice its rounding).

The other seed papers with laws here (arXiv 2402.04177, 2406.18922, 2205.10487, 2505.07796) have no data we could
read (see docs/scaling.md); their tests in test_scaling.py recover coefficients from data drawn from the law.
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from alignkit.cli.main import main
from alignkit.scaling import fit, predict, read_runs, select
from tests.claims_io import record_claims

# Data taken from authors' repositories are not redistributed with alignkit: they live, uncommitted, under the
# checkout's shared/scaling/ (or $ALIGNKIT_SCALING_DATA); docs/scaling.md says where each file comes from. Without
# them these tests are skipped, saying so.
DATA = Path(
    os.environ.get("ALIGNKIT_SCALING_DATA") or Path(__file__).resolve().parents[2] / "shared" / "scaling"
)
RUNS = DATA / "loss_to_loss.csv"
_HAVE = RUNS.is_file() and (DATA / "loss_to_loss_published.csv").is_file()
_WHY = "the authors' run data are not redistributed with alignkit; put them under {} (docs/scaling.md)"
needs_loss_to_loss = pytest.mark.skipif(not _HAVE, reason=_WHY.format(DATA))
needs_chinchilla = pytest.mark.skipif(not (DATA / "chinchilla_fig4.csv").is_file(), reason=_WHY.format(DATA))
PUBLISHED = read_runs(DATA / "loss_to_loss_published.csv") if _HAVE else {"pair": []}
PAIRS = list(PUBLISHED["pair"])


def _published(pair: str) -> dict[str, float]:
    i = PAIRS.index(pair)
    return {k: float(PUBLISHED[k][i]) for k in ("K", "kappa", "E0", "E1")}


@needs_loss_to_loss
@pytest.mark.parametrize("pair", PAIRS)
def test_loss_to_loss_reproduces_the_papers_coefficients(pair):
    pub = _published(pair)
    runs = select(read_runs(RUNS), {"pair": pair, "split": "sweep"})
    assert runs["loss_x"].size >= 80  # the paper's grid of about 88 models per dataset, paired
    r = fit("loss_to_loss", runs, fix={"E0": pub["E0"], "E1": pub["E1"]}, n_boot=60)
    for k in ("K", "kappa"):
        assert abs(r.params[k] - pub[k]) <= 0.02, (pair, k, r.params[k], pub[k])
        lo, hi = r.ci[k]
        assert lo - 0.01 <= pub[k] <= hi + 0.01, (pair, k, r.ci[k], pub[k])
    assert r.r2 > 0.95, r.r2


@needs_loss_to_loss
def test_loss_to_loss_extrapolates_20x_in_compute():
    """The abstract: the fitted curves extrapolate to 20x the largest FLOP budget of the fit. Train-to-train, the
    3.3B model's loss is predicted within 0.03 nats (the sweep spans about 1.3 nats); train-to-test, within 0.1."""
    d = read_runs(RUNS)
    errors, coef_err = {}, []
    for pair in PAIRS:
        pub = _published(pair)
        fix = {"E0": pub["E0"], "E1": pub["E1"]}
        r = fit("loss_to_loss", select(d, {"pair": pair, "split": "sweep"}), fix=fix, n_boot=0)
        coef_err += [abs(r.params[k] - pub[k]) for k in ("K", "kappa")]
        if pair == "FineWeb-Edu->StarCoder":
            starcoder = (r.params["K"], r.params["kappa"], pub["K"], pub["kappa"])
        held = select(d, {"pair": pair, "split": "extrapolation"})
        assert held["flops_budget"][0] == 1e21 and held["params"][0] > 3e9
        errors[pair] = float(r.predict({"loss_x": held["loss_x"]})[0] - held["loss_y"][0])
    kinds = dict(zip(PAIRS, PUBLISHED["kind"], strict=True))
    t2t = [abs(e) for p, e in errors.items() if kinds[p] == "train-to-train"]
    t2x = [abs(e) for p, e in errors.items() if kinds[p] == "train-to-test"]
    assert len(t2t) == 5 and max(t2t) < 0.03, errors
    assert len(t2x) == 4 and max(t2x) < 0.1, errors
    record_claims(
        "scaling_loss_to_loss_published",
        {
            "pairs": len(PAIRS),
            "max_coef_err": max(coef_err),
            "starcoder": [round(v, 4) for v in starcoder],
            "max_t2t_err": max(t2t),
            "max_t2x_err": max(t2x),
        },
        tolerance=1e-4,
    )


@needs_loss_to_loss
def test_cli_fit_with_where_reproduces_a_published_pair(tmp_path):
    pub = _published("FineWeb-Edu->StarCoder")
    out = tmp_path / "fit.json"
    argv = ["scaling", "fit", "--law", "loss_to_loss", "--csv", str(RUNS)]
    argv += ["--where", "pair=FineWeb-Edu->StarCoder", "split=sweep"]
    argv += ["--fix", f"E0={pub['E0']}", f"E1={pub['E1']}", "--bootstrap", "0", "--json", str(out)]
    assert main(argv) == 0
    saved = json.loads(out.read_text())
    assert saved["n"] == 80 and saved["fixed"] == {"E0": pub["E0"], "E1": pub["E1"]}
    assert abs(saved["params"]["kappa"] - pub["kappa"]) <= 0.02
    assert abs(saved["params"]["K"] - pub["K"]) <= 0.02


def test_select_errors_name_the_problem():
    d = {"pair": np.array(["a", "b"]), "x": np.array([1.0, 2.0])}
    assert select(d, {"x": "2"})["pair"].tolist() == ["b"]
    with pytest.raises(ValueError, match="no column 'q'"):
        select(d, {"q": "a"})
    with pytest.raises(ValueError, match="no rows"):
        select(d, {"pair": "c"})
    with pytest.raises(ValueError, match="numeric"):
        select(d, {"x": "abc"})


# Chinchilla (Hoffmann et al., arXiv:2203.15556), the law Time Matters (arXiv:2406.18922) builds on and whose
# eq. 10 coefficients are our defaults. Its runs are not public; Besiroglu et al. (arXiv:2404.10102) transcribed 245
# of them from the paper's Figure 4 (shared/scaling/chinchilla_fig4.csv) and refitted with Hoffmann's procedure
# (Huber loss, delta 1e-3, on log residuals; the 5 highest-loss runs dropped). Their notebook's grid L-BFGS fit
# prints the first row below, their paper's final estimates (a Huber likelihood with a fitted scale) the second.
EPOCH_GRID = {"E": 1.8172, "A": 477.84, "B": 2143.86, "alpha": 0.34731, "beta": 0.36718}
EPOCH_PAPER = {"E": 1.82, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
HOFFMANN_EQ10 = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def _chinchilla_runs() -> dict[str, np.ndarray]:
    d = read_runs(DATA / "chinchilla_fig4.csv")
    kept = select(d, {"excluded": 0})  # the replication's outlier rule: drop the 5 highest losses
    assert kept["loss"].max() < np.sort(d["loss"])[-5]
    return kept


@needs_chinchilla
@pytest.mark.slow
def test_chinchilla_refit_matches_the_replication_not_eq10():
    """With Hoffmann's procedure our fit lands on the replication's coefficients (grid fit to 0.5%; the paper's
    final estimates, from a slightly different objective, within 0.01 in E, 0.005 in the exponents and 5% in A, B)
    — and Hoffmann's printed E = 1.69 and beta = 0.28 lie outside our 95% bootstrap interval: the published
    coefficients are not reproduced from their own (transcribed) data. alpha = 0.34 is."""
    d = _chinchilla_runs()
    assert d["loss"].size == 240
    r = fit("chinchilla", d, huber=1e-3, n_boot=40, starts=8, seed=0)
    for k, v in EPOCH_GRID.items():
        assert abs(r.params[k] - v) <= 0.005 * v, (k, r.params[k], v)
    tol = {
        "E": 0.01,
        "alpha": 0.005,
        "beta": 0.005,
        "A": 0.05 * EPOCH_PAPER["A"],
        "B": 0.05 * EPOCH_PAPER["B"],
    }
    for k, v in EPOCH_PAPER.items():
        assert abs(r.params[k] - v) <= tol[k], (k, r.params[k], v)
    for k in ("E", "beta"):
        lo, hi = r.ci[k]
        assert not lo <= HOFFMANN_EQ10[k] <= hi, (k, r.ci[k])
    assert r.ci["alpha"][0] <= HOFFMANN_EQ10["alpha"] <= r.ci["alpha"][1], r.ci["alpha"]
    # and the printed coefficients fit the data worse: mean absolute log error
    y = d["loss"]
    err = {n: np.abs(np.log(r.predict(d) if n == "ours" else predict("chinchilla", d)) - np.log(y)).mean()
           for n in ("ours", "eq10")}  # fmt: skip
    assert err["ours"] < err["eq10"] / 2, err
    record_claims(
        "scaling_chinchilla_refit",
        {
            "runs": int(d["loss"].size),
            "E": r.params["E"],
            "E_ci": list(r.ci["E"]),
            "beta": r.params["beta"],
            "beta_ci": list(r.ci["beta"]),
            "alpha": r.params["alpha"],
            "err_ours": float(err["ours"]),
            "err_eq10": float(err["eq10"]),
        },
        tolerance=1e-3,
    )


@needs_chinchilla
@pytest.mark.slow
def test_cli_huber_fit_on_chinchilla_runs(tmp_path):
    out = tmp_path / "fit.json"
    argv = ["scaling", "fit", "--law", "chinchilla", "--csv", str(DATA / "chinchilla_fig4.csv")]
    argv += ["--where", "excluded=0", "--huber", "1e-3"]
    argv += ["--bootstrap", "0", "--json", str(out)]
    assert main(argv) == 0
    saved = json.loads(out.read_text())
    assert saved["n"] == 240
    for k, v in EPOCH_GRID.items():
        assert abs(saved["params"][k] - v) <= 0.005 * v, (k, saved["params"][k], v)
    with pytest.raises(ValueError, match="positive delta"):
        fit("chinchilla", _chinchilla_runs(), huber=0.0, n_boot=0)
