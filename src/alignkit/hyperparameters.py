"""Valid ranges of objective hyper-parameters, declared with their defaults and checked once per run.

An objective declares a range per hyper-parameter at registration (``register_objective(..., ranges={"beta":
"(0, inf)"})``); a hyper-parameter it does not declare takes the range of its *name* from :data:`DEFAULT_RANGES`
(``beta > 0`` wherever it appears). ``Objective.resolve`` coerces and checks every value against its range, so
``--beta -1`` (the inverted objective), ``--beta 0`` (a zero gradient) and ``--beta nan`` are refused before a
model is loaded, with the objective, the hyper-parameter, the range and the value named.

Range notation: an interval ``"(0, inf)"``, ``"[0, 0.5)"``, ``"[1, inf)"`` (round = open, square = closed), or a
tuple of allowed values ``("sum", "mean")``. ``None`` is always allowed for a hyper-parameter whose default is
``None`` (it means "off"). Like the registry, this module imports nothing from torch or the rest of alignkit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alignkit.errors import HyperParameterError

_INTERVAL = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])\s*$")


@dataclass(frozen=True)
class Interval:
    """A real interval; ``low``/``high`` may be infinite. ``str`` gives the notation it was parsed from."""

    low: float
    high: float
    low_closed: bool
    high_closed: bool

    @classmethod
    def parse(cls, text: str) -> Interval:
        m = _INTERVAL.match(text)
        if m is None:
            raise ValueError(f"range {text!r} is not an interval like '(0, inf)' or '[0, 0.5)'")
        lo, hi = float(m.group(2)), float(m.group(3))
        if math.isnan(lo) or math.isnan(hi) or lo > hi:
            raise ValueError(f"range {text!r} is empty")
        return cls(lo, hi, m.group(1) == "[", m.group(4) == "]")

    def __contains__(self, value: float) -> bool:
        if math.isnan(value):
            return False
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below

    def __str__(self) -> str:
        def num(x: float) -> str:
            return "inf" if x == math.inf else "-inf" if x == -math.inf else f"{x:g}"

        return f"{'[' if self.low_closed else '('}{num(self.low)}, {num(self.high)}{']' if self.high_closed else ')'}"


Range = Interval | tuple[Any, ...]

# Ranges by name, for every objective that does not declare its own. A name belongs here only when the range holds
# for every registered objective that uses it (tests/test_hyperparameters.py checks each default lies in its range).
DEFAULT_RANGES: dict[str, str | tuple[Any, ...]] = {
    "beta": "(0, inf)",  # the KL / reward scale: 0 is a zero gradient, < 0 inverts the preference
    "label_smoothing": "[0, 0.5]",  # cDPO / robust DPO flip rate (TRL: 0 to 0.5); 0.5: the label-free limit
    "ld_alpha": "[0, 1]",  # LD-DPO: weight of the verbose part, 1 is plain DPO
    "f_alpha_divergence_coef": "(0, inf)",
    "f_divergence_type": ("reverse_kl", "forward_kl", "js_divergence", "alpha_divergence"),
    "desirable_weight": "(0, inf)",
    "undesirable_weight": "(0, inf)",
    "positive_weight": "[0, inf)",
    "negative_weight": "[0, inf)",
    "cpo_alpha": "[0, inf)",
    "lambda_nll": "[0, inf)",
    "kl_coef": "[0, inf)",
    "sft_weight": "[0, inf)",
    "synergy_weight": "[0, inf)",
    "ntl_weight": "[0, inf)",
    "center_rewards_coefficient": "[0, inf)",
    "eta": "[0, inf)",
    "eps": "(0, inf)",
    "temperature": "(0, inf)",
    "discopop_tau": "(0, inf)",
    "clip": "(0, inf)",
}


def parse_range(spec: str | tuple[Any, ...] | Interval) -> Range:
    if isinstance(spec, Interval):
        return spec
    if isinstance(spec, str):
        return Interval.parse(spec)
    if isinstance(spec, (tuple, list, frozenset, set)):
        return tuple(spec)
    raise TypeError(f"a range is an interval string like '(0, inf)' or a tuple of values; got {spec!r}")


def ranges_for(
    objective: str,
    defaults: Mapping[str, Any],
    declared: Mapping[str, Any] | None,
    skip: frozenset[str] = frozenset(),
) -> dict[str, Range]:
    """The range of every hyper-parameter of ``objective``: declared ones, else :data:`DEFAULT_RANGES` by name.

    A declared range must name a hyper-parameter of the objective and hold its default (else ``ValueError`` at
    registration). ``skip``: names without a range (running state).
    """
    declared = dict(declared or {})
    unknown = sorted(set(declared) - set(defaults))
    if unknown:
        raise ValueError(
            f"{objective}: ranges= names {unknown}, which are not hyper-parameters of the function"
        )
    out: dict[str, Range] = {}
    for name, default in defaults.items():
        if name in skip:
            continue
        spec = declared.get(name, DEFAULT_RANGES.get(name))
        if spec is None:
            continue
        rng = parse_range(spec)
        if default is not None and not _in_range(default, rng):
            raise ValueError(
                f"{objective}: the default {name}={default!r} lies outside its range {describe(rng)}"
            )
        out[name] = rng
    return out


def describe(rng: Range) -> str:
    return str(rng) if isinstance(rng, Interval) else "one of " + ", ".join(map(repr, rng))


def _in_range(value: Any, rng: Range) -> bool:
    if isinstance(rng, Interval):
        return _is_number(value) and float(value) in rng
    return value in rng


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def coerce(objective: str, name: str, value: Any, default: Any, rng: Range | None = None) -> Any:
    """``value`` as the type of ``default``: numbers from strings (``"1e-5"``, which YAML reads as a string) and
    ints to floats; ``"true"``/``"false"`` to bools. A value of another type than a scalar default is an error.
    A ``None`` default with an interval range takes a number (or ``None``)."""
    flag = "--" + name.replace("_", "-")
    if default is None and isinstance(rng, Interval) and value is not None:
        default = 0.0  # "off" by default, a real number when set
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise HyperParameterError(f"objective {objective!r}: {name} ({flag}) takes true/false; got {value!r}")
    if _is_number(default):
        if isinstance(value, str):
            try:
                value = float(value) if not isinstance(default, int) else _int_or_float(value)
            except ValueError:
                raise HyperParameterError(
                    f"objective {objective!r}: {name} ({flag}) takes a number; got {value!r}"
                ) from None
        if isinstance(value, bool) or not (_is_number(value) or _is_scalar_tensor(value)):
            raise HyperParameterError(
                f"objective {objective!r}: {name} ({flag}) takes a number; got {type(value).__name__} {value!r}"
            )
        if isinstance(default, float) and isinstance(value, int):
            value = float(value)
    return value


def _int_or_float(text: str) -> int | float:
    f = float(text)
    return int(f) if f.is_integer() and not any(c in text.lower() for c in ".en") else f


def _is_scalar_tensor(value: Any) -> bool:
    return type(value).__name__ in ("Tensor", "Parameter") and getattr(value, "ndim", None) == 0


def check(objective: str, name: str, value: Any, rng: Range, default: Any) -> None:
    """Raise :class:`HyperParameterError` naming the objective, hyper-parameter, range and value when out of range."""
    if value is None and default is None:
        return
    if _is_scalar_tensor(value):
        value = float(value)
    if not _in_range(value, rng):
        flag = "--" + name.replace("_", "-")
        raise HyperParameterError(
            f"objective {objective!r}: {name} ({flag}) must be in {describe(rng)}; got {value!r}"
        )
