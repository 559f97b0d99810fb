"""Long-form ASR: transcripts that mark primary and non-primary speaker groups."""

from __future__ import annotations

from collections.abc import Sequence

from alignkit.registry import register

PAPER = "Improved Long-Form Speech Recognition by Jointly Modeling the Primary and Non-primary Speakers"
ARXIV = "2312.11123"
TAGS = {"primary": "<pri>", "non-primary": "<npri>"}


@register(
    name="speaker_group_targets",
    kind="data_rule",
    family="audio",
    paper=PAPER,
    arxiv=ARXIV,
    tags=("asr", "long-form", "modality:audio"),
    verification="reconstruction",
)
def insert_speaker_group_tokens(
    segments: Sequence[str], groups: Sequence[str], *, tags: dict[str, str] | None = None
) -> str:
    """Improved Long-Form Speech Recognition by Jointly Modeling the Primary and Non-primary Speakers
    (arXiv:2312.11123, id unconfirmed): the training transcript carries a speaker-group token wherever the group
    changes, so the model transcribes both groups jointly instead of learning to drop background speech (the
    long-form deletion problem); the tokens are stripped at inference. No extra data or cost.

    Formula:
        target = concat over segments s_k of ( [tag(g_k) if k == 0 or g_k != g_{k-1}] + words(s_k) )
        strip(target) = the plain transcript

    Hyper-parameters:
        tags: None — group -> token; None = {"primary": "<pri>", "non-primary": "<npri>"} (ours; the paper's
            token spellings were not read).

    Verification: reconstruction — from the abstract (speakers grouped as primary / non-primary, modelled
    alongside the transcript tokens); where the tokens go is our reading. No full pipeline is provided here (no
    ASR model): this is a function of the data the method consumes, tested on small synthetic transcripts.
    """
    tags = tags or TAGS
    if len(segments) != len(groups):
        raise ValueError(f"segments ({len(segments)}) and groups ({len(groups)}) must have the same length")
    out: list[str] = []
    prev = None
    for text, group in zip(segments, groups, strict=True):
        if group not in tags:
            raise ValueError(f"unknown speaker group {group!r}; known: {sorted(tags)}")
        if group != prev:
            out.append(tags[group])
            prev = group
        out.extend(text.split())
    return " ".join(out)


def strip_speaker_group_tokens(transcript: str, *, tags: dict[str, str] | None = None) -> str:
    """The transcript without speaker-group tokens (what the user sees)."""
    special = set((tags or TAGS).values())
    return " ".join(w for w in transcript.split() if w not in special)
