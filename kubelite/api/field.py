"""Field paths and field errors, as apimachinery's util/validation/field.

Validation walks an object with a :class:`Path` and returns a list of
:class:`FieldError`; it never stops at the first problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# (type string shown to users, cause reason in Status.details.causes)
REQUIRED = ("Required value", "FieldValueRequired")
INVALID = ("Invalid value", "FieldValueInvalid")
NOT_SUPPORTED = ("Unsupported value", "FieldValueNotSupported")
DUPLICATE = ("Duplicate value", "FieldValueDuplicate")
FORBIDDEN = ("Forbidden", "FieldValueForbidden")
TOO_LONG = ("Too long", "FieldValueTooLong")
TOO_MANY = ("Too many", "FieldValueTooMany")
NOT_FOUND = ("Not found", "FieldValueNotFound")
INTERNAL = ("Internal error", "InternalError")
TYPE_INVALID = ("Invalid value", "FieldValueTypeInvalid")

# Error types whose body never shows the bad value.
_NO_VALUE = {REQUIRED, FORBIDDEN, TOO_LONG, INTERNAL}
OMIT = object()  # a bad value that must not be printed


class Path:
    """An immutable field path such as ``spec.containers[0].image``."""

    __slots__ = ("_s",)

    def __init__(self, *names: str) -> None:
        self._s = ".".join(names)

    @classmethod
    def _raw(cls, s: str) -> Path:
        p = cls.__new__(cls)
        p._s = s
        return p

    def child(self, name: str, *more: str) -> Path:
        s = f"{self._s}.{name}" if self._s else name
        for m in more:
            s = f"{s}.{m}"
        return Path._raw(s)

    def index(self, i: int) -> Path:
        return Path._raw(f"{self._s}[{i}]")

    def key(self, k: str) -> Path:
        return Path._raw(f"{self._s}[{k}]")

    def __str__(self) -> str:
        return self._s

    def __repr__(self) -> str:
        return f"Path({self._s!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Path) and other._s == self._s

    def __hash__(self) -> int:
        return hash(self._s)


def _go_repr(value: Any) -> str:
    """Render a bad value the way Go's field.Error does (%q for strings, %v for scalars)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, list):
        return "[]string{" + ", ".join(go_quote(str(v)) for v in value) + "}" if all(
            isinstance(v, str) for v in value) else str(value)
    return str(value)


def go_quote(s: str) -> str:
    """Go's %q for a string (close enough for printable text)."""
    out = ['"']
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


@dataclass
class FieldError:
    type: tuple[str, str]
    field: str
    bad_value: Any = OMIT
    detail: str = ""

    def body(self) -> str:
        if self.type in _NO_VALUE or self.bad_value is OMIT:
            s = self.type[0]
        else:
            s = f"{self.type[0]}: {_go_repr(self.bad_value)}"
        if self.detail:
            s += f": {self.detail}"
        return s

    @property
    def reason(self) -> str:
        return self.type[1]

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}" if self.field else self.body()

    def cause(self) -> dict[str, str]:
        return {"reason": self.reason, "message": self.body(), "field": self.field}


def required(path: Path | str, detail: str = "") -> FieldError:
    return FieldError(REQUIRED, str(path), OMIT, detail)


def invalid(path: Path | str, value: Any, detail: str = "") -> FieldError:
    return FieldError(INVALID, str(path), value, detail)


def not_supported(path: Path | str, value: Any, valid: list[str] | tuple[str, ...]) -> FieldError:
    detail = ""
    if valid:
        detail = "supported values: " + ", ".join(go_quote(v) for v in valid)
    return FieldError(NOT_SUPPORTED, str(path), value, detail)


def duplicate(path: Path | str, value: Any) -> FieldError:
    return FieldError(DUPLICATE, str(path), value)


def forbidden(path: Path | str, detail: str) -> FieldError:
    return FieldError(FORBIDDEN, str(path), OMIT, detail)


def too_long(path: Path | str, max_len: int) -> FieldError:
    if max_len >= 0:
        detail = f"may not be more than {max_len} {'byte' if max_len == 1 else 'bytes'}"
    else:
        detail = "value is too long"
    return FieldError(TOO_LONG, str(path), OMIT, detail)


def too_many(path: Path | str, actual: int, max_n: int) -> FieldError:
    return FieldError(TOO_MANY, str(path), actual, f"must have at most {max_n} items")


def not_found(path: Path | str, value: Any) -> FieldError:
    return FieldError(NOT_FOUND, str(path), value)


def type_invalid(path: Path | str, value: Any, detail: str) -> FieldError:
    return FieldError(TYPE_INVALID, str(path), value, detail)


def aggregate_message(errs: list[FieldError]) -> str:
    """utilerrors.NewAggregate(...).Error(): one message, or ``[a, b]`` for several."""
    msgs: list[str] = []
    seen: set[str] = set()
    for e in errs:
        m = str(e)
        if m not in seen:
            seen.add(m)
            msgs.append(m)
    if len(msgs) == 1:
        return msgs[0]
    return "[" + ", ".join(msgs) + "]"
