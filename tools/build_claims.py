"""Render docs/claims.md from docs/claims/rows.yaml and the recorded figures in docs/claims/results/*.json.

``python tools/build_claims.py`` rewrites docs/claims.md; ``python tools/build_claims.py --check`` exits 1 when the
committed board differs from the rendering (``tests/test_claims_board.py`` asserts the same).

rows.yaml: ``title``, ``intro`` (free text), then ``sections``, each with ``title``, optional ``intro`` / ``outro``
(free paragraphs: the run descriptions) and ``rows``. A row has: ``paper`` (short name), ``title`` (the paper's
title), ``arxiv``, ``seed`` (its number in the seed-paper catalogue, or null for a paper outside it), ``claim``,
``results`` (the id of docs/claims/results/<id>.json, or null for a row with no figure), ``measurement`` (a
``str.format`` template over that file's figures, e.g. ``{dpo_gold:.3f} {dpo_ci:ci.3f}``), ``held`` (one of
:data:`HELD_LABELS`), ``verdict`` (why, optional), ``test`` (the node id of the test that measures it), ``notes``
(settings chosen after failures, training seeds, multiple-comparison correction; optional), ``comparisons``
(how many interval comparisons the verdict rests on; 0 when none) and ``p_value`` (optional: the name of the
figure holding the p-value of the comparison the verdict rests on; the builder applies Holm's correction over the
p-values of each section's rows, :func:`alignkit.eval.metrics.holm`, and prints both in the notes).

List figures format element by element: spec ``ci.3f`` gives ``[lo, hi]``, ``/.3f`` gives ``a / b / c``, a plain
spec such as ``.3f`` gives ``a, b, c``."""

from __future__ import annotations

import argparse
import json
import pathlib
import string
import sys
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
ROWS = ROOT / "docs" / "claims" / "rows.yaml"
RESULTS = ROOT / "docs" / "claims" / "results"
BOARD = ROOT / "docs" / "claims.md"
HELD_LABELS = ("yes", "no", "partial", "inconclusive", "not testable")
REQUIRED = (
    "paper",
    "title",
    "arxiv",
    "seed",
    "claim",
    "results",
    "measurement",
    "held",
    "test",
    "comparisons",
)
ROW_KEYS = {*REQUIRED, "verdict", "notes", "p_value"}
TRANSCRIBED_MARK = "†"


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads bare yes/no/on/off as booleans; here only true/false are booleans, so ``held: no`` is the
    label "no"."""


_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:bool"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}


class _Seq(list):
    def __format__(self, spec: str) -> str:
        if spec.startswith("ci"):
            return "[" + ", ".join(format(v, spec[2:]) for v in self) + "]"
        if spec.startswith("/"):
            return " / ".join(format(v, spec[1:]) for v in self)
        return ", ".join(format(v, spec) for v in self)


def _wrap(value: Any) -> Any:
    return _Seq(_wrap(v) for v in value) if isinstance(value, list) else value


def load_rows(path: pathlib.Path = ROWS) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)
    except yaml.YAMLError as e:  # name the file: the parser's message gives only the line and column
        raise ValueError(f"{path}: not valid YAML: {e}") from None
    for s, section in enumerate(data["sections"]):
        for r, row in enumerate(section["rows"]):
            where = f"{path.name}: section {s + 1} ({section.get('title')!r}), row {r + 1}"
            missing = [k for k in REQUIRED if k not in row]
            unknown = sorted(set(row) - ROW_KEYS)
            if missing or unknown:
                raise ValueError(f"{where}: missing fields {missing}, unknown fields {unknown}")
            if row["held"] not in HELD_LABELS:
                raise ValueError(f"{where}: held {row['held']!r} is not one of {HELD_LABELS}")
            row["_where"] = where
    return data


def load_results(results_id: str) -> dict[str, Any]:
    path = RESULTS / f"{results_id}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path.relative_to(ROOT)} (cited by a row of docs/claims/rows.yaml) is missing"
        )
    return json.loads(path.read_text())


def placeholders(template: str) -> set[str]:
    """The figure names a measurement template uses (``{a[0]:.2f}`` uses ``a``)."""
    names = set()
    for _, field, _, _ in string.Formatter().parse(template):
        if field is not None:
            names.add(field.split("[", 1)[0].split(".", 1)[0])
    return names


def all_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for section in data["sections"] for row in section["rows"]]


def _cell(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _transcribed(record: dict[str, Any]) -> bool:
    return str(record.get("recorded_by", "")).startswith("transcribed")


def _p_value(row: dict[str, Any]) -> float | None:
    """The row's p-value; None when its figures are transcribed and the p-value was never recorded."""
    record = load_results(row["results"])
    if row["p_value"] in record["figures"]:
        return float(record["figures"][row["p_value"]])
    if _transcribed(record):
        return None
    raise KeyError(
        f"{row['_where']}: p_value {row['p_value']!r} not in docs/claims/results/{row['results']}.json"
    )


def holm_notes(rows: list[dict[str, Any]]) -> dict[int, str]:
    """Holm's correction over the recorded p-values of ``rows`` (one section): a note per row that names one."""
    from alignkit.eval.metrics import holm

    wanted = [r for r in rows if r.get("p_value")]
    notes = {id(r): "p-value not recorded yet (transcribed figures), so no Holm correction" for r in wanted}
    with_p = [(r, p) for r in wanted if (p := _p_value(r)) is not None]
    if not with_p:
        return notes
    out = holm([p for _, p in with_p])
    for (r, p), adj, rej in zip(with_p, out["adjusted"], out["reject"], strict=True):
        notes[id(r)] = (
            f"p = {p:.3g}; Holm-adjusted over the {len(with_p)} recorded p-values of this section: {adj:.3g} "
            f"({'significant' if rej else 'not significant'} at 0.05)"
        )
    return notes


def render_row(row: dict[str, Any], holm_note: str = "") -> str:
    template = " ".join(str(row["measurement"]).split())
    if row["results"] is None:
        if placeholders(template):
            raise ValueError(
                f"{row['_where']}: placeholders {sorted(placeholders(template))} but no results file"
            )
        measurement, mark = template, ""
    else:
        record = load_results(row["results"])
        figures = {k: _wrap(v) for k, v in record["figures"].items()}
        missing = placeholders(template) - figures.keys()
        if missing:
            raise KeyError(
                f"{row['_where']}: {sorted(missing)} not in docs/claims/results/{row['results']}.json"
            )
        measurement = template.format(**figures)
        mark = f" {TRANSCRIBED_MARK}" if _transcribed(record) else ""
    seed = f", seed paper {row['seed']}" if row["seed"] is not None else ""
    name = "" if str(row["title"]).lower().startswith(str(row["paper"]).lower()) else f"{row['paper']}: "
    paper = f"{name}{row['title']} (arXiv:{row['arxiv']}{seed})"
    held = f"**{row['held']}**" if row["held"] in ("no", "not testable") else row["held"]
    if row.get("verdict"):
        held += f": {row['verdict']}"
    notes = "; ".join(n for n in (str(row.get("notes") or "").strip(), holm_note) if n)
    cells = [paper, row["claim"], measurement + mark, held, f"`{row['test']}`", notes]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def render(data: dict[str, Any] | None = None) -> str:
    data = load_rows() if data is None else data
    rows = all_rows(data)
    comparisons = sum(int(r["comparisons"]) for r in rows)
    seeds = {r["seed"] for r in rows if r["seed"] is not None}
    transcribed = sum(
        1
        for r in rows
        if r["results"] and str(load_results(r["results"]).get("recorded_by", "")).startswith("transc")
    )
    out = [
        f"# {data['title']}",
        "",
        "<!-- Generated by `python tools/build_claims.py` from docs/claims/rows.yaml and docs/claims/results/*.json;"
        " do not edit by hand. -->",
        "",
        "This file is generated: each row's figures come from the results file its effect test writes "
        "(`ALIGNKIT_UPDATE_CLAIMS=1 pytest <test>`), and the test fails when a later run disagrees with the "
        "recorded figures (by more than 0.01 + 1%, or the test's own looser tolerance: a run on another machine "
        "sums in another order). To change a row, edit `docs/claims/rows.yaml` (or re-record its test) and run "
        "`python tools/build_claims.py`; `tests/test_claims_board.py` fails when this file is stale.",
        "",
        f"{len(rows)} rows over {len(seeds)} seed papers (plus papers outside the seed catalogue). "
        f"Multiple comparisons: the verdicts rest on {comparisons} interval comparisons in all (the family size; "
        "each row's count is in rows.yaml), each read at 95% without a correction. The "
        f"{sum(1 for r in rows if r.get('p_value'))} rows whose verdict rests on a marginal paired comparison carry "
        "its p-value and Holm's step-down correction over the recorded p-values of their section "
        "(`alignkit.eval.metrics.holm`), in the notes column. "
        f"{TRANSCRIBED_MARK}: figure transcribed from the earlier hand-written board, not yet re-measured by its "
        f"test ({transcribed} rows); the test checks it against its next run and fails until it is re-recorded.",
        "",
        " ".join(str(data.get("intro", "")).split()),
    ]
    for section in data["sections"]:
        out += ["", f"## {section['title']}", ""]
        if section.get("intro"):
            out += [x for p in str(section["intro"]).strip().split("\n\n") for x in (" ".join(p.split()), "")]
        out += [
            "| paper | claim | our measurement | held? | test | notes |",
            "|---|---|---|---|---|---|",
        ]
        notes = holm_notes(section["rows"])
        out += [render_row(r, notes.get(id(r), "")) for r in section["rows"]]
        if section.get("outro"):
            out += [x for p in str(section["outro"]).strip().split("\n\n") for x in ("", " ".join(p.split()))]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if docs/claims.md differs from the rendering"
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not BOARD.exists() or BOARD.read_text() != text:
            print("docs/claims.md is stale: run `python tools/build_claims.py`", file=sys.stderr)
            return 1
        print("docs/claims.md is up to date")
        return 0
    BOARD.write_text(text)
    print(f"wrote {BOARD.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
