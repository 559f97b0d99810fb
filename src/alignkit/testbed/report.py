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


def _table_rows(result: ArenaResult) -> list[list[str]]:
    rows = []
    for r, d in zip(result.results, result.details, strict=True):
        disp = d.get("displacement")
        disp_s = "-" if not disp else f"{disp['chosen']['mean']:+.1f} / {disp['rejected']['mean']:+.1f}"
        kl = "-" if r["kl_mean"] is None else f"{r['kl_mean']:.2f}"
        rows.append(
            [
                _name(r),
                str(r["seed"]),
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


def verdict(result: ArenaResult, objective: str = "dpo") -> str | None:
    """A sentence comparing ``objective`` (its main run) to the SFT baseline by their 95% CIs."""
    sft = next((r for r in result.results if r["objective"] == "sft"), None)
    main = [
        r
        for r, d in zip(result.results, result.details, strict=True)
        if r["objective"] == objective and not d.get("sweep")
    ]
    if sft is None or not main:
        return None
    r = main[0]
    sep = not overlap(r["gold_reward_ci95"], sft["gold_reward_ci95"])
    above = r["gold_reward_mean"] > sft["gold_reward_mean"]
    rel = "above" if above else "below"
    ci = "non-overlapping" if sep else "overlapping"
    return (
        f"{objective} (β={r['beta']:g}) gold reward {r['gold_reward_mean']:.3f} is {rel} SFT's "
        f"{sft['gold_reward_mean']:.3f} with {ci} 95% CIs "
        f"([{r['gold_reward_ci95'][0]:.3f}, {r['gold_reward_ci95'][1]:.3f}] vs "
        f"[{sft['gold_reward_ci95'][0]:.3f}, {sft['gold_reward_ci95'][1]:.3f}]) at KL {r['kl_mean']:.2f} nats."
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
    for h in HEADERS:
        table.add_column(h, justify="left" if h == "objective" else "right")
    for row in _table_rows(result):
        table.add_row(*row)
    console.print(table)
    v = verdict(result)
    if v:
        console.print(v)
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
    lines = [
        f"# alignkit arena — task `{result.task}`",
        "",
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
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    for row in _table_rows(result):
        lines.append("| " + " | ".join(row) + " |")
    v = verdict(result)
    if v:
        lines += ["", f"**{v}**"]
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
