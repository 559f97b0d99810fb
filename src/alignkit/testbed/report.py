"""The arena's report: the rich results table, ``results.json``, ``report.md`` and the PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alignkit.testbed.arena import ArenaConfig, ArenaData, ArenaResult, _results_json, overlap
from alignkit.testbed.model import BaseModel


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _name(r: dict[str, Any]) -> str:
    return r["objective"] if r["beta"] is None else f"{r['objective']} (β={r['beta']:g})"


def _headline(result: ArenaResult) -> list[str]:
    from alignkit.testbed.tasks import get_task

    return [m for m, _ in get_task(result.task).headline]


def _headers(result: ArenaResult) -> list[str]:
    """The table's columns: the task's headline metrics (if any) first, then :data:`HEADERS`."""
    from alignkit.testbed.tasks import get_task

    lead = [f"{m.replace('_', ' ')} ({b} better)" for m, b in get_task(result.task).headline]
    return [*HEADERS[:2], *lead, *HEADERS[2:]]


def _table_rows(result: ArenaResult) -> list[list[str]]:
    rows = []
    lead = _headline(result)
    for r, d in zip(result.results, result.details, strict=True):
        tm = d.get("task_metrics") or {}
        lead_cells = [
            f"{tm[m]['mean']:.3f} [{tm[m]['ci95'][0]:.3f}, {tm[m]['ci95'][1]:.3f}]" if m in tm else "-"
            for m in lead
        ]
        disp = d.get("displacement")
        disp_s = "-" if not disp else f"{disp['chosen']['mean']:+.1f} / {disp['rejected']['mean']:+.1f}"
        kl = "-" if r["kl_mean"] is None else f"{r['kl_mean']:.2f}"
        rows.append(
            [
                _name(r),
                str(r["seed"]),
                *lead_cells,
                f"{r['gold_reward_mean']:.3f} [{r['gold_reward_ci95'][0]:.3f}, {r['gold_reward_ci95'][1]:.3f}]",
                kl,
                _fmt(r["win_rate"]),
                _fmt(r["ranking_accuracy"]),
                _fmt((d.get("idealized_ranking_accuracy") or {}).get("mean")),
                disp_s,
                f"{r['seconds']:.1f}",
            ]
        )
    return rows


HEADERS = [
    "objective",
    "seed",
    "gold reward [95% CI]",
    "KL(π‖ref)",
    "win rate vs SFT",
    "rank acc",
    "ideal rank acc",
    "Δlogp chosen / rejected",
    "wall s",
]


def _main_runs(result: ArenaResult, objective: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(row, detail) of ``objective``'s main (non-sweep) runs at its first beta, one per training seed."""
    runs = [
        (r, d)
        for r, d in zip(result.results, result.details, strict=True)
        if r["objective"] == objective and not d.get("sweep")
    ]
    return [(r, d) for r, d in runs if r["beta"] == runs[0][0]["beta"]] if runs else []


def _seeds_text(values: list[float]) -> str:
    from alignkit.eval.metrics import seed_interval

    si = seed_interval(values)
    return f"{si['mean']:.3f} [{si['ci95'][0]:.3f}, {si['ci95'][1]:.3f}] over {len(values)} seeds"


def headline_verdicts(result: ArenaResult, objective: str = "dpo") -> list[str]:
    """For a task with headline metrics (``Task.headline``, e.g. ``safety``'s harmful score, helpfulness and
    over-refusal), one sentence per metric comparing ``objective`` to SFT: with one seed by the 95% CIs over prompts,
    with several by the across-seed 95% t-interval against SFT's CI (SFT is not trained, so has no seed spread)."""
    from alignkit.eval.metrics import seed_interval
    from alignkit.testbed.tasks import get_task

    headline = get_task(result.task).headline
    sft = next(
        (d for r, d in zip(result.results, result.details, strict=True) if r["objective"] == "sft"), None
    )
    main = _main_runs(result, objective)
    if not headline or sft is None or not main:
        return []
    out = []
    for metric, better in headline:
        if metric not in (sft.get("task_metrics") or {}) or any(
            metric not in d["task_metrics"] for _, d in main
        ):
            continue
        s = sft["task_metrics"][metric]
        vals = [d["task_metrics"][metric]["mean"] for _, d in main]
        if len(vals) > 1:
            iv = seed_interval(vals)
            what = f"across-seed interval ({len(vals)} seeds)"
        else:
            iv = main[0][1]["task_metrics"][metric]
            what = "95% CI over prompts"
        sep = not overlap(iv["ci95"], s["ci95"])
        lower = iv["mean"] < s["mean"]
        good = lower if better == "lower" else not lower
        name = metric.replace("_", " ")
        out.append(
            f"{objective} (β={main[0][0]['beta']:g}) {name} {iv['mean']:.3f} [{iv['ci95'][0]:.3f}, "
            f"{iv['ci95'][1]:.3f}] ({what}) vs SFT {s['mean']:.3f} [{s['ci95'][0]:.3f}, {s['ci95'][1]:.3f}]: "
            f"{'lower' if lower else 'higher'} ({better} is better: {'better' if good else 'worse'}), "
            f"{'separated' if sep else 'overlapping'} intervals."
        )
    return out


def verdict(result: ArenaResult, objective: str = "dpo") -> str | None:
    """A sentence comparing ``objective`` (its main run; with several seeds, its across-seed 95% t-interval) to the
    SFT baseline by gold reward; prefixed with a warning when the arena is degenerate."""
    sft = next((r for r in result.results if r["objective"] == "sft"), None)
    main = _main_runs(result, objective)
    if sft is None or not main:
        return None
    warn = "DEGENERATE ARENA (see the warnings): " if getattr(result, "warnings", None) else ""
    r = main[0][0]
    if len(main) > 1:
        from alignkit.eval.metrics import seed_interval

        iv = seed_interval([m["gold_reward_mean"] for m, _ in main])
        mean, ci, what = iv["mean"], iv["ci95"], f"across-seed interval over {len(main)} seeds"
    else:
        mean, ci, what = r["gold_reward_mean"], r["gold_reward_ci95"], "95% CI"
    sep = not overlap(ci, sft["gold_reward_ci95"])
    rel = "above" if mean > sft["gold_reward_mean"] else "below"
    kl = [m["kl_mean"] for m, _ in main if m["kl_mean"] is not None]
    kl_s = f" at KL {sum(kl) / len(kl):.2f} nats" if kl else ""
    return (
        f"{warn}{objective} (β={r['beta']:g}) gold reward {mean:.3f} is {rel} SFT's "
        f"{sft['gold_reward_mean']:.3f} with {'non-overlapping' if sep else 'overlapping'} intervals "
        f"([{ci[0]:.3f}, {ci[1]:.3f}] {what} vs [{sft['gold_reward_ci95'][0]:.3f}, "
        f"{sft['gold_reward_ci95'][1]:.3f}]){kl_s}."
    )


def print_summary(result: ArenaResult, console: Any) -> None:
    from rich.table import Table

    phases = Table(title="seconds per phase")
    phases.add_column("phase")
    phases.add_column("s", justify="right")
    for p in result.phases:
        phases.add_row(p["phase"], f"{p['seconds']:.1f}")
    phases.add_row("[bold]total", f"[bold]{sum(p['seconds'] for p in result.phases):.1f}")
    console.print(phases)
    table = Table(title=f"arena: task {result.task} (mean over prompts, 95% bootstrap CI)")
    for h in _headers(result):
        table.add_column(h, justify="left" if h == "objective" else "right")
    for row in _table_rows(result):
        table.add_row(*row)
    console.print(table)
    for w in getattr(result, "warnings", []):
        console.print(f"[bold red]WARNING (degenerate arena): {w}[/bold red]")
    heads = headline_verdicts(result)
    for h in heads:
        console.print(f"[bold]{h}[/bold]")
    v = verdict(result)
    if v:
        console.print(("gold reward (mixes the figures above): " if heads else "") + v)
    if result.output is not None:
        console.print(f"report: {result.output / 'report.md'}")


def plot_frontier(result: ArenaResult, path: Path) -> Path:
    """Gold reward vs KL(π‖ref), one point per run with 95% CI bars; runs of one objective joined in β order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    by_obj: dict[str, list[dict[str, Any]]] = {}
    for r in result.results:
        by_obj.setdefault(r["objective"], []).append(r)
    for name, rs in by_obj.items():
        rs = sorted(rs, key=lambda r: r["kl_mean"] or 0.0)
        xs = [r["kl_mean"] or 0.0 for r in rs]
        ys = [r["gold_reward_mean"] for r in rs]
        err = [
            [y - r["gold_reward_ci95"][0] for y, r in zip(ys, rs, strict=True)],
            [r["gold_reward_ci95"][1] - y for y, r in zip(ys, rs, strict=True)],
        ]
        style = "-o" if len(rs) > 1 else "o"
        line = ax.errorbar(xs, ys, yerr=err, fmt=style, capsize=3, label=name)
        for x, y, r in zip(xs, ys, rs, strict=True):
            if r["beta"] is not None and len(rs) > 1:
                ax.annotate(
                    f"β={r['beta']:g}",
                    (x, y),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=7,
                    color=line[0].get_color(),
                )
    ax.set_xlabel("KL(π ‖ π_ref), nats per completion (from samples)")
    ax.set_ylabel("mean gold reward")
    ax.set_title(f"gold reward vs KL — task {result.task}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(result: ArenaResult, path: Path) -> Path:
    """Training loss and the policy's chosen/rejected log-probs per step for every trained run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for label, hist in result.histories.items():
        if not hist:
            continue
        steps = [h.get("step", i + 1) for i, h in enumerate(hist)]
        for ax, key in zip(axes, ("loss", "logps/chosen", "logps/rejected"), strict=True):
            ys = [h.get(key) for h in hist]
            if any(y is not None for y in ys):
                ax.plot(steps, [float("nan") if y is None else y for y in ys], label=label, lw=1)
    for ax, title in zip(axes, ("loss", "policy log p(chosen)", "policy log p(rejected)"), strict=True):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_markdown(
    result: ArenaResult, cfg: ArenaConfig, base: BaseModel, data: ArenaData, path: Path
) -> Path:
    s = base.stats
    warn = []
    if getattr(result, "warnings", None):
        warn = [
            "> **WARNING — degenerate arena: its figures do not compare the objectives.**",
            *[f"> - {w}" for w in result.warnings],
            "",
        ]
    heads = headline_verdicts(result)
    lines = [
        f"# alignkit arena — task `{result.task}`",
        "",
        *warn,
        *([*[f"**{h}**" for h in heads], ""] if heads else []),
        f"Base model: {s.get('parameters', 0) / 1e6:.2f} M parameters, {s.get('steps')} pretraining steps, "
        f"held-out loss {s.get('heldout_loss') or float('nan'):.2f} nats/token (`{base.path}`).",
        f"Preference data: {len(data.pairs)} Bradley–Terry-labelled pairs ({cfg.pair_strategy}, temperature "
        f"{cfg.bt_temperature:g}, label noise {cfg.label_noise:g}) from {cfg.train_prompts} prompts × "
        f"{cfg.samples_per_prompt} samples; evaluation on {cfg.eval_prompts} held-out prompts × {cfg.eval_samples} "
        f"samples, {len(data.eval_pairs)} held-out pairs.",
        f"Training: {cfg.steps} steps × {cfg.batch_size} pairs, lr {cfg.learning_rate:g}, seeds {list(cfg.seeds)}.",
        "",
        "## Results",
        "",
        "Every figure is a mean over eval prompts with its 95% bootstrap CI. KL(π‖ref) is in nats per completion, "
        "estimated from the policy's own samples. Win rate: P(policy sample beats an SFT sample at the same prompt by "
        "gold reward), ties count ½. Ranking accuracy: share of held-out pairs with log π(chosen) > log π(rejected); "
        "ideal: the same for the idealized optimum π* ∝ π_ref·exp(r*/β) (arXiv:2405.19534). Δlogp: change of the "
        "chosen / rejected log-probs of training pairs (likelihood displacement, arXiv:2410.08847).",
        "",
        "| " + " | ".join(_headers(result)) + " |",
        "|" + "---|" * len(_headers(result)),
    ]
    for row in _table_rows(result):
        lines.append("| " + " | ".join(row) + " |")
    v = verdict(result)
    if v:
        lines += ["", ("Gold reward (it mixes the task figures above): " if heads else "") + f"**{v}**"]
    task_rows = [
        (r, d["task_metrics"])
        for r, d in zip(result.results, result.details, strict=True)
        if d.get("task_metrics")
    ]
    if task_rows:
        lines += [
            "",
            "### Task metrics",
            "",
            "| objective | " + " | ".join(task_rows[0][1]) + " |",
            "|---|" + "---|" * len(task_rows[0][1]),
        ]
        for r, tm in task_rows:
            cells = [f"{m['mean']:.3f} [{m['ci95'][0]:.3f}, {m['ci95'][1]:.3f}]" for m in tm.values()]
            lines.append(f"| {_name(r)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Plots",
        "",
        "![gold reward vs KL](frontier.png)",
        "",
        "![training curves](training_curves.png)",
        "",
        "## Seconds per phase",
        "",
        "| phase | s |",
        "|---|---|",
    ]
    lines += [f"| {p['phase']} | {p['seconds']:.1f} |" for p in result.phases]
    lines += ["", "## Sample completions (first sample of the first 3 eval prompts)", ""]
    for r, d in zip(result.results, result.details, strict=True):
        if d.get("examples") and not d.get("sweep"):
            lines.append(f"**{_name(r)}**")
            lines.append("")
            for p, ex in zip(data.eval_prompts[:3], d["examples"], strict=False):
                lines.append(f"- `{p.text}` → `{(ex[0] if ex else '').strip()}`")
            lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_report(result: ArenaResult, cfg: ArenaConfig, base: BaseModel, data: ArenaData) -> list[Path]:
    """Write ``results.json``, ``report.md``, ``frontier.png`` and ``training_curves.png`` to ``result.output``."""
    out = result.output
    assert out is not None
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "results.json"]
    (out / "results.json").write_text(json.dumps(_results_json(result, cfg, base, data), indent=2))
    (out / "histories.json").write_text(json.dumps(result.histories))
    files.append(out / "histories.json")
    files.append(plot_frontier(result, out / "frontier.png"))
    files.append(plot_curves(result, out / "training_curves.png"))
    files.append(write_markdown(result, cfg, base, data, out / "report.md"))
    return files
