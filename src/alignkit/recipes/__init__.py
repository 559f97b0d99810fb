"""Recipes: multi-stage training pipelines from papers, as YAML files shipped with the package.

>>> from alignkit import recipes
>>> recipes.names()                       # ['baichuan', 'guardrail_ipo', 'guardrail_kto', 'lion']
>>> r = recipes.load("lion")
>>> print(r.stage_yaml("dpo"))            # a config `alignkit train --config FILE` reads
>>> recipes.run("lion", model="base/", data={"sft": "sft.jsonl", "dpo": "pairs.jsonl",
...             "online_dpo": "prompts.jsonl"}, output_dir="out", reward_fn="my_mod:judge")

A recipe file holds ``name``, ``paper``, ``arxiv``, ``description``, ``notes`` and ``stages``: a list of
``{name, config}`` (``config``: :class:`~alignkit.train.TrainConfig` fields) or ``{name, merge}`` (``merge``:
``method: wise_ft``, ``theta_0``, ``theta_1``, ``alpha``). ``"@<stage>"`` names an earlier stage's output folder
(``<output_dir>/<stage>``). On the CLI: ``alignkit recipe list``, ``alignkit recipe show NAME [--stage S]``,
``alignkit recipe export NAME DIR`` (one ``<stage>.yaml`` per training stage), ``alignkit recipe run NAME --model
BASE --data STAGE=FILE ... --output DIR`` (every stage in order, as :func:`run`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

MERGE_METHODS = ("wise_ft",)


@dataclass
class Stage:
    name: str
    config: dict[str, Any] | None = None  # TrainConfig fields (a training stage)
    merge: dict[str, Any] | None = None  # a merge stage

    @property
    def kind(self) -> str:
        return "train" if self.config is not None else "merge"


@dataclass
class Recipe:
    name: str
    paper: str
    arxiv: str
    description: str
    stages: list[Stage]
    notes: str = ""
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"recipe {self.name!r} has no stage {name!r}; stages: {[s.name for s in self.stages]}")

    def stage_yaml(self, name: str, **fields: Any) -> str:
        """The training stage ``name`` as a YAML config for ``alignkit train --config`` (``fields`` override)."""
        s = self.stage(name)
        if s.config is None:
            raise ValueError(
                f"stage {name!r} of recipe {self.name!r} is a merge stage, not a training config"
            )
        cfg = {**s.config, **fields}
        head = ""
        ref = cfg.get("model")
        if isinstance(ref, str) and ref.startswith("@"):
            # an earlier stage's output: the user passes it with --model
            del cfg["model"]
            head = f"# model: the output folder of stage {ref[1:]!r} (pass --model)\n"
        return head + yaml.safe_dump(cfg, sort_keys=False)


def _check(recipe: dict[str, Any], where: str) -> Recipe:
    from alignkit.registry import Objective, get
    from alignkit.train.config import TrainConfig

    if not isinstance(recipe, dict):
        raise ValueError(f"{where}: a recipe must be a mapping")
    for key in ("name", "paper", "arxiv", "description", "stages"):
        if key not in recipe:
            raise ValueError(f"{where}: missing field {key!r}")
    if not isinstance(recipe["stages"], list) or not recipe["stages"]:
        raise ValueError(f"{where}: 'stages' must be a non-empty list")
    stages: list[Stage] = []
    seen: set[str] = set()
    for i, raw in enumerate(recipe["stages"]):
        at = f"{where}: stages[{i}]"
        if not isinstance(raw, dict) or "name" not in raw:
            raise ValueError(f"{at}: needs a 'name'")
        if ("config" in raw) == ("merge" in raw):
            raise ValueError(f"{at} ({raw['name']!r}): give exactly one of 'config' or 'merge'")
        refs: list[Any] = []
        if "config" in raw:
            cfg = raw["config"]
            if not isinstance(cfg, dict):
                raise ValueError(f"{at}: 'config' must be a mapping of TrainConfig fields")
            unknown = sorted(set(cfg) - set(TrainConfig.field_names()))
            if unknown:
                raise ValueError(f"{at}: unknown config field(s) {', '.join(unknown)}")
            obj = get(cfg.get("objective", "dpo"))
            if not isinstance(obj, Objective):
                raise ValueError(f"{at}: {obj.name!r} is not an objective")
            bad = sorted(set(cfg.get("hyper_parameters") or {}) - set(obj.defaults))
            if bad:
                raise ValueError(f"{at}: objective {obj.name!r} has no hyper-parameter(s) {', '.join(bad)}")
            refs.append(cfg.get("model"))
        else:
            m = raw["merge"]
            if not isinstance(m, dict) or m.get("method") not in MERGE_METHODS:
                raise ValueError(f"{at}: merge.method must be one of {MERGE_METHODS}")
            refs += [m.get("theta_0"), m.get("theta_1")]
        for ref in refs:
            if isinstance(ref, str) and ref.startswith("@") and ref[1:] not in seen:
                raise ValueError(f"{at}: {ref!r} names no earlier stage (earlier: {sorted(seen)})")
        seen.add(raw["name"])
        stages.append(Stage(raw["name"], copy.deepcopy(raw.get("config")), copy.deepcopy(raw.get("merge"))))
    known = {"name", "paper", "arxiv", "description", "stages", "notes"}
    return Recipe(
        name=recipe["name"],
        paper=recipe["paper"],
        arxiv=str(recipe["arxiv"]),
        description=recipe["description"],
        stages=stages,
        notes=recipe.get("notes", ""),
        source=where,
        extra={k: v for k, v in recipe.items() if k not in known},
    )


def names() -> list[str]:
    """The shipped recipes."""
    return sorted(
        p.name[: -len(".yaml")] for p in resources.files(__name__).iterdir() if p.name.endswith(".yaml")
    )


def load(name: str | Path) -> Recipe:
    """A shipped recipe by name, or a recipe YAML file by path; validated (fields, objectives, ``@stage`` refs)."""
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return _check(yaml.safe_load(path.read_text()), str(path))
    if str(name) not in names():
        raise KeyError(f"unknown recipe {name!r}; shipped: {', '.join(names())}")
    text = resources.files(__name__).joinpath(f"{name}.yaml").read_text()
    return _check(yaml.safe_load(text), f"{name}.yaml")


def export(name: str | Recipe, directory: str | Path) -> list[Path]:
    """Write each training stage as ``<directory>/<stage>.yaml`` (for ``alignkit train --config``)."""
    r = name if isinstance(name, Recipe) else load(name)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for s in r.stages:
        if s.config is not None:
            f = out / f"{s.name}.yaml"
            f.write_text(r.stage_yaml(s.name))
            files.append(f)
    return files


def run(
    name: str | Recipe,
    *,
    model: Any,
    data: dict[str, Any],
    output_dir: str | Path,
    reward_fn: Any = None,
    overrides: dict[str, Any] | None = None,
    stage_overrides: dict[str, dict[str, Any]] | None = None,
    skip: Sequence[str] = (),
    console: Any = None,
) -> dict[str, Path]:
    """Run every stage in order; returns ``{stage: output folder}``.

    ``model``: the starting model (folder or hub id); ``data[stage]``: each training stage's data; ``reward_fn``
    for online stages; ``overrides`` apply to every training stage (e.g. ``max_steps``), ``stage_overrides``
    to one stage. ``skip``: stages not run; a later ``"@<skipped stage>"`` means the model that stage would
    have started from. ``console`` (a ``rich`` console; default: stderr unless ``overrides`` turn ``progress`` off): a heading names
    each stage before its progress bar.
    """
    from alignkit.merging import checkpoint
    from alignkit.merging.provenance import copy_model_files, write_provenance
    from alignkit.merging.wise_ft import wise_ft
    from alignkit.train import train

    r = name if isinstance(name, Recipe) else load(name)
    unknown = sorted(set(skip) - {s.name for s in r.stages})
    if unknown:
        raise ValueError(f"recipe {r.name!r} has no stage(s) {', '.join(unknown)} to skip; stages: "
                         f"{', '.join(s.name for s in r.stages)}")  # fmt: skip
    root = Path(output_dir)
    outs: dict[str, Path] = {}
    started_from: dict[str, Any] = {}  # a skipped stage stands for the model it would have started from

    def resolve(ref: Any) -> Any:
        if isinstance(ref, str) and ref.startswith("@"):
            if ref[1:] in started_from:
                return started_from[ref[1:]]
            return str(outs[ref[1:]])
        return ref

    run_stages = [s for s in r.stages if s.name not in skip]
    if console is None and {**(overrides or {})}.get("progress", True):
        from rich.console import Console

        console = Console(stderr=True)
    for s in r.stages:
        if s.name in skip:
            if s.config is None:
                raise ValueError(f"recipe {r.name!r}: merge stage {s.name!r} cannot be skipped")
            started_from[s.name] = resolve((s.config or {}).get("model", model))
            continue
        out = root / s.name
        if console is not None:
            i = run_stages.index(s) + 1
            what = (
                f"merge {s.merge['method']}"
                if s.merge is not None
                else f"train {(s.config or {}).get('objective', 'dpo')}"
            )
            console.rule(
                f"recipe {r.name}: stage {i}/{len(run_stages)} [bold]{s.name}[/bold] ({what}) -> {out}"
            )
        if s.merge is not None:
            m = s.merge
            theta_0, theta_1 = resolve(m["theta_0"]), resolve(m["theta_1"])
            alpha = float(m.get("alpha", 0.5))
            merged = wise_ft(checkpoint.load(theta_0), checkpoint.load(theta_1), alpha=alpha)
            checkpoint.save(merged, out)
            copy_model_files(theta_1, out)  # config and tokenizer; theta_1's training records are not copied
            write_provenance(out, method="wise_ft", hyper_parameters={"alpha": alpha}, base=theta_0,
                             models=[theta_1], config_from=theta_1)  # fmt: skip
            outs[s.name] = out
            continue
        if s.name not in data:
            raise ValueError(f"recipe {r.name!r}: no data for stage {s.name!r} (data keys: {sorted(data)})")
        cfg = dict(s.config or {})
        cfg["model"] = resolve(cfg.get("model", model))
        if cfg.get("mode") == "online":
            if reward_fn is None:
                raise ValueError(f"recipe {r.name!r}: stage {s.name!r} is online and needs reward_fn")
            from alignkit.callables import reward_fn_from_spec

            cfg["reward_fn"] = reward_fn_from_spec(reward_fn)
        cfg.update(overrides or {})
        cfg.update((stage_overrides or {}).get(s.name, {}))
        stage_data = data[s.name]
        cfg.setdefault("progress_label", f"{r.name}/{s.name}")
        if isinstance(cfg["model"], Path):
            cfg["model"] = str(cfg["model"])
        train(
            **cfg, data=str(stage_data) if isinstance(stage_data, Path) else stage_data, output_dir=str(out)
        )
        outs[s.name] = out
    return outs


# --- the shipped recipes as registered components (kind "recipe"; `alignkit list --kind recipe`) -------------
# How each recipe's stage settings were checked (alignkit.spec.VERIFICATION_LEVELS): the released configs were
# summarised in the project catalogue (LIONs) or not available (Baichuan, guardrail), never re-read here.
RECIPE_VERIFICATION = {
    "lion": "reconstruction",
    "baichuan": "reconstruction",
    "guardrail_ipo": "reconstruction",
    "guardrail_kto": "reconstruction",
}


def _recipe_doc(name: str, raw: dict[str, Any], header: str) -> str:
    """The component docstring of a shipped recipe: paper, stages as the Formula, each stage's settings as the
    Hyper-parameters with their source (the recipe file's header)."""
    stages = raw["stages"]
    flow = " -> ".join(
        f"{s['name']} ({s['config'].get('objective', 'dpo')})" if "config" in s else f"{s['name']} (merge)"
        for s in stages
    )
    hp_lines = []
    for s in stages:
        if "config" in s:
            cfg = s["config"]
            keep = {
                k: cfg[k] for k in ("objective", "learning_rate", "hyper_parameters", "max_steps") if k in cfg
            }
            hp_lines.append(f"    {s['name']}: {keep}")
        else:
            hp_lines.append(f"    {s['name']}: {s['merge']}")
    return (
        f"{raw['paper']} (arXiv:{raw['arxiv']}) — the recipe '{name}': {raw['description']}\n\n"
        f"Formula:\n    {flow}\n\n"
        "Hyper-parameters:\n"
        + "\n".join(hp_lines)
        + f"\n    (source of every value: {header or 'the recipe file'})\n\n"
        + (f"Notes: {raw.get('notes', '')}\n\n" if raw.get("notes") else "")
        + f"Run: ``alignkit recipe show {name}``; ``alignkit.recipes.run({name!r}, model=..., data=..., "
        "output_dir=...)``."
    )


def _runner(name: str) -> Any:
    def run_recipe(**kwargs: Any) -> dict[str, Path]:
        return run(name, **kwargs)

    return run_recipe


def _register_shipped() -> None:
    from alignkit.registry import register

    for name in names():
        text = resources.files(__name__).joinpath(f"{name}.yaml").read_text()
        raw = yaml.safe_load(text)
        header = " ".join(line.lstrip("# ").strip() for line in text.splitlines() if line.startswith("#"))

        run_recipe = _runner(name)
        run_recipe.__doc__ = _recipe_doc(name, raw, header)
        run_recipe.__name__ = run_recipe.__qualname__ = f"recipe_{name}"
        register(
            name=name,
            kind="recipe",
            family="recipe",
            paper=raw["paper"],
            arxiv=str(raw["arxiv"]),
            tags=("recipe", "multi-stage"),
            summary=raw["description"],
            verification=RECIPE_VERIFICATION[name],
        )(run_recipe)


_register_shipped()
