"""The `template` line format of serial outputs: a Python format string.

Fields (see `SerialOutputConfig.template`):

    {total}         people in the whole view
    {zones}         every zone as name=count, joined by `;`   e.g. `A=12;B=3`
    {levels}        every zone as name=level, joined by `;`   e.g. `A=high;B=low`
    {count[NAME]}   people in zone NAME
    {level[NAME]}   crowding level of zone NAME (`unknown` when stale)
    {code[NAME]}    level of zone NAME as a number: 0 no data, 1 the least crowded level, ...
    {car[NAME]}     people in car NAME (the [[cars]], or each zone a car)
    {best}          the recommended (least crowded) car, `--` when none

Counts are whole people: a sign shows people, not fractions, so a smoothed
12.5 prints as `13` (rounded half up). A format spec that asks for decimals
(`{total:.1f}`, types e, f, g, %) gets the smoothed value with its decimal
instead. A count that is not known (stale data) prints as `--`, padded and
aligned by the spec's width and alignment (right-aligned by default, like a
number), so `{count[A]:>3}` gives ` 12` or ` --` and fixed columns stay
fixed. `{zones}`, `{levels}` and `{level[NAME]}` take string specs
(`{level[A]:.1}` prints the level's first letter). Conversions (`!r`) and
positional fields (`{}`) are not allowed.

    >>> from crowdsign.sinks.base import Update
    >>> u = Update(t=0.0, frame=1, total=14.6, zones={"A": 12.4, "B": 2.2},
    ...            levels={"A": "high", "B": "low"}, fps=10.0, infer_ms=30.0)
    >>> render_template("{zones}|{count[A]:>3}|{level[B]}|{total:.1f}", u)
    'A=12;B=2| 12|low|14.6'
"""

from __future__ import annotations

import math
import re
import string
from typing import Any, Mapping, Optional, Sequence

from crowdsign.sinks.base import Update

STALE_COUNT = "--"
FIELDS = ("total", "zones", "levels", "count[NAME]", "level[NAME]", "code[NAME]",
          "car[NAME]", "best")

_SIMPLE = ("total", "zones", "levels", "best")
_INDEXED = re.compile(r"^(count|level|code|car)\[([^\[\]]*)\]$")
# [[fill]align][sign][z][#][0][width][grouping][.precision][type]
_SPEC = re.compile(r"^(?:(?P<fill>.)?(?P<align>[<>=^]))?(?P<sign>[-+ ]?)z?#?(?P<zero>0?)"
                   r"(?P<width>\d*)[,_]?(?:\.\d+)?(?P<type>[a-zA-Z%]?)$", re.DOTALL)


class TemplateError(ValueError):
    """The template names an unknown field or zone, or has a bad spec."""


def whole_people(value: float) -> int:
    """A count rounded to the nearest person, halves up (12.5 -> 13)."""
    return int(math.floor(value + 0.5))


class Count:
    """A count as a template shows it: whole people, `--` when unknown."""

    __slots__ = ("value",)

    def __init__(self, value: Optional[float]):
        # inf / NaN (a broken model) is not a number of people: shown as unknown
        self.value = value if value is None or math.isfinite(value) else None

    def __format__(self, spec: str) -> str:
        if self.value is None:
            return _format_dash(spec)
        m = _SPEC.match(spec)
        if m and m.group("type") and m.group("type") in "eEfFgG%":
            return format(float(self.value), spec)
        return format(whole_people(self.value), spec)

    def __str__(self) -> str:
        return format(self, "")


def _format_dash(spec: str) -> str:
    """`--` with the width, fill and alignment of a numeric spec."""
    m = _SPEC.match(spec)
    if not m:
        raise ValueError(f"Invalid format specifier {spec!r}")
    fill = m.group("fill") or " "
    align = m.group("align") or ">"
    align = ">" if align == "=" else align
    return format(STALE_COUNT, f"{fill}{align}{m.group('width')}")


def _joined(pairs: Mapping[str, Any]) -> str:
    return ";".join(f"{name}={value}" for name, value in pairs.items())


class _Lookup(Mapping[str, Any]):
    """`count[NAME]` / `level[NAME]`: a zone name to its value, with a clear error."""

    def __init__(self, what: str, values: Mapping[str, Any]):
        self._what = what
        self._values = values

    def __getitem__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            known = ", ".join(self._values) or "none"
            kind = "car" if self._what == "car" else "zone"
            raise TemplateError(f"unknown {kind} {name!r} in {{{self._what}[{name}]}} "
                                f"({kind}s: {known})") from None

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class _Formatter(string.Formatter):
    """string.Formatter with the template's field names and nothing else."""

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]):
        if field_name in _SIMPLE:
            return kwargs[field_name], field_name
        m = _INDEXED.match(field_name)
        if m:
            return kwargs[m.group(1)][m.group(2)], field_name
        if field_name.isdigit():   # `{}` arrives here numbered, as `0`
            raise TemplateError("positional field {} or {N}: name a field ("
                                + ", ".join("{" + f + "}" for f in FIELDS) + ")")
        raise TemplateError(f"unknown field {{{field_name}}} (known: "
                            + ", ".join("{" + f + "}" for f in FIELDS) + ")")

    def convert_field(self, value: Any, conversion: Optional[str]) -> Any:
        if conversion is not None:
            raise TemplateError(f"conversion !{conversion} is not supported")
        return value

    def format_field(self, value: Any, format_spec: str) -> Any:
        try:
            return format(value, format_spec)
        except (ValueError, TypeError) as e:
            raise TemplateError(f"bad format spec {format_spec!r}: {e}") from None


_FORMATTER = _Formatter()


def _fields(update: Update) -> dict[str, Any]:
    counts = {name: Count(v) for name, v in update.zones.items()}
    return {
        "total": Count(update.total),
        "zones": _joined(counts),
        "levels": _joined(update.levels),
        "count": _Lookup("count", counts),
        "level": _Lookup("level", update.levels),
        "code": _Lookup("code", {z: update.codes.get(z, 0) for z in update.zones}),
        "car": _Lookup("car", {c: Count(v) for c, v in update.cars.items()}),
        "best": update.recommended if update.recommended is not None else STALE_COUNT,
    }


def render_template(template: str, update: Update) -> str:
    """The template filled in from `update`; raises TemplateError if it does not fit."""
    try:
        return _FORMATTER.vformat(template, (), _fields(update))
    except TemplateError:
        raise
    except (ValueError, KeyError, IndexError) as e:
        # string.Formatter's own parse errors, e.g. "Single '}' encountered".
        raise TemplateError(f"not a valid format string: {e}") from None


def sample_updates(zone_names: Sequence[str],
                   car_names: Optional[Sequence[str]] = None) -> tuple[Update, Update]:
    """A known and a stale update for these zones (and cars: default, one per
    zone), to try templates and encoders on before the daemon runs."""
    cars = list(car_names) if car_names is not None else list(zone_names)
    known = Update(t=0.0, frame=0, total=12.5, zones={z: 3.5 for z in zone_names},
                   levels={z: "low" for z in zone_names}, fps=0.0, infer_ms=0.0,
                   codes={z: 1 for z in zone_names}, cars={c: 3.5 for c in cars},
                   recommended=cars[0] if cars else None)
    return known, known.no_data()


def check_template(template: str, zone_names: list[str],
                   car_names: Optional[Sequence[str]] = None) -> Optional[str]:
    """None if `template` renders for these zones, else a one-line reason.

    The template is tried on a sample update with known counts, and again with
    stale (unknown) ones, so a spec that only fails on `--` is caught here.
    """
    try:
        for update in sample_updates(zone_names, car_names):
            render_template(template, update)
    except TemplateError as e:
        return str(e)
    return None
