"""The unified view of preference learning as registry tags: every component can carry ``axis:value`` tags for
the survey's Data, Feedback and Algorithm components, and ``alignkit list --tag algorithm:pairwise`` filters by
them."""

from __future__ import annotations

from alignkit.registry import Component, list_components, register

PAPER = "Towards a Unified View of Preference Learning for Large Language Models: A Survey"

# axis -> allowed values. Algorithm and data follow the survey; feedback names what the objective consumes
# (the survey's direct feedback = labelled data / rules, model-based feedback = reward model, pairwise scorer,
# LLM judge — each value below is one of those sources seen from the loss's side).
AXES: dict[str, tuple[str, ...]] = {
    "algorithm": ("pointwise", "pairwise", "listwise", "training-free"),
    "data": ("on-policy", "off-policy"),
    "feedback": (
        "demonstration",  # labelled targets (SFT-style)
        "preference",  # hard pairwise labels
        "soft-preference",  # empirical preference probabilities
        "binary",  # desirable / undesirable labels
        "revision",  # an initial response and its revision
        "reward",  # scalar rewards (a task metric or rule)
        "reward-model",  # a learned scorer
        "comparison-oracle",  # yes/no comparisons of two models
        "teacher-logits",  # a teacher model's token distribution (distillation)
        "llm-judge",  # an LLM judge's verdicts (the survey's model-based feedback)
        "self-supervised",  # no labels: the model's own predictions or source statistics (adaptation)
    ),
}
# Axes outside the survey (validated like the survey's, not part of its table): the data modality of the
# representation family (alignkit.objectives.representation), whose losses are not preference learning.
OTHER_AXES: dict[str, tuple[str, ...]] = {
    "modality": ("text", "image", "vision", "audio", "video", "cross-modal", "tabular", "any"),
}
OPTIONAL_AXES = OTHER_AXES  # a component may carry them; no objective must


def taxonomy_of(component: Component) -> dict[str, list[str]]:
    """{axis: [values]} from a component's ``axis:value`` tags of the survey's axes; raises ``ValueError`` on a
    value the axis does not have. Tags of other axes (``modality:``, ``needs:``) are not the survey's and are
    skipped."""
    out: dict[str, list[str]] = {}
    for tag in component.tags:
        if ":" not in tag:
            continue
        axis, value = tag.split(":", 1)
        if axis in OTHER_AXES:
            if value not in OTHER_AXES[axis]:
                raise ValueError(
                    f"component {component.name!r} has tag {tag!r}; {axis} is one of {OTHER_AXES[axis]}"
                )
        elif axis not in AXES:
            continue  # not an axis of the taxonomy (e.g. needs:)
        elif value not in AXES[axis]:
            raise ValueError(f"component {component.name!r} has tag {tag!r}, not in the taxonomy {AXES}")
        out.setdefault(axis, []).append(value)
    return out


@register(
    name="unified_view_taxonomy",
    verification="reconstruction",
    kind="diagnostic",
    family="preference",
    paper=PAPER,
    arxiv="2409.02795",
    tags=("taxonomy",),
)
def taxonomy_table(*, kind: str | None = None) -> dict[str, dict[str, list[str]]]:
    """Towards a Unified View of Preference Learning for Large Language Models: A Survey (arXiv:2409.02795):
    the registry grouped by the survey's components — {axis: {value: [component names]}}.

    The survey splits a preference-learning method into Model, Data (on-/off-policy), Feedback (direct:
    labelled data, rules; model-based: reward model, pairwise scorer, LLM judge) and Algorithm (pointwise,
    pairwise contrast, listwise contrast, training-free), and writes every method's gradient as
    E[(1/|o|) sum_t delta_A(r, q, o, t) grad log pi(o_t | q, o_<t)]. Components carry the axes as tags
    ``algorithm:<value>``, ``data:<value>``, ``feedback:<value>``; ``alignkit list --tag algorithm:listwise``
    filters by them.

    Formula:
        grad = E_{(q, o) ~ D} [ (1/|o|) sum_t delta_A(r, q, o, t) grad_theta log pi(o_t | q, o_<t) ]

    Hyper-parameters:
        kind: None — only components of this kind (e.g. "objective"); None = all (ours).

    Source: the survey's abstract and project page (catalogue entry 92). The Model axis is not tagged (it is a
    property of the network, not of the objective).
    """
    table: dict[str, dict[str, list[str]]] = {
        axis: {v: [] for v in values} for axis, values in {**AXES, **OPTIONAL_AXES}.items()
    }
    for c in list_components(kind=kind):
        for axis, values in taxonomy_of(c).items():
            for v in values:
                table[axis][v].append(c.name)
    return table
