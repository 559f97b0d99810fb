"""The registry: every component alignkit holds — objectives, metrics, decoders, merge methods, data rules,
optimizers, recipes — with its paper, arXiv id, defaults and what it needs.

An objective is registered by decorating a pure function ``fn(batch, *, hp1=default1, ...) -> LossOutput``::

    @register_objective(name="dpo", aliases=("sigmoid",), family="preference", paper="...", arxiv="2305.18290")
    def dpo(batch: PreferenceBatch, *, beta: float = 0.1) -> LossOutput:
        '''Direct Preference Optimization ... (arXiv:2305.18290)

        Formula:
            L = -log sigma(beta * ((log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))))
        '''

The keyword defaults of ``fn`` are the paper's defaults and become ``obj.defaults``; the ``Formula:`` block of
the docstring becomes ``obj.formula``. Nothing is stated twice.
"""

from __future__ import annotations

import difflib
import inspect
import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alignkit import hyperparameters as _hp
from alignkit.errors import HyperParameterError, UnknownComponentError
from alignkit.spec import VERIFICATION_LEVELS, ObjectiveSpec, StateSpec

KINDS = (
    "objective",
    "metric",
    "decoder",
    "merge",
    "data_rule",
    "optimizer",
    "recipe",
    "diagnostic",
    "defence",
    "scaling_law",
    "procedure",
)

#: tags derived from an objective's metadata (``Component.derived_tags``), never taken from hand-written ``tags``
_DERIVED_TAGS = {"reference": ("reference", "reference-free"), "pairing": ("paired", "unpaired")}

_REGISTRY: dict[str, Component] = {}
_ALIASES: dict[str, str] = {}


def _docstring_section(doc: str, header: str) -> str:
    """The indented block under ``header:`` in a docstring ('' if absent)."""
    lines = textwrap.dedent(doc).splitlines()
    out: list[str] = []
    inside = False
    for line in lines:
        if line.strip() == f"{header}:":
            inside = True
            continue
        if inside:
            if line.strip() and not line.startswith((" ", "\t")):
                break
            out.append(line)
    return textwrap.dedent("\n".join(out)).strip()


@dataclass
class Component:
    """A registered thing with provenance. Subclasses add behaviour (``Objective`` is callable)."""

    name: str
    kind: str
    fn: Callable[..., Any]
    paper: str
    arxiv: str
    family: str = ""
    aliases: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    summary: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    verification: str | None = None
    alias_titles: tuple[
        str, ...
    ] = ()  # other titles of the same paper (earlier arXiv versions, venue titles)

    def __post_init__(self) -> None:
        if self.verification is not None and self.verification not in VERIFICATION_LEVELS:
            raise ValueError(
                f"{self.name}: verification must be one of {sorted(VERIFICATION_LEVELS)}; got {self.verification!r}"
            )

    @property
    def formula(self) -> str:
        return _docstring_section(inspect.getdoc(self.fn) or "", "Formula")

    @property
    def derived_tags(self) -> tuple[str, ...]:
        """The tags ``alignkit list --tag`` filters on: the hand-written ``tags`` plus those that follow from the
        metadata (objectives: ``reference``/``reference-free`` from ``needs_reference``, ``paired``/``unpaired``
        from ``batch_type``). A hand-written tag that the metadata decides is replaced by the derived one."""
        return self.tags

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.fn) or ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "kind": self.kind,
            "family": self.family,
            "tags": list(self.derived_tags),
            "paper": self.paper,
            "arxiv": self.arxiv,
            "summary": self.summary,
            "defaults": {k: _jsonable(v) for k, v in self.defaults.items()},
            "verification": self.verification,
            "alias_titles": list(self.alias_titles),
            "needs_reference": None,
            "aggregation": None,
        }

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def _jsonable(v: Any) -> Any:
    if isinstance(v, (int, float, str, bool)) or v is None:
        return v
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    return repr(v)


@dataclass
class Objective(Component):
    """A training objective: ``obj(batch, **hyper_parameters) -> LossOutput``, with its :class:`ObjectiveSpec`.

    ``needs_reference``: the objective reads reference log-probs (the engine runs/caches a reference model).
    ``aggregation``: how it aggregates token log-probs into a sequence score — ``"sum"`` or per-token ``"mean"``.
    ``batch_type``: which batch it takes (``PreferenceBatch``, ``UnpairedBatch``, ``SFTBatch``, ``RewardBatch``, or
    a batch class of another family). ``requires`` / ``optional`` / ``requires_when``: batch fields beyond the
    log-probs (names from :data:`alignkit.spec.FIELDS`); ``optional`` maps a field to what the objective computes
    without it. ``normalisation``: ``"example"`` or ``"token"`` (how the batch loss is averaged). ``state``: running
    state between steps (:class:`alignkit.spec.StateSpec`). ``spec`` gathers them.
    """

    needs_reference: bool = True
    aggregation: str = "sum"
    batch_type: type | None = None
    requires: tuple[str, ...] = ()
    optional: Mapping[str, str] = field(default_factory=dict)
    requires_when: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    normalisation: str = "example"
    state: StateSpec | None = None
    ranges: Mapping[str, Any] = field(default_factory=dict)
    spec: ObjectiveSpec = field(init=False, repr=False)
    valid_ranges: dict[str, Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.spec = ObjectiveSpec(
            batch=self.batch_type,
            requires=tuple(self.requires),
            optional=dict(self.optional),
            requires_when={k: tuple(v) for k, v in self.requires_when.items()},
            normalisation=self.normalisation,
            needs_reference=self.needs_reference,
            aggregation=self.aggregation,
            state=self.state,
        )
        if self.state is not None:
            missing = sorted(set(self.state.init) - set(self.defaults))
            if missing:
                raise ValueError(f"{self.name}: state {missing} must be keyword arguments of the function")
        state_keys = frozenset(self.state.init) if self.state is not None else frozenset()
        self.valid_ranges = _hp.ranges_for(self.name, self.defaults, self.ranges, skip=state_keys)

    @property
    def derived_tags(self) -> tuple[str, ...]:
        from alignkit.types import PreferenceBatch, UnpairedBatch

        derived = ["reference" if self.needs_reference else "reference-free"]
        decided = set(_DERIVED_TAGS["reference"])
        if self.batch_type is not None:  # the batch decides paired/unpaired; without one the hand tag stands
            decided |= set(_DERIVED_TAGS["pairing"])
            if issubclass(self.batch_type, PreferenceBatch):
                derived.append("paired")
            elif issubclass(self.batch_type, UnpairedBatch):
                derived.append("unpaired")
        return tuple(t for t in self.tags if t not in decided) + tuple(derived)

    def resolve(self, **overrides: Any) -> dict[str, Any]:
        """The defaults overlaid with ``overrides``, each coerced to its default's type and checked against its
        range (:mod:`alignkit.hyperparameters`); unknown names and out-of-range values raise
        :class:`~alignkit.errors.HyperParameterError` naming the objective, the hyper-parameter and the range."""
        unknown = sorted(set(overrides) - set(self.defaults))
        if unknown:
            raise HyperParameterError(
                f"objective {self.name!r} has no hyper-parameter {', '.join(map(repr, unknown))}; "
                f"it takes: {', '.join(sorted(self.hyper_parameters)) or '(none)'}"
            )
        out = {**self.defaults}
        for name, value in overrides.items():
            rng = self.valid_ranges.get(name)
            value = _hp.coerce(self.name, name, value, self.defaults[name], rng)
            if rng is not None:
                _hp.check(self.name, name, value, rng, self.defaults[name])
            out[name] = value
        return out

    @property
    def hyper_parameters(self) -> dict[str, Any]:
        """The defaults a user sets (running state excluded)."""
        state = set(self.state.init) if self.state is not None else set()
        return {k: v for k, v in self.defaults.items() if k not in state}

    def __call__(self, batch: Any, **hyper_parameters: Any) -> Any:
        if self.batch_type is not None and not isinstance(batch, self.batch_type):
            raise TypeError(
                f"objective {self.name!r} takes a {self.batch_type.__name__}, got {type(batch).__name__}"
            )
        return self.fn(batch, **self.resolve(**hyper_parameters))

    def requires_fields(self, **hyper_parameters: Any) -> tuple[str, ...]:
        """Batch fields the engine must supply for these hyper-parameters (``alignkit.spec.FIELDS`` names)."""
        return self.spec.required(self.resolve(**hyper_parameters))

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d.update(
            needs_reference=self.needs_reference,
            aggregation=self.aggregation,
            batch_type=self.batch_type.__name__ if self.batch_type else None,
            requires=list(self.requires),
            optional=dict(self.optional),
            requires_when={k: list(v) for k, v in self.requires_when.items()},
            normalisation=self.normalisation,
            state=sorted(self.state.init) if self.state is not None else [],
            ranges={k: _hp.describe(r) for k, r in self.valid_ranges.items()},
        )
        return d


def _defaults_of(fn: Callable[..., Any]) -> dict[str, Any]:
    sig = inspect.signature(fn)
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.kind == inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty
    }


def add(component: Component) -> Component:
    """Put a component in the registry; names and aliases share one namespace and must be unique."""
    if component.kind not in KINDS:
        raise ValueError(f"unknown kind {component.kind!r}; kinds are {KINDS}")
    for key in (component.name, *component.aliases):
        owner = _ALIASES.get(key)
        if owner is not None and owner != component.name:
            raise ValueError(f"name {key!r} is already registered by {owner!r}")
    _REGISTRY[component.name] = component
    for key in (component.name, *component.aliases):
        _ALIASES[key] = component.name
    return component


def register(
    *,
    name: str,
    kind: str,
    paper: str,
    arxiv: str,
    family: str = "",
    aliases: Iterable[str] = (),
    tags: Iterable[str] = (),
    summary: str = "",
    verification: str | None = None,
    alias_titles: Iterable[str] = (),
) -> Callable[[Callable[..., Any]], Component]:
    """Register a non-objective component (metric, decoder, merge method, data rule, optimizer, recipe ...).

    ``verification``: how it was checked, one of :data:`alignkit.spec.VERIFICATION_LEVELS`. ``alias_titles``:
    other titles the same paper carries (``list_components(paper=...)`` finds the component by any of them)."""

    def deco(fn: Callable[..., Any]) -> Component:
        return add(
            Component(
                name=name,
                kind=kind,
                fn=fn,
                paper=paper,
                arxiv=arxiv,
                family=family,
                aliases=tuple(aliases),
                tags=tuple(tags),
                summary=summary or _first_line(fn),
                defaults=_defaults_of(fn),
                verification=verification,
                alias_titles=tuple(alias_titles),
            )
        )

    return deco


def _first_line(fn: Callable[..., Any]) -> str:
    doc = inspect.getdoc(fn) or ""
    return doc.splitlines()[0] if doc else ""


def register_objective(
    *,
    name: str,
    paper: str,
    arxiv: str,
    family: str = "preference",
    aliases: Iterable[str] = (),
    tags: Iterable[str] = (),
    needs_reference: bool = True,
    aggregation: str = "sum",
    batch_type: type | None = None,
    summary: str = "",
    defaults: dict[str, Any] | None = None,
    requires: Iterable[str] = (),
    optional: Mapping[str, str] | None = None,
    requires_when: Mapping[str, Iterable[str]] | None = None,
    normalisation: str = "example",
    state: StateSpec | None = None,
    verification: str | None = None,
    ranges: Mapping[str, Any] | None = None,
    alias_titles: Iterable[str] = (),
) -> Callable[[Callable[..., Any]], Objective]:
    """Register a pure objective function. Its keyword defaults (or ``defaults``) are the paper's defaults.

    ``ranges``: the valid range of a hyper-parameter (``{"beta": "(0, inf)", "nll": ("sum", "mean")}``); one not
    given takes its name's range from :data:`alignkit.hyperparameters.DEFAULT_RANGES`. ``resolve`` checks them.

    ``requires`` / ``optional`` / ``requires_when`` / ``normalisation`` / ``state`` make its
    :class:`~alignkit.spec.ObjectiveSpec` (what it consumes; the trainer supplies it or refuses before step 1).
    """

    def deco(fn: Callable[..., Any]) -> Objective:
        obj = Objective(
            name=name,
            kind="objective",
            fn=fn,
            paper=paper,
            arxiv=arxiv,
            family=family,
            aliases=tuple(aliases),
            tags=tuple(tags),
            summary=summary or _first_line(fn),
            defaults=dict(defaults) if defaults is not None else _defaults_of(fn),
            needs_reference=needs_reference,
            aggregation=aggregation,
            batch_type=batch_type,
            requires=tuple(requires),
            optional=dict(optional or {}),
            requires_when={k: tuple(v) for k, v in (requires_when or {}).items()},
            normalisation=normalisation,
            state=state,
            verification=verification,
            ranges=dict(ranges or {}),
            alias_titles=tuple(alias_titles),
        )
        add(obj)
        return obj

    return deco


# Components register themselves when their module is imported. Which modules those are is known only at the top
# of the package (alignkit.components), which installs its loader here: the registry imports no component.
_LOADER: Callable[[str | None], None] | None = None


def set_loader(loader: Callable[[str | None], None]) -> None:
    """Install the function that imports the component packages (``loader(kind)``; ``None`` = every kind)."""
    global _LOADER
    _LOADER = loader


def _ensure_loaded(kind: str | None = None) -> None:
    if _LOADER is not None:
        _LOADER(kind)


def get(name: str) -> Component:
    """A component by name or alias. Unknown names raise ``KeyError`` listing close matches."""
    key = _ALIASES.get(name)
    if key is None:
        _ensure_loaded("objective")  # the common case loads only the objectives
        key = _ALIASES.get(name)
    if key is None:
        _ensure_loaded(None)
        key = _ALIASES.get(name)
    if key is None:
        close = difflib.get_close_matches(name, list(_ALIASES), n=5, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownComponentError(f"no component named {name!r}{hint} (see `alignkit list`)")
    return _REGISTRY[key]


def list_components(
    kind: str | None = None, family: str | None = None, tag: str | None = None, paper: str | None = None
) -> list[Component]:
    """Registered components, filtered by kind, family, tag and ``paper`` (a case-insensitive part of the
    paper's title or of any of its ``alias_titles``, or its arXiv id)."""
    _ensure_loaded(None)

    def by_paper(c: Component) -> bool:
        q = (paper or "").lower()
        return any(q in t.lower() for t in (c.paper, *c.alias_titles)) or q == c.arxiv

    out = [
        c
        for c in _REGISTRY.values()
        if (kind is None or c.kind == kind)
        and (family is None or c.family == family)
        and (tag is None or tag in c.derived_tags)
        and (paper is None or by_paper(c))
    ]
    return sorted(out, key=lambda c: (c.kind, c.family, c.name))


def list_objectives(family: str | None = None, tag: str | None = None) -> list[Objective]:
    return list_components(kind="objective", family=family, tag=tag)  # type: ignore[return-value]
