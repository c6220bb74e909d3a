"""Label and field selectors, as apimachinery's pkg/labels and pkg/fields.

Label selectors come as strings (``?labelSelector=a=b,c in (x,y),!d``) or as
``metav1.LabelSelector`` objects (matchLabels/matchExpressions).  Field
selectors are the simpler ``a=b,c!=d`` syntax with ``\\`` escaping.  Parse errors
raise :class:`SelectorError` whose message is the one apimachinery produces.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from kubelite.api.field import FieldError, Path, forbidden, go_quote, invalid, required
from kubelite.api.meta import is_qualified_name, is_valid_label_value


class SelectorError(ValueError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# selection.Operator values
IN = "in"
NOT_IN = "notin"
EQUALS = "="
DOUBLE_EQUALS = "=="
NOT_EQUALS = "!="
EXISTS = "exists"
DOES_NOT_EXIST = "!"
GREATER_THAN = "gt"
LESS_THAN = "lt"

BINARY_OPERATORS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN)
UNARY_OPERATORS = (EXISTS, DOES_NOT_EXIST)
VALID_REQUIREMENT_OPERATORS = BINARY_OPERATORS + UNARY_OPERATORS

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1


def _parse_int64(s: str) -> int | None:
    """strconv.ParseInt(s, 10, 64)."""
    body = s[1:] if s[:1] in ("+", "-") else s
    if not body or not all(c in "0123456789" for c in body):
        return None
    v = int(s)
    return v if _INT64_MIN <= v <= _INT64_MAX else None


def _go_json(value: Any) -> str:
    """encoding/json rendering (used by field.Error for non-scalar bad values)."""
    s = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _invalid_msg(path: str, value: Any, detail: str) -> str:
    """field.Invalid(...).Error() where a nil *Path renders as "<nil>"."""
    shown = go_quote(value) if isinstance(value, str) else _go_json(value)
    return f"{path}: Invalid value: {shown}: {detail}"


def _aggregate(msgs: list[str]) -> str:
    uniq: list[str] = []
    for m in msgs:
        if m not in uniq:
            uniq.append(m)
    if len(uniq) == 1:
        return uniq[0]
    return "[" + ", ".join(uniq) + "]"


def _validate_label_key(key: str, path: str) -> str | None:
    errs = is_qualified_name(key)
    if errs:
        return _invalid_msg(path, key, "; ".join(errs))
    return None


# ---------------------------------------------------------------------------------------------
# label selectors
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    @classmethod
    def new(cls, key: str, op: str, values: Iterable[str] | None = None, path: str | None = None) -> Requirement:
        """labels.NewRequirement: validates and raises SelectorError with the aggregate message."""
        vals = list(values) if values is not None else []
        base = path or ""
        key_path = f"{base}.key" if base else "key"
        value_path = f"{base}.values" if base else "values"
        errs: list[str] = []
        if (m := _validate_label_key(key, key_path)) is not None:
            errs.append(m)
        vals_shown: Any = vals if vals else None  # Go passes a nil slice for "no values"
        if op in (IN, NOT_IN):
            if not vals:
                errs.append(_invalid_msg(value_path, vals_shown, "for 'in', 'notin' operators, values set can't be empty"))
        elif op in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
            if len(vals) != 1:
                errs.append(_invalid_msg(value_path, vals_shown, "exact-match compatibility requires one single value"))
        elif op in (EXISTS, DOES_NOT_EXIST):
            if vals:
                errs.append(_invalid_msg(value_path, vals, "values set must be empty for exists and does not exist"))
        elif op in (GREATER_THAN, LESS_THAN):
            if len(vals) != 1:
                errs.append(_invalid_msg(value_path, vals_shown,
                                         "for 'Gt', 'Lt' operators, exactly one value is required"))
            for i, v in enumerate(vals):
                if _parse_int64(v) is None:
                    errs.append(_invalid_msg(f"{value_path}[{i}]", v,
                                             "for 'Gt', 'Lt' operators, the value must be an integer"))
        else:
            supported = ", ".join(go_quote(o) for o in VALID_REQUIREMENT_OPERATORS)
            errs.append(f"{base + '.' if base else ''}operator: Unsupported value: {_go_json(op)}: "
                        f"supported values: {supported}")
        for i, v in enumerate(vals):
            lv = is_valid_label_value(v)
            if lv:
                errs.append(_invalid_msg(f"{value_path}[{i}][{key}]", v, "; ".join(lv)))
        if errs:
            raise SelectorError(_aggregate(errs))
        return cls(key, op, tuple(vals))

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        if op in (GREATER_THAN, LESS_THAN):
            if self.key not in labels or len(self.values) != 1:
                return False
            lv = _parse_int64(str(labels[self.key]))
            rv = _parse_int64(self.values[0])
            if lv is None or rv is None:
                return False
            return lv > rv if op == GREATER_THAN else lv < rv
        return False

    def __str__(self) -> str:
        op = self.operator
        s = ("!" if op == DOES_NOT_EXIST else "") + self.key
        sym = {EQUALS: "=", DOUBLE_EQUALS: "==", NOT_EQUALS: "!=", IN: " in ", NOT_IN: " notin ",
               GREATER_THAN: ">", LESS_THAN: "<"}
        if op in (EXISTS, DOES_NOT_EXIST):
            return s
        s += sym.get(op, "")
        vals = self.values[0] if len(self.values) == 1 else ",".join(sorted(self.values))
        if op in (IN, NOT_IN):
            return f"{s}({vals})"
        return s + vals


class LabelSelector:
    """A parsed label selector: an AND of requirements (sorted by key)."""

    __slots__ = ("requirements", "nothing")

    def __init__(self, requirements: Iterable[Requirement] = (), nothing: bool = False) -> None:
        self.requirements: list[Requirement] = sorted(requirements, key=lambda r: r.key)
        self.nothing = nothing

    @classmethod
    def everything(cls) -> LabelSelector:
        return cls()

    @classmethod
    def match_nothing(cls) -> LabelSelector:
        return cls(nothing=True)

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        lbls = labels or {}
        return all(r.matches(lbls) for r in self.requirements)

    def empty(self) -> bool:
        """True when the selector does not restrict anything (Everything)."""
        return not self.nothing and not self.requirements

    def requires_exact_match(self, label: str) -> str | None:
        """The single value ``label`` must have (=, == or a one-value in), else None."""
        if self.nothing:
            return None
        for r in self.requirements:
            if r.key == label:
                if r.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1:
                    return r.values[0]
                return None
        return None

    exact = requires_exact_match

    def __str__(self) -> str:
        if self.nothing:
            return ""
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return f"LabelSelector({str(self)!r})" if not self.nothing else "LabelSelector(<nothing>)"

    def __bool__(self) -> bool:
        return True


# --- lexer/parser (labels.Parse) -------------------------------------------------------------

_ERROR, _EOS, _CLOSE, _COMMA, _NOT, _DEQ, _EQ, _GT, _ID, _IN, _LT, _NEQ, _NOTIN, _OPEN = range(14)
_STRING2TOKEN = {")": _CLOSE, ",": _COMMA, "!": _NOT, "==": _DEQ, "=": _EQ, ">": _GT, "in": _IN,
                 "<": _LT, "!=": _NEQ, "notin": _NOTIN, "(": _OPEN}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")


def _lex(s: str) -> list[tuple[int, str]]:
    items: list[tuple[int, str]] = []
    pos = 0
    n = len(s)
    while True:
        while pos < n and s[pos] in _WHITESPACE:
            pos += 1
        if pos >= n or s[pos] == "\x00":
            items.append((_EOS, ""))
            return items
        if s[pos] in _SPECIAL:
            buf = ""
            last: tuple[int, str] | None = None
            while pos < n and s[pos] in _SPECIAL:
                buf += s[pos]
                if buf in _STRING2TOKEN:
                    last = (_STRING2TOKEN[buf], buf)
                    pos += 1
                elif last is not None:
                    break
                else:
                    pos += 1
            items.append(last if last is not None else (_ERROR, f"error expected: keyword found '{buf}'"))
        else:
            start = pos
            while pos < n and s[pos] not in _SPECIAL and s[pos] not in _WHITESPACE and s[pos] != "\x00":
                pos += 1
            word = s[start:pos]
            items.append((_STRING2TOKEN.get(word, _ID), word))


class _Parser:
    def __init__(self, s: str) -> None:
        self.items = _lex(s)
        self.pos = 0

    def lookahead(self, values: bool) -> tuple[int, str]:
        tok, lit = self.items[self.pos]
        if values and tok in (_IN, _NOTIN):
            tok = _ID
        return tok, lit

    def consume(self, values: bool) -> tuple[int, str]:
        tok, lit = self.lookahead(values)
        self.pos += 1
        return tok, lit

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self.lookahead(True)
            if tok in (_ID, _NOT):
                try:
                    r = self.parse_requirement()
                except SelectorError as e:
                    raise SelectorError(f"unable to parse requirement: {e.message}") from None
                reqs.append(r)
                t, lit2 = self.consume(True)
                if t == _EOS:
                    return reqs
                if t == _COMMA:
                    t2, l2 = self.lookahead(True)
                    if t2 not in (_ID, _NOT):
                        raise SelectorError(f"found '{l2}', expected: identifier after ','")
                else:
                    raise SelectorError(f"found '{lit2}', expected: ',' or 'end of string'")
            elif tok == _EOS:
                return reqs
            else:
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def parse_requirement(self) -> Requirement:
        key, op = self.parse_key_and_infer_operator()
        if op in (EXISTS, DOES_NOT_EXIST):
            return Requirement.new(key, op, [])
        op = self.parse_operator()
        if op in (IN, NOT_IN):
            values = self.parse_values()
        else:
            values = self.parse_exact_value()
        return Requirement.new(key, op, sorted(values))

    def parse_key_and_infer_operator(self) -> tuple[str, str]:
        op = ""
        tok, lit = self.consume(True)
        if tok == _NOT:
            op = DOES_NOT_EXIST
            tok, lit = self.consume(True)
        if tok != _ID:
            raise SelectorError(f"found '{lit}', expected: identifier")
        if (m := _validate_label_key(lit, "<nil>")) is not None:
            raise SelectorError(m)
        t, _ = self.lookahead(True)
        if t in (_EOS, _COMMA) and op != DOES_NOT_EXIST:
            op = EXISTS
        return lit, op

    def parse_operator(self) -> str:
        tok, lit = self.consume(False)
        ops = {_IN: IN, _EQ: EQUALS, _DEQ: DOUBLE_EQUALS, _GT: GREATER_THAN, _LT: LESS_THAN,
               _NOTIN: NOT_IN, _NEQ: NOT_EQUALS}
        if tok not in ops:
            raise SelectorError(f"found '{lit}', expected: {', '.join(BINARY_OPERATORS)}")
        return ops[tok]

    def parse_values(self) -> set[str]:
        tok, lit = self.consume(True)
        if tok != _OPEN:
            raise SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead(True)
        if tok in (_ID, _COMMA):
            s = self.parse_identifiers_list()
            tok2, _ = self.consume(True)
            if tok2 != _CLOSE:
                raise SelectorError(f"found '{lit}', expected: ')'")
            return s
        if tok == _CLOSE:
            self.consume(True)
            return {""}
        raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")

    def parse_identifiers_list(self) -> set[str]:
        s: set[str] = set()
        while True:
            tok, lit = self.consume(True)
            if tok == _ID:
                s.add(lit)
                tok2, lit2 = self.lookahead(True)
                if tok2 == _COMMA:
                    continue
                if tok2 == _CLOSE:
                    return s
                raise SelectorError(f"found '{lit2}', expected: ',' or ')'")
            if tok == _COMMA:
                if not s:
                    s.add("")
                tok2, _ = self.lookahead(True)
                if tok2 == _CLOSE:
                    s.add("")
                    return s
                if tok2 == _COMMA:
                    s.add("")
                continue
            raise SelectorError(f"found '{lit}', expected: ',', or identifier")

    def parse_exact_value(self) -> set[str]:
        tok, _ = self.lookahead(True)
        if tok in (_EOS, _COMMA):
            return {""}
        tok, lit = self.consume(True)
        if tok == _ID:
            return {lit}
        raise SelectorError(f"found '{lit}', expected: identifier")


def parse_label_selector(s: str) -> LabelSelector:
    """labels.Parse: ``a=b,c!=d,e in (x,y),f notin (z),g,!h`` (also ``==``, ``>``, ``<``)."""
    return LabelSelector(_Parser(s).parse())


def selector_from_set(labels: Mapping[str, str] | None) -> LabelSelector:
    """labels.SelectorFromSet (no validation)."""
    return LabelSelector(Requirement(k, EQUALS, (v,)) for k, v in (labels or {}).items())


# --- metav1.LabelSelector objects ------------------------------------------------------------

_OBJECT_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def label_selector_from_object(sel: Mapping[str, Any] | None) -> LabelSelector:
    """metav1.LabelSelectorAsSelector: None matches nothing, {} matches everything."""
    if sel is None:
        return LabelSelector.match_nothing()
    match_labels = sel.get("matchLabels") or {}
    exprs = sel.get("matchExpressions") or []
    if not match_labels and not exprs:
        return LabelSelector.everything()
    reqs: list[Requirement] = []
    for k, v in match_labels.items():
        reqs.append(Requirement.new(k, EQUALS, [v if isinstance(v, str) else str(v)]))
    for expr in exprs:
        expr = expr or {}
        op_name = expr.get("operator") or ""
        if op_name not in _OBJECT_OPERATORS:
            raise SelectorError(f"{go_quote(str(op_name))} is not a valid label selector operator")
        reqs.append(Requirement.new(expr.get("key") or "", _OBJECT_OPERATORS[op_name], list(expr.get("values") or [])))
    return LabelSelector(reqs)


def validate_label_selector(sel: Mapping[str, Any] | None, path: Path,
                            allow_invalid_label_value: bool = False,
                            allow_unknown_operator: bool = False) -> list[FieldError]:
    """metav1 validation.ValidateLabelSelector."""
    errs: list[FieldError] = []
    if sel is None:
        return errs
    match_labels = sel.get("matchLabels") or {}
    for k, v in match_labels.items():
        errs.extend(invalid(path.child("matchLabels"), k, m) for m in is_qualified_name(k))
        val = v if isinstance(v, str) else str(v)
        errs.extend(invalid(path.child("matchLabels"), val, m) for m in is_valid_label_value(val))
    for i, expr in enumerate(sel.get("matchExpressions") or []):
        errs.extend(validate_label_selector_requirement(expr or {}, path.child("matchExpressions").index(i),
                                                        allow_invalid_label_value, allow_unknown_operator))
    return errs


def validate_label_selector_requirement(expr: Mapping[str, Any], path: Path,
                                        allow_invalid_label_value: bool = False,
                                        allow_unknown_operator: bool = False) -> list[FieldError]:
    errs: list[FieldError] = []
    op = expr.get("operator") or ""
    values = list(expr.get("values") or [])
    if op in ("In", "NotIn"):
        if not values:
            errs.append(required(path.child("values"), "must be specified when `operator` is 'In' or 'NotIn'"))
    elif op in ("Exists", "DoesNotExist"):
        if values:
            errs.append(forbidden(path.child("values"),
                                  "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
    elif not allow_unknown_operator:
        errs.append(invalid(path.child("operator"), op, "not a valid selector operator"))
    key = expr.get("key") or ""
    errs.extend(invalid(path.child("key"), key, m) for m in is_qualified_name(key))
    if not allow_invalid_label_value:
        for i, v in enumerate(values):
            val = v if isinstance(v, str) else str(v)
            errs.extend(invalid(path.child("values").index(i), val, m) for m in is_valid_label_value(val))
    return errs


# ---------------------------------------------------------------------------------------------
# field selectors (fields.ParseSelector)
# ---------------------------------------------------------------------------------------------


def escape_field_value(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def unescape_field_value(s: str) -> str:
    if not any(c in s for c in "\\,="):
        return s
    out: list[str] = []
    in_slash = False
    for c in s:
        if in_slash:
            if c in "\\,=":
                out.append(c)
            else:
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{c}")
            in_slash = False
            continue
        if c == "\\":
            in_slash = True
        elif c in ",=":
            raise SelectorError(f"invalid field selector: unescaped character in value: {ord(c)}")
        else:
            out.append(c)
    if in_slash:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(s: str) -> list[str]:
    if not s:
        return []
    terms: list[str] = []
    start = 0
    in_slash = False
    for i, c in enumerate(s):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(s[start:i])
            start = i + 1
    terms.append(s[start:])
    return terms


_TERM_OPERATORS = ("!=", "==", "=")


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in _TERM_OPERATORS:
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


FieldTransform = Callable[[str, str], tuple[str, str]]


class FieldSelector:
    """An AND of ``field=value`` / ``field!=value`` terms (``==`` is stored as ``=``)."""

    __slots__ = ("requirements",)

    def __init__(self, requirements: Iterable[tuple[str, str, str]] = ()) -> None:
        self.requirements: list[tuple[str, str, str]] = list(requirements)

    def matches(self, fields: Mapping[str, str]) -> bool:
        for f, op, v in self.requirements:
            have = fields.get(f, "")
            if have is None:
                have = ""
            if (have == v) != (op == "="):
                return False
        return True

    def fields(self) -> AbstractSet[str]:
        """The field names used, set-like but ordered as upstream's Transform visits them (sorted
        terms), so the first unsupported one is the one Kubernetes reports."""
        return dict.fromkeys(f for f, _, _ in self.requirements).keys()

    def exact(self, field: str) -> str | None:
        """fields.Selector.RequiresExactMatch: the value of the first ``field=value`` term."""
        for f, op, v in self.requirements:
            if f == field and op == "=":
                return v
        return None

    requires_exact_match = exact

    def empty(self) -> bool:
        return not self.requirements

    def transform(self, fn: FieldTransform) -> FieldSelector:
        """Selector.Transform: rewrite (field, value); fn may raise SelectorError."""
        out: list[tuple[str, str, str]] = []
        for f, op, v in self.requirements:
            nf, nv = fn(f, v)
            if nf or nv:
                out.append((nf, op, nv))
        return FieldSelector(out)

    def __str__(self) -> str:
        return ",".join(f"{f}{op}{escape_field_value(v)}" for f, op, v in self.requirements)

    def __repr__(self) -> str:
        return f"FieldSelector({str(self)!r})"


def parse_field_selector(s: str) -> FieldSelector:
    """fields.ParseSelector."""
    parts = sorted(_split_terms(s))
    reqs: list[tuple[str, str, str]] = []
    for part in parts:
        if part == "":
            continue
        split = _split_term(part)
        if split is None:
            raise SelectorError(f"invalid selector: '{s}'; can't understand '{part}'")
        lhs, op, rhs = split
        value = unescape_field_value(rhs)
        # An empty term ("=") is kept: the server's Transform still asks about field "" (upstream
        # answers "field label not supported: "); transform() then drops it as Everything.
        reqs.append((lhs, "!=" if op == "!=" else "=", value))
    return FieldSelector(reqs)
