"""metav1.Time and metav1.MicroTime as Go parses and prints them.

``Time.UnmarshalJSON`` is ``time.Parse(time.RFC3339, s)`` and ``MicroTime.UnmarshalJSON``
``time.Parse("2006-01-02T15:04:05.000000Z07:00", s)``; both marshal the UTC time again
(seconds, resp. microseconds). The parser below walks the layout as Go's ``time.Parse``
does (src/time/format.go) so that a bad value gets Go's exact message, e.g.
``parsing time "2024-13-01T00:00:00Z": month out of range`` or
``parsing time "x" as "2006-01-02T15:04:05Z07:00": cannot parse "x" as "2006"``.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

RFC3339 = "2006-01-02T15:04:05Z07:00"
RFC3339_MICRO = "2006-01-02T15:04:05.000000Z07:00"

# the layouts as Go's nextStdChunk splits them: (literal prefix or std element)
_CHUNKS = {
    RFC3339: ["2006", "-", "01", "-", "02", "T", "15", ":", "04", ":", "05", "Z07:00"],
    RFC3339_MICRO: ["2006", "-", "01", "-", "02", "T", "15", ":", "04", ":", "05", ".000000", "Z07:00"],
}
_STD = {"2006", "01", "02", "15", "04", "05", ".000000", "Z07:00"}


class TimeError(ValueError):
    """A Go time.ParseError; ``str()`` is Go's message."""


def _quote(s: str) -> str:
    """time.quote: like %q but non-ASCII and control bytes as \\x escapes."""
    out = ['"']
    for ch in s:
        if ord(ch) >= 0x80 or ord(ch) < 0x20:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
        else:
            if ch in '"\\':
                out.append("\\")
            out.append(ch)
    out.append('"')
    return "".join(out)


def _digits(s: str, n: int) -> int | None:
    if len(s) < n or not s[:n].isascii() or not s[:n].isdigit():
        return None
    return int(s[:n])


def _getnum(s: str, fixed: bool) -> tuple[int | None, str]:
    """time.getnum: one or two digits (two when ``fixed``)."""
    if not s[:1].isdigit() or not s[:1].isascii():
        return None, s
    if len(s) < 2 or not s[1].isdigit() or not s[1].isascii():
        if fixed:
            return None, s
        return int(s[0]), s[1:]
    return int(s[:2]), s[2:]


def parse(value: str, layout: str = RFC3339) -> datetime:
    """time.Parse for the two layouts metav1 uses; returns an aware UTC datetime."""
    v = value
    year = month = day = hour = minute = second = 0
    nsec = 0
    offset = 0
    range_err = ""

    def bad(elem: str, rest: str) -> TimeError:
        return TimeError(f"parsing time {_quote(value)} as {_quote(layout)}: cannot parse {_quote(rest)} as "
                         f"{_quote(elem)}")

    chunks = _CHUNKS[layout]
    for i, elem in enumerate(chunks):
        if elem not in _STD:
            if not v.startswith(elem):
                raise bad(elem, v)
            v = v[len(elem):]
            continue
        rest = v
        if elem == "2006":
            n = _digits(v, 4)
            if n is None:
                raise bad(elem, rest)
            year, v = n, v[4:]
        elif elem in ("01", "02", "04", "05"):
            n, v = _getnum(v, True)
            if n is None:
                raise bad(elem, rest)
            if elem == "01":
                month = n
                if not 1 <= n <= 12:
                    range_err = "month"
            elif elem == "02":
                day = n  # checked against the month below
            elif elem == "04":
                minute = n
                if n >= 60:
                    range_err = "minute"
            else:
                second = n
                if n >= 60:
                    range_err = "second"
                nxt = chunks[i + 1] if i + 1 < len(chunks) else ""
                # a fractional second that the layout does not spell is parsed anyway
                if len(v) >= 2 and v[0] in ".," and v[1].isdigit() and nxt != ".000000":
                    k = 2
                    while k < len(v) and v[k].isdigit():
                        k += 1
                    nsec = _nanos(v[1:k])
                    v = v[k:]
            if range_err:
                break
        elif elem == "15":
            n, v = _getnum(v, False)
            if n is None:
                raise bad(elem, rest)
            hour = n
            if n >= 24:
                range_err = "hour"
                break
        elif elem == ".000000":
            if len(v) < 7 or v[0] not in ".," or not v[1:7].isdigit() or not v[1:7].isascii():
                raise bad(elem, rest)
            nsec = _nanos(v[1:7])
            v = v[7:]
        else:  # Z07:00
            if v.startswith("Z"):
                v = v[1:]
                offset = 0
                continue
            if len(v) < 6 or v[0] not in "+-" or v[3] != ":":
                raise bad(elem, rest)
            hh, mm = _digits(v[1:3], 2), _digits(v[4:6], 2)
            if hh is None or mm is None:
                raise bad(elem, rest)
            if hh > 24:
                range_err = "time zone offset hour"
                break
            if mm > 60:
                range_err = "time zone offset minute"
                break
            offset = (hh * 3600 + mm * 60) * (-1 if v[0] == "-" else 1)
            v = v[6:]
    if range_err:
        raise TimeError(f"parsing time {_quote(value)}: {range_err} out of range")
    if v:
        raise TimeError(f"parsing time {_quote(value)}: extra text: {_quote(v)}")
    if day < 1 or day > (calendar.monthrange(year, month)[1] if year > 0 else 31):
        raise TimeError(f"parsing time {_quote(value)}: day out of range")
    try:
        t = datetime(year, month, day, hour, minute, second, nsec // 1000, tzinfo=UTC)
    except ValueError as exc:  # year 0 and friends
        raise TimeError(f"parsing time {_quote(value)}: day out of range") from exc
    return t - timedelta(seconds=offset)


def _nanos(frac: str) -> int:
    return int((frac + "000000000")[:9])


def format_time(t: datetime) -> str:
    """metav1.Time.MarshalJSON: RFC 3339 in UTC, whole seconds."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro(t: datetime) -> str:
    """metav1.MicroTime.MarshalJSON: RFC 3339 in UTC with microseconds."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_time(value: str) -> str:
    """The stored form of a metav1.Time string; raises :class:`TimeError`."""
    if len(value) == 20 and value[19] == "Z" and value[10] == "T":  # already canonical (fast path)
        try:
            datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
            return value
        except ValueError:
            pass
    return format_time(parse(value, RFC3339))


def canonical_micro(value: str) -> str:
    """The stored form of a metav1.MicroTime string; raises :class:`TimeError`."""
    return format_micro(parse(value, RFC3339_MICRO))


__all__ = ["RFC3339", "RFC3339_MICRO", "TimeError", "canonical_micro", "canonical_time", "format_micro",
           "format_time", "parse"]
