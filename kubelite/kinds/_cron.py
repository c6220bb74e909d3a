"""CronJob schedules as upstream reads them: ``cron.ParseStandard`` of github.com/robfig/cron/v3
(five fields, month and weekday names, ``*``/``?``, ranges, steps, lists, the ``@yearly`` …
``@hourly`` descriptors, ``@every <duration>`` and a ``TZ=``/``CRON_TZ=`` prefix), with that
parser's error texts, which the apiserver returns verbatim in a CronJob's 422.

No Python library reports robfig's errors, so the parsing is written here; finding the next
run time is left to PyPI ``croniter`` (maintained), given the parsed fields re-spelled as
plain lists so that both agree on what each field means (robfig's ``N/step`` is ``N-max``,
weekday 7 is refused, and day-of-month/day-of-week combine with OR unless one is ``*``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

_MONTHS = {n: i + 1 for i, n in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                           "nov", "dec"))}
_DOWS = {n: i for i, n in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}


@dataclass(frozen=True)
class _Bounds:
    lo: int
    hi: int
    names: dict[str, int] | None = None


_FIELDS = (_Bounds(0, 59), _Bounds(0, 23), _Bounds(1, 31), _Bounds(1, 12, _MONTHS), _Bounds(0, 6, _DOWS))
_DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}


class CronError(ValueError):
    """A schedule robfig/cron refuses; ``str()`` is its message."""


def _go_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _atoi(expr: str) -> int:
    """mustParseInt: strconv.Atoi, then no negatives."""
    if not re.fullmatch(r"[+-]?[0-9]+", expr):
        raise CronError(f"failed to parse int from {expr}: strconv.Atoi: parsing {_go_quote(expr)}: invalid syntax")
    n = int(expr)
    if not -(2**63) <= n < 2**63:
        raise CronError(f"failed to parse int from {expr}: strconv.Atoi: parsing {_go_quote(expr)}: value out of "
                        "range")
    if n < 0:
        raise CronError(f"negative number ({n}) not allowed: {expr}")
    return n


def _int_or_name(expr: str, b: _Bounds) -> int:
    if b.names is not None and expr.lower() in b.names:
        return b.names[expr.lower()]
    return _atoi(expr)


def _range(expr: str, b: _Bounds) -> tuple[set[int], bool]:
    """getRange: the values of one comma-separated part, and whether it is a plain ``*``."""
    range_and_step = expr.split("/")
    low_high = range_and_step[0].split("-")
    star = False
    if low_high[0] in ("*", "?"):
        start, end, star = b.lo, b.hi, True
    else:
        start = _int_or_name(low_high[0], b)
        if len(low_high) == 1:
            end = start
        elif len(low_high) == 2:
            end = _int_or_name(low_high[1], b)
        else:
            raise CronError(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _atoi(range_and_step[1])
        if len(low_high) == 1:  # "N/step" is "N-max/step"
            end = b.hi
        if step > 1:
            star = False
    else:
        raise CronError(f"too many slashes: {expr}")
    if start < b.lo:
        raise CronError(f"beginning of range ({start}) below minimum ({b.lo}): {expr}")
    if end > b.hi:
        raise CronError(f"end of range ({end}) above maximum ({b.hi}): {expr}")
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise CronError(f"step of range should be a positive number: {expr}")
    return set(range(start, end + 1, step)), star


def _field(text: str, b: _Bounds) -> tuple[set[int], bool]:
    values: set[int] = set()
    star = False
    for part in (p for p in text.split(",") if p):
        v, s = _range(part, b)
        values |= v
        star = star or s
    return values, star


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DUR_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([^0-9.]*)")


def go_duration(text: str) -> float:
    """time.ParseDuration, in seconds (its error texts too)."""
    orig, s = text, text
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise CronError(f"time: invalid duration {_go_quote(orig)}")
    total = 0.0
    while s:
        m = _DUR_PART.match(s)
        num, unit = (m.group(1), m.group(2)) if m else ("", "")
        if num in ("", "."):
            raise CronError(f"time: invalid duration {_go_quote(orig)}")
        if not unit:
            raise CronError(f"time: missing unit in duration {_go_quote(orig)}")
        if unit not in _UNITS:
            raise CronError(f"time: unknown unit {_go_quote(unit)} in duration {_go_quote(orig)}")
        total += float(num) * _UNITS[unit]
        s = s[len(num) + len(unit):]
    return sign * total


def load_location(name: str) -> tzinfo | None:
    """time.LoadLocation: "" and "UTC" are UTC, "Local" the host's zone (None), else the IANA zone."""
    if name in ("", "UTC"):
        return ZoneInfo("UTC")
    if name == "Local":
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise CronError(f"unknown time zone {name}") from exc


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: either a cron expression (``expr``, croniter's spelling) or an
    ``@every`` interval in whole seconds."""

    expr: str = ""
    every: float = 0.0
    location: tzinfo | None = None  # None: the host's local time, as robfig's time.Local

    def next(self, t: datetime) -> datetime | None:
        """Schedule.Next: the first activation strictly after ``t`` (an aware datetime); None
        for a schedule that never comes (robfig's zero time, e.g. "0 0 31 2 *")."""
        if self.every:
            return t + timedelta(seconds=self.every) - timedelta(microseconds=t.microsecond)
        local = t.astimezone(self.location) if self.location is not None else t.astimezone()
        try:
            nxt: datetime = croniter(self.expr, local.replace(microsecond=0)).get_next(datetime)
        except CroniterBadDateError:
            return None
        return nxt


def _spell(values: set[int], star: bool, b: _Bounds) -> str:
    return "*" if star and values == set(range(b.lo, b.hi + 1)) else ",".join(str(v) for v in sorted(values))


def parse_standard(spec: str) -> Schedule:
    """cron.ParseStandard."""
    if not spec:
        raise CronError("empty spec string")
    loc: tzinfo | None = None
    if spec.startswith(("TZ=", "CRON_TZ=")):
        i, eq = spec.find(" "), spec.find("=")
        name = spec[eq + 1:i] if i >= 0 else spec[eq + 1:]
        try:
            loc = load_location(name)
        except CronError as exc:
            raise CronError(f"provided bad location {name}: {exc}") from exc
        spec = spec[i:].strip() if i >= 0 else ""
    if spec.startswith("@"):
        if spec in _DESCRIPTORS:
            return Schedule(expr=_DESCRIPTORS[spec], location=loc)
        if spec.startswith("@every "):
            try:
                d = go_duration(spec[len("@every "):])
            except CronError as exc:
                raise CronError(f"failed to parse duration {spec}: {exc}") from exc
            return Schedule(every=max(float(int(d)), 1.0), location=loc)
        raise CronError(f"unrecognized descriptor: {spec}")
    fields = spec.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    parsed = [_field(text, b) for text, b in zip(fields, _FIELDS, strict=True)]
    return Schedule(expr=" ".join(_spell(v, s, b) for (v, s), b in zip(parsed, _FIELDS, strict=True)), location=loc)


__all__ = ["CronError", "Schedule", "go_duration", "load_location", "parse_standard"]
