"""PATCH bodies: RFC 6902 JSON patch, RFC 7386 merge patch and strategic merge patch.

Behaviour follows what a v1.37 kube-apiserver does, quirks included:

* JSON patch has the semantics of ``gopkg.in/evanphx/json-patch.v4`` (negative array
  indices, ``replace`` of a missing object key adds it, ``add`` without ``value`` adds
  ``null``, ...).  A body that does not decode is a 400 BadRequest; any failing operation
  is the generic 422 "the server rejected our request due to an error in our request"
  (apiserver wraps the library error with ``NewGenericServerResponse``, which drops the
  text); more than 10000 operations is a 413.
* Merge patch is ``jsonpatch.MergePatch`` (nulls delete, nested nulls are pruned from
  values that are added); an undecodable or ``null`` body is 400 "Invalid JSON Patch".
* Strategic merge patch is a port of ``k8s.io/apimachinery/pkg/util/strategicpatch``
  (``StrategicMergeMapPatch``: ``MergeParallelList`` and ``IgnoreUnmatchedNulls`` on),
  with the patch metadata (``x-kubernetes-patch-strategy`` / ``-merge-key``) taken from
  the schema definitions.  Errors map as in ``interpretStrategicMergePatchError``:
  sentinel format errors are 400, "lists of lists" is the generic 422, anything else is
  a plain error, which apiserver reports as a 500 with an empty reason and kubelite as a
  400 BadRequest with the same text (bad input is never a 500).

The result of a patch is the map upstream would decode into the typed object; fields
the type does not know (including stray ``$`` directives inside newly added list
elements, which upstream also leaves in its map) are for the caller's decoding /
field validation to drop or reject.
"""

from __future__ import annotations

import copy
import json
import re
from decimal import Decimal
from typing import Any

from kubelite.api import errors, field
from kubelite.api import schema as schemas
from kubelite.api.errors import StatusError

__all__ = [
    "MAX_JSON_PATCH_OPERATIONS",
    "JSON_PATCH_MAX_COPY_BYTES",
    "apply_json_patch",
    "apply_merge_patch",
    "apply_strategic_merge_patch",
    "strategic_merge_patch_for_kind",
    "strategic_merge_patch_bytes",
    "parse_patch_json",
    "go_json_syntax_error",
]

MAX_JSON_PATCH_OPERATIONS = 10000
JSON_PATCH_MAX_COPY_BYTES = 3 * 1024 * 1024

GENERIC_422 = "the server rejected our request due to an error in our request"
PANIC_MESSAGE = "This request caused apiserver to panic. Look in the logs for details."


def _generic_invalid() -> StatusError:
    """errors.NewGenericServerResponse(422, "", GroupResource{}, "", msg, 0, false)."""
    return StatusError(422, "Invalid", GENERIC_422, {})


def _plain_error(message: str) -> StatusError:
    """A non-Status Go error surfacing from a handler. Upstream's responsewriters.ErrorToAPIStatus
    makes it a 500; every such error here comes from the patch a client sent, and bad input
    is never a 500 in kubelite: a 400 BadRequest with upstream's text."""
    return errors.bad_request(message)


def _panic_error() -> StatusError:
    """The strategic merge code panicked on the patch (upstream: a 500 with this text)."""
    return errors.bad_request(PANIC_MESSAGE)


# --------------------------------------------------------------------------------------
# Go-flavoured JSON decoding: the error texts of encoding/json's scanner
# --------------------------------------------------------------------------------------

def _quote_char(c: str) -> str:
    if c == "'":
        return "'\\''"
    if c == '"':
        return "'\"'"
    q = json.dumps(c, ensure_ascii=False)
    if c == "\x7f":
        q = '"\\x7f"'
    elif len(q) == 8 and q.startswith('"\\u00'):  # control char: Go prints \x1f style
        q = f'"\\x{ord(c):02x}"'
    return "'" + q[1:-1] + "'"


_WS = " \t\r\n"


def go_json_syntax_error(data: bytes) -> str | None:
    """Return encoding/json's syntax error message for ``data``, or None if it is valid JSON."""
    try:
        s = data.decode("utf-8", errors="replace")
    except Exception:  # pragma: no cover - decode with replace never fails
        return "invalid JSON"
    n = len(s)
    i = 0

    class _Err(Exception):
        pass

    def fail(c: str, ctx: str) -> _Err:
        return _Err(f"invalid character {_quote_char(c)} {ctx}")

    def eof() -> _Err:
        return _Err("unexpected end of JSON input")

    def skip_ws(j: int) -> int:
        while j < n and s[j] in _WS:
            j += 1
        return j

    def value(j: int) -> int:
        j = skip_ws(j)
        if j >= n:
            raise eof()
        c = s[j]
        if c == "{":
            j = skip_ws(j + 1)
            if j >= n:
                raise eof()
            if s[j] == "}":
                return j + 1
            while True:
                if j >= n:
                    raise eof()
                if s[j] != '"':
                    raise fail(s[j], "looking for beginning of object key string")
                j = string(j)
                j = skip_ws(j)
                if j >= n:
                    raise eof()
                if s[j] != ":":
                    raise fail(s[j], "after object key")
                j = value(j + 1)
                j = skip_ws(j)
                if j >= n:
                    raise eof()
                if s[j] == ",":
                    j = skip_ws(j + 1)
                    continue
                if s[j] == "}":
                    return j + 1
                raise fail(s[j], "after object key:value pair")
        if c == "[":
            j = skip_ws(j + 1)
            if j >= n:
                raise eof()
            if s[j] == "]":
                return j + 1
            while True:
                j = value(j)
                j = skip_ws(j)
                if j >= n:
                    raise eof()
                if s[j] == ",":
                    j += 1
                    continue
                if s[j] == "]":
                    return j + 1
                raise fail(s[j], "after array element")
        if c == '"':
            return string(j)
        if c == "-" or "0" <= c <= "9":
            return number(j)
        for lit in ("true", "false", "null"):
            if c == lit[0]:
                for k in range(1, len(lit)):
                    if j + k >= n:
                        raise eof()
                    if s[j + k] != lit[k]:
                        raise fail(s[j + k], f"in literal {lit} (expecting {_quote_char(lit[k])})")
                return j + len(lit)
        raise fail(c, "looking for beginning of value")

    def string(j: int) -> int:
        j += 1
        while True:
            if j >= n:
                raise eof()
            c = s[j]
            if c == '"':
                return j + 1
            if c == "\\":
                j += 1
                if j >= n:
                    raise eof()
                e = s[j]
                if e in 'bfnrt\\/"':
                    j += 1
                    continue
                if e == "u":
                    for k in range(1, 5):
                        if j + k >= n:
                            raise eof()
                        if s[j + k] not in "0123456789abcdefABCDEF":
                            raise fail(s[j + k], "in \\u hexadecimal character escape")
                    j += 5
                    continue
                raise fail(e, "in string escape code")
            if ord(c) < 0x20:
                raise fail(c, "in string literal")
            j += 1

    def number(j: int) -> int:
        if s[j] == "-":
            j += 1
            if j >= n:
                raise eof()
            if not ("0" <= s[j] <= "9"):
                raise fail(s[j], "in numeric literal")
        if s[j] == "0":
            j += 1
        else:
            while j < n and "0" <= s[j] <= "9":
                j += 1
        if j < n and s[j] == ".":
            j += 1
            if j >= n:
                raise eof()
            if not ("0" <= s[j] <= "9"):
                raise fail(s[j], "after decimal point in numeric literal")
            while j < n and "0" <= s[j] <= "9":
                j += 1
        if j < n and s[j] in "eE":
            j += 1
            if j < n and s[j] in "+-":
                j += 1
            if j >= n:
                raise eof()
            if not ("0" <= s[j] <= "9"):
                raise fail(s[j], "in exponent of numeric literal")
            while j < n and "0" <= s[j] <= "9":
                j += 1
        return j

    try:
        i = value(0)
        i = skip_ws(i)
        if i < n:
            raise fail(s[i], "after top-level value")
    except _Err as e:
        return str(e)
    except RecursionError:
        return "exceeded max depth"
    return None


def _go_json_kind(v: Any) -> str:
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list):
        return "array"
    if isinstance(v, str):
        return "string"
    if isinstance(v, bool):
        return "bool"
    return "number"


def _loads(data: bytes) -> Any:
    return json.loads(data.decode("utf-8", errors="replace"))


def parse_patch_json(patch_bytes: bytes | str) -> Any:
    """Decode a JSON body with Go's error texts; syntax errors are 400 BadRequest."""
    if isinstance(patch_bytes, str):
        patch_bytes = patch_bytes.encode()
    msg = go_json_syntax_error(patch_bytes)
    if msg is not None:
        raise errors.bad_request(msg)
    try:
        return _loads(patch_bytes)
    except (ValueError, RecursionError) as e:  # pragma: no cover - scanner accepted it
        raise errors.bad_request(str(e)) from None


# --------------------------------------------------------------------------------------
# Go value helpers (types, ==, %v) used by the strategic merge patch port
# --------------------------------------------------------------------------------------

class _Panic(Exception):
    """A Go runtime panic (e.g. comparing two maps with ==)."""


def _gotype(v: Any) -> str:
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int64"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "map[string]interface {}"
    if isinstance(v, list):
        return "[]interface {}"
    return type(v).__name__


def _go_eq(a: Any, b: Any) -> bool:
    """Go's == on two interface{} values holding decoded JSON."""
    ta, tb = _gotype(a), _gotype(b)
    if ta != tb:
        return False
    if isinstance(a, dict | list):
        raise _Panic(f"runtime error: comparing uncomparable type {ta}")
    return a == b


def _hkey(v: Any) -> tuple[str, Any]:
    """A key standing for ``v`` in a Go map[interface{}]...; panics like Go for maps/slices."""
    if isinstance(v, dict | list):
        raise _Panic(f"runtime error: hash of unhashable type {_gotype(v)}")
    return (_gotype(v), v)


def _go_float(f: float) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64) as fmt's %v prints a float64."""
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if str(f).startswith("-") else "0"
    d = Decimal(repr(f))
    sign, digits, exp = d.as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    nd = len(ds)
    dp = len(digits) + int(exp)  # position of the decimal point
    x = dp - 1
    neg = "-" if sign else ""
    if x < -4 or x >= 21:
        mant = ds[0] + ("." + ds[1:] if nd > 1 else "")
        es = "-" if x < 0 else "+"
        ax = abs(x)
        return f"{neg}{mant}e{es}{ax:02d}"
    if dp <= 0:
        return f"{neg}0.{'0' * -dp}{ds}"
    if dp >= nd:
        return f"{neg}{ds}{'0' * (dp - nd)}"
    return f"{neg}{ds[:dp]}.{ds[dp:]}"


def _gv(v: Any) -> str:
    """fmt's %v of a decoded JSON value."""
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return "[" + " ".join(_gv(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_gv(v[k])}" for k in sorted(v)) + "]"
    return str(v)


def _gs(v: Any) -> str:
    """fmt's %s of a decoded JSON value (strings as is, others as %!s(type=v))."""
    if isinstance(v, str):
        return v
    if v is None:
        return "%!s(<nil>)"
    if isinstance(v, dict | list):
        return _gv(v)
    return f"%!s({_gotype(v)}={_gv(v)})"


# --------------------------------------------------------------------------------------
# Strategic merge patch
# --------------------------------------------------------------------------------------

DIRECTIVE_MARKER = "$patch"
DELETE_DIRECTIVE = "delete"
REPLACE_DIRECTIVE = "replace"
MERGE_DIRECTIVE = "merge"
RETAIN_KEYS_STRATEGY = "retainKeys"
DELETE_FROM_PRIMITIVE_LIST_PREFIX = "$deleteFromPrimitiveList"
RETAIN_KEYS_DIRECTIVE = "$retainKeys"
SET_ELEMENT_ORDER_PREFIX = "$setElementOrder"

# mergepatch sentinel errors
ERR_BAD_JSON_DOC = "invalid JSON document"
ERR_NO_LIST_OF_LISTS = "lists of lists are not supported"
ERR_BAD_PATCH_FORMAT_FOR_PRIMITIVE_LIST = "invalid patch format of primitive list"
ERR_BAD_PATCH_FORMAT_FOR_RETAIN_KEYS = "invalid patch format of retainKeys"
ERR_BAD_PATCH_FORMAT_FOR_SET_ELEMENT_ORDER_LIST = "invalid patch format of setElementOrder list"
ERR_PATCH_CONTENT_NOT_MATCH_RETAIN_KEYS = "patch content doesn't match retainKeys list"
ERR_UNSUPPORTED_STRATEGIC_MERGE_PATCH_FORMAT = "strategic merge patch format is not supported"

_BAD_REQUEST_SENTINELS = {
    ERR_BAD_JSON_DOC,
    ERR_BAD_PATCH_FORMAT_FOR_PRIMITIVE_LIST,
    ERR_BAD_PATCH_FORMAT_FOR_RETAIN_KEYS,
    ERR_BAD_PATCH_FORMAT_FOR_SET_ELEMENT_ORDER_LIST,
    ERR_UNSUPPORTED_STRATEGIC_MERGE_PATCH_FORMAT,
}
_UNPROCESSABLE_SENTINELS = {ERR_NO_LIST_OF_LISTS, ERR_PATCH_CONTENT_NOT_MATCH_RETAIN_KEYS}


class SMPError(Exception):
    """An error of the strategicpatch package (message is the Go error text)."""


def _err_no_merge_key(m: dict[str, Any], k: str) -> SMPError:
    return SMPError(f"map: {_gv(m)} does not contain declared merge key: {k}")


def _err_bad_arg_type(expected: str, actual: Any) -> SMPError:
    return SMPError(f"expected a {expected}, but received a {_gotype(actual) if actual is not None else '%!s(<nil>)'}")


def _err_bad_patch_type(t: Any, m: dict[str, Any]) -> SMPError:
    return SMPError(f"unknown patch type: {_gs(t)} in map: {_gv(m)}")


_MAP_T = "map[string]interface {}"
_SLICE_T = "[]interface {}"


def interpret_smp_error(err: SMPError) -> StatusError:
    """handlers.interpretStrategicMergePatchError."""
    msg = str(err)
    if msg in _BAD_REQUEST_SENTINELS:
        return errors.bad_request(msg)
    if msg in _UNPROCESSABLE_SENTINELS:
        return _generic_invalid()
    return _plain_error(msg)


class _Meta:
    """Patch metadata of one field: schema of the value (or of list items), strategies, key."""

    __slots__ = ("schema", "strategies", "merge_key")

    def __init__(self, schema: dict[str, Any] | None, strategies: list[str], merge_key: str) -> None:
        self.schema = schema
        self.strategies = strategies
        self.merge_key = merge_key


def _lookup(schema: dict[str, Any] | None, key: str, for_slice: bool) -> _Meta:
    sch = schemas.resolve(schema) if schema else None
    if not sch:
        return _Meta(None, [], "")
    raw = None
    props = sch.get("properties")
    if isinstance(props, dict):
        raw = props.get(key)
    strategies: list[str] = []
    merge_key = ""
    if isinstance(raw, dict):
        st = raw.get("x-kubernetes-patch-strategy")
        if isinstance(st, str) and st:
            strategies = st.split(",")
        mk = raw.get("x-kubernetes-patch-merge-key")
        if isinstance(mk, str):
            merge_key = mk
        sub = schemas.resolve(raw)
    else:
        sub = schemas.property_schema(sch, key)
    if for_slice:
        sub = schemas.items_schema(sub) if sub else None
    return _Meta(sub, strategies, merge_key)


def _extract_retain_keys_patch_strategy(strategies: list[str]) -> tuple[bool, str]:
    if len(strategies) == 0:
        return False, ""
    if len(strategies) == 1:
        if strategies[0] == RETAIN_KEYS_STRATEGY:
            return True, ""
        return False, strategies[0]
    if len(strategies) == 2:
        if strategies[0] == RETAIN_KEYS_STRATEGY:
            return True, strategies[1]
        if strategies[1] == RETAIN_KEYS_STRATEGY:
            return True, strategies[0]
    raise SMPError(f"unexpected patch strategy: [{' '.join(strategies)}]")


# ---- Go's sort.SliceStable, reproduced so inconsistent "less" functions order identically


def _slice_stable(data: list[Any], less: Any) -> None:
    def lt(i: int, j: int) -> bool:
        return less(data[i], data[j])

    def swap(i: int, j: int) -> None:
        data[i], data[j] = data[j], data[i]

    def insertion_sort(a: int, b: int) -> None:
        for i in range(a + 1, b):
            j = i
            while j > a and lt(j, j - 1):
                swap(j, j - 1)
                j -= 1

    def swap_range(a: int, b: int, n: int) -> None:
        for i in range(n):
            swap(a + i, b + i)

    def rotate(a: int, m: int, b: int) -> None:
        i = m - a
        j = b - m
        while i != j:
            if i > j:
                swap_range(m - i, m, j)
                i -= j
            else:
                swap_range(m - i, m + j - i, i)
                j -= i
        swap_range(m - i, m, i)

    def sym_merge(a: int, m: int, b: int) -> None:
        if m - a == 1:
            i, j = m, b
            while i < j:
                h = (i + j) >> 1
                if lt(h, a):
                    i = h + 1
                else:
                    j = h
            for k in range(a, i - 1):
                swap(k, k + 1)
            return
        if b - m == 1:
            i, j = a, m
            while i < j:
                h = (i + j) >> 1
                if not lt(m, h):
                    i = h + 1
                else:
                    j = h
            for k in range(m, i, -1):
                swap(k, k - 1)
            return
        mid = (a + b) >> 1
        n = mid + m
        if m > mid:
            start, r = n - b, mid
        else:
            start, r = a, m
        p = n - 1
        while start < r:
            c = (start + r) >> 1
            if not lt(p - c, c):
                start = c + 1
            else:
                r = c
        end = n - start
        if start < m < end:
            rotate(start, m, end)
        if a < start < mid:
            sym_merge(a, start, mid)
        if mid < end < b:
            sym_merge(mid, end, b)

    n = len(data)
    block = 20
    a, b = 0, block
    while b <= n:
        insertion_sort(a, b)
        a = b
        b += block
    insertion_sort(a, n)
    while block < n:
        a, b = 0, 2 * block
        while b <= n:
            sym_merge(a, a + block, b)
            a = b
            b += 2 * block
        m = a + block
        if m < n:
            sym_merge(a, m, n)
        block *= 2


# ---- ordering helpers


def _index(lst: list[Any] | None, val: Any, merge_key: str, kind: str) -> int:
    if kind == "map":
        def get(item: Any) -> Any:
            return item.get(merge_key) if isinstance(item, dict) else None
    else:
        def get(item: Any) -> Any:
            return item
    want = get(val)
    for i, v in enumerate(lst or []):
        if _go_eq(want, get(v)):
            return i
    return -1


def _validate_merge_key_in_lists(merge_key: str, *lists: list[Any] | None) -> None:
    for lst in lists:
        for item in lst or []:
            if not isinstance(item, dict):
                raise _err_bad_arg_type(_MAP_T, item)
            if merge_key not in item:
                raise _err_no_merge_key(item, merge_key)


def _extract_to_delete_items(lst: list[Any]) -> tuple[list[Any], list[Any]]:
    non_delete: list[Any] = []
    to_delete: list[Any] = []
    for v in lst:
        if not isinstance(v, dict):
            raise _err_bad_arg_type(_MAP_T, v)
        if DIRECTIVE_MARKER in v and _go_eq(v[DIRECTIVE_MARKER], DELETE_DIRECTIVE):
            to_delete.append(v)
        else:
            non_delete.append(v)
    return non_delete, to_delete


def _normalize_slice_order(to_sort: list[Any], order: list[Any] | None, merge_key: str, kind: str) -> list[Any]:
    to_delete: list[Any] = []
    if kind == "map":
        _validate_merge_key_in_lists(merge_key, to_sort, order)
        to_sort, to_delete = _extract_to_delete_items(to_sort)
    to_sort = list(to_sort)

    def less(x: Any, y: Any) -> bool:
        ii = _index(order, x, merge_key, kind)
        if ii >= 0:
            ij = _index(order, y, merge_key, kind)
            if ij >= 0:
                return ii < ij
        return True

    _slice_stable(to_sort, less)
    return to_sort + to_delete


def _merge_sorted_slice(left: list[Any], right: list[Any], server_order: list[Any] | None,
                        merge_key: str, kind: str) -> list[Any]:
    size = len(left) + len(right)
    i = j = 0
    out: list[Any] = []
    for _ in range(size):
        if i >= len(left) and j < len(right):
            out.append(right[j])
            j += 1
        elif j >= len(right) and i < len(left):
            out.append(left[i])
            i += 1
        else:
            li = _index(server_order, left[i], merge_key, kind)
            ri = _index(server_order, right[j], merge_key, kind)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def _normalize_element_order(patch: list[Any], server_only: list[Any], patch_order: list[Any] | None,
                             server_order: list[Any] | None, merge_key: str, kind: str) -> list[Any]:
    patch = _normalize_slice_order(patch, patch_order, merge_key, kind)
    server_only = _normalize_slice_order(server_only, server_order, merge_key, kind)
    return _merge_sorted_slice(server_only, patch, server_order, merge_key, kind)


def _partition_primitives(original: list[Any], partition_by: list[Any] | None) -> tuple[list[Any], list[Any]]:
    in_patch = {_hkey(v) for v in partition_by or []}
    patch: list[Any] = []
    server_only: list[Any] = []
    for v in original:
        (patch if _hkey(v) in in_patch else server_only).append(v)
    return patch, server_only


def _find_map_in_slice(lst: list[Any] | None, key: str, value: Any) -> tuple[dict[str, Any] | None, int, bool]:
    for k, v in enumerate(lst or []):
        if not isinstance(v, dict):
            raise SMPError(f"value for key {k} is not a map")
        if key in v and _go_eq(v[key], value):
            return v, k, True
    return None, 0, False


def _partition_maps(original: list[Any], partition_by: list[Any] | None,
                    merge_key: str) -> tuple[list[Any], list[Any]]:
    patch: list[Any] = []
    server_only: list[Any] = []
    for v in original:
        if not isinstance(v, dict):
            raise _err_bad_arg_type(_MAP_T, v)
        if merge_key not in v:
            raise _err_no_merge_key(v, merge_key)
        _, _, found = _find_map_in_slice(partition_by, merge_key, v[merge_key])
        (patch if found else server_only).append(v)
    return patch, server_only


def _remove_directives(obj: Any) -> tuple[Any, bool]:
    if obj is None:
        return obj, True
    if isinstance(obj, dict):
        if DIRECTIVE_MARKER in obj:
            return None, False
        for k in list(obj):
            nv, keep = _remove_directives(obj[k])
            if keep:
                obj[k] = nv
            else:
                del obj[k]
        return obj, True
    if isinstance(obj, list):
        res: list[Any] = []
        for v in obj:
            nv, keep = _remove_directives(v)
            if keep:
                res.append(nv)
        return res, True
    return obj, True


def _discard_null_values(v: Any) -> None:
    if isinstance(v, dict):
        for k in list(v):
            if v[k] is None:
                del v[k]
            else:
                _discard_null_values(v[k])
    elif isinstance(v, list):
        for x in v:
            _discard_null_values(x)


def _slice_element_kind(*slices: list[Any] | None) -> str:
    prev: str | None = None
    for s in slices:
        for v in s or []:
            cur = _gotype(v)
            if prev is None:
                prev = cur
                if v is None:
                    # reflect.TypeOf(nil).Kind() dereferences a nil Type
                    raise _Panic("runtime error: invalid memory address or nil pointer dereference")
                if isinstance(v, list):
                    raise SMPError(ERR_NO_LIST_OF_LISTS)
            elif prev != cur:
                raise SMPError("list element types are not identical: "
                               "[" + " ".join(_gv(x or []) for x in slices) + "]")
    if prev is None:
        raise SMPError("no elements in any of the given slices")
    return "map" if prev == _MAP_T else prev


def _extract_key(s: str, prefix: str) -> str:
    parts = s.split("/", 1)
    if len(parts) <= 1 or parts[0] != prefix:
        if prefix == DELETE_FROM_PRIMITIVE_LIST_PREFIX:
            raise SMPError(ERR_BAD_PATCH_FORMAT_FOR_PRIMITIVE_LIST)
        if prefix == SET_ELEMENT_ORDER_PREFIX:
            raise SMPError(ERR_BAD_PATCH_FORMAT_FOR_SET_ELEMENT_ORDER_LIST)
        raise SMPError(f"fail to find unknown prefix {json.dumps(prefix)} in {s}\n")
    return parts[1]


def _contains_directive_marker(item: Any) -> bool:
    return isinstance(item, dict) and DIRECTIVE_MARKER in item


def _merge_key_value_equal(left: Any, right: Any, merge_key: str) -> bool:
    if not merge_key:
        return _go_eq(left, right)
    if not isinstance(left, dict):
        raise _err_bad_arg_type(_MAP_T, left)
    if not isinstance(right, dict):
        raise _err_bad_arg_type(_MAP_T, right)
    if merge_key not in left:
        raise _err_no_merge_key(left, merge_key)
    if merge_key not in right:
        raise _err_no_merge_key(right, merge_key)
    return _go_eq(left[merge_key], right[merge_key])


def _validate_patch_with_set_order_list(patch_list: Any, set_order_list: Any, merge_key: str) -> None:
    if not isinstance(set_order_list, list):
        raise SMPError(ERR_BAD_PATCH_FORMAT_FOR_SET_ELEMENT_ORDER_LIST)
    if patch_list is not None and not isinstance(patch_list, list):
        raise SMPError(ERR_BAD_PATCH_FORMAT_FOR_SET_ELEMENT_ORDER_LIST)
    if not set_order_list or not patch_list:
        return
    if merge_key:
        non_delete, _ = _extract_to_delete_items(patch_list)
    else:
        non_delete = patch_list
    pi = si = 0
    while pi < len(non_delete) and si < len(set_order_list):
        if _contains_directive_marker(non_delete[pi]):
            pi += 1
            continue
        if _merge_key_value_equal(non_delete[pi], set_order_list[si], merge_key):
            pi += 1
        si += 1
    if pi < len(non_delete) and si >= len(set_order_list):
        raise SMPError(f"The order in patch list:\n{_gv(patch_list)}\n doesn't match "
                       f"{SET_ELEMENT_ORDER_PREFIX} list:\n{_gv(set_order_list)}\n")


def _apply_retain_keys_directive(original: dict[str, Any], patch: dict[str, Any]) -> None:
    if RETAIN_KEYS_DIRECTIVE not in patch:
        return
    retain = patch.pop(RETAIN_KEYS_DIRECTIVE)
    if not isinstance(retain, list):
        raise SMPError(ERR_BAD_PATCH_FORMAT_FOR_RETAIN_KEYS)
    keep = {_hkey(v) for v in retain}
    for k, v in patch.items():
        if v is None or k.startswith(DELETE_FROM_PRIMITIVE_LIST_PREFIX) or k.startswith(SET_ELEMENT_ORDER_PREFIX):
            continue
        if ("string", k) not in keep:
            raise SMPError(ERR_BAD_PATCH_FORMAT_FOR_RETAIN_KEYS)
    for k in list(original):
        if ("string", k) not in keep:
            del original[k]


class _Backing:
    """A Go slice's backing array as seen through the original ``[]interface{}`` header.

    Upstream deletes list elements with ``append(s[:i], s[i+1:]...)`` and appends new
    ones in place, so the caller's view of the *original* list (used afterwards as the
    "server order" when applying ``$setElementOrder``) observes those writes. Ordering
    depends on it in corner cases, so it is reproduced here.
    """

    __slots__ = ("view", "n", "aliased", "items")

    def __init__(self, view: list[Any]) -> None:
        self.view = view            # the caller's list (length fixed = original len)
        self.items = view[:]        # the logical slice contents
        self.n = len(view)
        self.aliased = True

    def delete(self, i: int) -> None:
        del self.items[i]
        if self.aliased:
            for k in range(i, self.n - 1):
                self.view[k] = self.view[k + 1]
        self.n -= 1

    def append(self, v: Any) -> None:
        self.items.append(v)
        if self.aliased:
            if self.n < len(self.view):
                self.view[self.n] = v
            else:
                self.aliased = False
        self.n += 1

    def set(self, i: int, v: Any) -> None:
        self.items[i] = v
        if self.aliased:
            self.view[i] = v

    def detach(self, items: list[Any]) -> None:
        self.items = items
        self.n = len(items)
        self.aliased = False


class _SMP:
    # handleDirectiveInMergeMap
    @staticmethod
    def _directive_in_map(directive: Any, patch: dict[str, Any]) -> dict[str, Any]:
        if _go_eq(directive, REPLACE_DIRECTIVE):
            patch.pop(DIRECTIVE_MARKER, None)
            return patch
        if _go_eq(directive, DELETE_DIRECTIVE):
            return {}
        raise _err_bad_patch_type(directive, patch)

    def merge_map(self, original: dict[str, Any] | None, patch: dict[str, Any],
                  schema: dict[str, Any] | None) -> dict[str, Any]:
        if DIRECTIVE_MARKER in patch:
            return self._directive_in_map(patch[DIRECTIVE_MARKER], patch)
        if original is None:
            original = {}
        _apply_retain_keys_directive(original, patch)
        self._merge_patch_into_original(original, patch, schema)

        # Go iterates the patch map in random order; process plain keys first and the
        # $deleteFromPrimitiveList lists afterwards (as happens when $setElementOrder is used).
        keys = [k for k in patch if not k.startswith(DELETE_FROM_PRIMITIVE_LIST_PREFIX)]
        keys += [k for k in patch if k.startswith(DELETE_FROM_PRIMITIVE_LIST_PREFIX)]
        for k in keys:
            patch_v = patch[k]
            is_delete_list = False
            if k.startswith(DELETE_FROM_PRIMITIVE_LIST_PREFIX):
                k = _extract_key(k, DELETE_FROM_PRIMITIVE_LIST_PREFIX)
                is_delete_list = True

            if patch_v is None:
                original.pop(k, None)
                continue

            if k not in original:
                if not is_delete_list:
                    _discard_null_values(patch_v)
                    v, keep = _remove_directives(patch_v)
                    if keep:
                        original[k] = v
                continue

            orig_v = original[k]
            if _gotype(orig_v) != _gotype(patch_v):
                if not is_delete_list:
                    _discard_null_values(patch_v)
                    v, keep = _remove_directives(patch_v)
                    if keep:
                        original[k] = v
                    else:
                        del original[k]
                continue

            if isinstance(orig_v, dict):
                meta = _lookup(schema, k, for_slice=False)
                _, strategy = _extract_retain_keys_patch_strategy(meta.strategies)
                if strategy != REPLACE_DIRECTIVE:
                    original[k] = self.merge_map(orig_v, patch_v, meta.schema)
                else:
                    original[k] = patch_v
            elif isinstance(orig_v, list):
                meta = _lookup(schema, k, for_slice=True)
                _, strategy = _extract_retain_keys_patch_strategy(meta.strategies)
                original[k] = self.merge_slice_handler(_Backing(orig_v), patch_v, meta.schema, strategy,
                                                       meta.merge_key, is_delete_list)
            else:
                v, keep = _remove_directives(patch_v)
                if keep:
                    original[k] = v
                else:
                    del original[k]
        return original

    def merge_slice_handler(self, original: _Backing, patch: list[Any], schema: dict[str, Any] | None,
                            strategy: str, merge_key: str, is_delete_list: bool) -> list[Any]:
        if strategy == MERGE_DIRECTIVE or is_delete_list:
            return self.merge_slice(original, patch, schema, merge_key, is_delete_list)
        return patch

    def merge_slice(self, original: _Backing, patch: list[Any], schema: dict[str, Any] | None,
                    merge_key: str, is_delete_list: bool) -> list[Any]:
        if not original.items and not patch:
            return original.items
        kind = _slice_element_kind(original.items, patch)
        if kind != "map":
            if is_delete_list:
                dels = {_hkey(v) for v in patch}
                return [v for v in original.items if _hkey(v) not in dels]
            merged = _deduplicate_scalars(original.items + patch)
            server_order = original.items
        else:
            if merge_key == "":
                # PatchMetaFromStruct.Name() is the element type's reflect.Kind
                raise SMPError("cannot merge lists without merge key for struct")
            patch = self._merge_slice_with_special_elements(original, patch, merge_key)
            server_order = list(original.items)
            merged = self._merge_slice_without_special_elements(original, patch, merge_key, schema)
        if not merge_key:
            patch_items, server_only = _partition_primitives(merged, patch)
        else:
            patch_items, server_only = _partition_maps(merged, patch, merge_key)
        return _normalize_element_order(patch_items, server_only, patch, server_order, merge_key, kind)

    @staticmethod
    def _merge_slice_with_special_elements(original: _Backing, patch: list[Any], merge_key: str) -> list[Any]:
        without: list[Any] = []
        replace = False
        for v in patch:
            if DIRECTIVE_MARKER not in v:
                without.append(v)
                continue
            t = v[DIRECTIVE_MARKER]
            if _go_eq(t, DELETE_DIRECTIVE):
                if merge_key not in v:
                    raise _err_no_merge_key(v, merge_key)
                while True:
                    _, idx, found = _find_map_in_slice(original.items, merge_key, v[merge_key])
                    if not found:
                        break
                    original.delete(idx)
            elif _go_eq(t, REPLACE_DIRECTIVE):
                replace = True
            elif _go_eq(t, MERGE_DIRECTIVE):
                raise SMPError("merging lists cannot yet be specified in the patch")
            else:
                raise _err_bad_patch_type(t, v)
        if replace:
            original.detach(without)
            return []
        return without

    def _merge_slice_without_special_elements(self, original: _Backing, patch: list[Any], merge_key: str,
                                              schema: dict[str, Any] | None) -> list[Any]:
        for v in patch:
            if merge_key not in v:
                raise _err_no_merge_key(v, merge_key)
            om, idx, found = _find_map_in_slice(original.items, merge_key, v[merge_key])
            if found:
                original.set(idx, self.merge_map(om, v, schema))
            else:
                original.append(v)
        return original.items

    def _merge_patch_into_original(self, original: dict[str, Any], patch: dict[str, Any],
                                   schema: dict[str, Any] | None) -> None:
        for key in list(patch):
            if key not in patch or not key.startswith(SET_ELEMENT_ORDER_PREFIX):
                continue
            set_order = patch.pop(key)
            if not isinstance(set_order, list):
                raise _err_bad_arg_type(_SLICE_T, set_order)
            okey = _extract_key(key, SET_ELEMENT_ORDER_PREFIX)
            found_original = okey in original
            found_patch = okey in patch
            original_list: list[Any] | None = None
            patch_list: list[Any] | None = None
            if found_original:
                if not isinstance(original[okey], list):
                    raise _err_bad_arg_type(_SLICE_T, original[okey])
                original_list = original[okey]
            if found_patch:
                if not isinstance(patch[okey], list):
                    raise _err_bad_arg_type(_SLICE_T, patch[okey])
                patch_list = patch[okey]
            meta = _lookup(schema, okey, for_slice=True)
            _, strategy = _extract_retain_keys_patch_strategy(meta.strategies)
            _validate_patch_with_set_order_list(patch_list, set_order, meta.merge_key)

            if found_original and not found_patch:
                merged = original_list
            elif not found_original and found_patch:
                merged, _ = _remove_directives(patch_list)
            elif found_original and found_patch:
                assert original_list is not None and patch_list is not None
                merged = self.merge_slice_handler(_Backing(original_list), patch_list, meta.schema,
                                                  strategy, meta.merge_key, False)
            else:
                continue
            merged = merged or []

            if not meta.merge_key:
                patch_items, server_only = _partition_primitives(merged, set_order)
            else:
                patch_items, server_only = _partition_maps(merged, set_order, meta.merge_key)
            kind = _slice_element_kind(original_list, patch_list)
            original[okey] = _normalize_element_order(patch_items, server_only, set_order, original_list,
                                                      meta.merge_key, kind)
            patch.pop(okey, None)


def _deduplicate_scalars(s: list[Any]) -> list[Any]:
    """The "clever" in-place dedup of upstream (order is normalised afterwards anyway)."""
    s = list(s)
    length = len(s) - 1
    i = 0
    while i < length:
        j = i + 1
        while j <= length:
            if _go_eq(s[i], s[j]):
                s[j] = s[length]
                s = s[:length]
                length -= 1
                j -= 1
            j += 1
        i += 1
    return s


def apply_strategic_merge_patch(obj: dict[str, Any], patch: dict[str, Any],
                                schema: dict[str, Any] | None) -> dict[str, Any]:
    """StrategicMergeMapPatch(obj, patch, schema); inputs are not modified.

    ``schema`` is the (resolved) definition of the object's kind, or None for
    schemaless merging (maps merge, lists are replaced).
    """
    if not isinstance(patch, dict):
        raise errors.bad_request(f"json: cannot unmarshal {_go_json_kind(patch)} into Go value of type "
                                 "map[string]interface {}")
    original = copy.deepcopy(obj) if obj is not None else {}
    p = copy.deepcopy(patch)
    try:
        return _SMP().merge_map(original, p, schema)
    except SMPError as e:
        raise interpret_smp_error(e) from None
    except _Panic:
        raise _panic_error() from None
    except RecursionError:
        raise _plain_error("exceeded max depth") from None


def strategic_merge_patch_bytes(obj: dict[str, Any], patch_bytes: bytes | str,
                                schema: dict[str, Any] | None) -> dict[str, Any]:
    """Decode a strategic merge patch body (as handlers.strategicPatchObject) and apply it."""
    patch = parse_patch_json(patch_bytes)
    if patch is None:
        patch = {}  # json.Unmarshal of null into a map leaves the (empty) map alone
    if not isinstance(patch, dict):
        raise errors.bad_request(f"json: cannot unmarshal {_go_json_kind(patch)} into Go value of type "
                                 "map[string]interface {}")
    return apply_strategic_merge_patch(obj, patch, schema)


def strategic_merge_patch_for_kind(obj: dict[str, Any], patch_bytes: bytes | str | dict[str, Any],
                                   group: str, version: str, kind: str) -> dict[str, Any]:
    """Strategic merge patch with the schema of (group, version, kind).

    Kinds without a built-in definition (custom resources) are rejected as upstream does:
    415 UnsupportedMediaType from the handler, since only built-in types accept
    ``application/strategic-merge-patch+json``.
    """
    name = schemas.gvk_index().get((group, version, kind))
    if name is None:
        raise StatusError(
            415, "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: "
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")
    schema = schemas.definition(name)
    if isinstance(patch_bytes, dict):
        return apply_strategic_merge_patch(obj, patch_bytes, schema)
    return strategic_merge_patch_bytes(obj, patch_bytes, schema)


# --------------------------------------------------------------------------------------
# JSON merge patch (evanphx/json-patch v4 MergePatch)
# --------------------------------------------------------------------------------------

def _prune_nulls(v: Any) -> None:
    if isinstance(v, dict):
        for k in list(v):
            if v[k] is None:
                del v[k]
            else:
                _prune_nulls(v[k])
    elif isinstance(v, list):
        for x in v:
            if x is not None:
                _prune_nulls(x)


def _merge_node(cur: Any, patch: Any) -> Any:
    if not isinstance(cur, dict):
        _prune_nulls(patch)
        return patch
    if not isinstance(patch, dict):
        return patch
    _merge_docs(cur, patch)
    return cur


def _merge_docs(doc: dict[str, Any], patch: dict[str, Any]) -> None:
    for k, v in patch.items():
        if v is None:
            doc.pop(k, None)
        else:
            cur = doc.get(k)
            if cur is None:
                _prune_nulls(v)
                doc[k] = v
            else:
                doc[k] = _merge_node(cur, v)


def apply_merge_patch(obj: dict[str, Any], patch_bytes: bytes | str) -> dict[str, Any]:
    """RFC 7386 merge patch as jsonpatch.MergePatch; 400 "Invalid JSON Patch" on a bad body."""
    if isinstance(patch_bytes, str):
        patch_bytes = patch_bytes.encode()
    if go_json_syntax_error(patch_bytes) is not None:
        raise errors.bad_request("Invalid JSON Patch")
    patch = _loads(patch_bytes)
    if patch is None:
        raise errors.bad_request("Invalid JSON Patch")
    if isinstance(patch, list):
        _prune_nulls(patch)
        raise _not_an_object(patch)
    if not isinstance(patch, dict):
        raise errors.bad_request("Invalid JSON Patch")
    doc = copy.deepcopy(obj)
    _merge_docs(doc, patch)
    return doc


def _not_an_object(result: Any) -> StatusError:
    """DecodeInto of a patched document that is not a JSON object (422 Invalid on "patch")."""
    js = json.dumps(result, separators=(",", ":"), ensure_ascii=False)
    return errors.invalid("", "", [field.invalid(
        "patch", js, f"json: cannot unmarshal {_go_json_kind(result)} into Go value of type "
        "map[string]interface {}")])


# --------------------------------------------------------------------------------------
# JSON patch (evanphx/json-patch v4 Patch.Apply)
# --------------------------------------------------------------------------------------

class _JPError(Exception):
    pass


_MISSING = object()
_ATOI = re.compile(r"[+-]?[0-9]+\Z")


def _atoi(key: str) -> int:
    if not _ATOI.match(key):
        raise _JPError(f'strconv.Atoi: parsing "{key}": invalid syntax')
    v = int(key)
    if not -(2 ** 63) <= v < 2 ** 63:
        raise _JPError(f'strconv.Atoi: parsing "{key}": value out of range')
    return v


def _decode_key(k: str) -> str:
    return k.replace("~1", "/").replace("~0", "~")


def _c_get(con: Any, key: str) -> Any:
    if isinstance(con, dict):
        return con.get(key)
    idx = _atoi(key)
    if idx < 0:
        if idx < -len(con):
            raise _JPError(f"Unable to access invalid index: {idx}: invalid index referenced")
        idx += len(con)
    if idx >= len(con):
        raise _JPError(f"Unable to access invalid index: {idx}: invalid index referenced")
    return con[idx]


def _c_set(con: Any, key: str, val: Any) -> None:
    if isinstance(con, dict):
        con[key] = val
        return
    idx = _atoi(key)
    if idx < 0:
        if idx < -len(con):
            raise _JPError(f"Unable to access invalid index: {idx}: invalid index referenced")
        idx += len(con)
    con[idx] = val


def _c_add(con: Any, key: str, val: Any) -> None:
    if isinstance(con, dict):
        con[key] = val
        return
    if key == "-":
        con.append(val)
        return
    try:
        idx = _atoi(key)
    except _JPError as e:
        raise _JPError(f"value was not a proper array index: '{key}': {e}") from None
    size = len(con) + 1
    if idx >= size:
        raise _JPError(f"Unable to access invalid index: {idx}: invalid index referenced")
    if idx < 0:
        if idx < -size:
            raise _JPError(f"Unable to access invalid index: {idx}: invalid index referenced")
        idx += size
    con.insert(idx, val)


def _c_remove(con: Any, key: str) -> None:
    if isinstance(con, dict):
        if key not in con:
            raise _JPError(f"Unable to remove nonexistent key: {key}: missing value")
        del con[key]
        return
    idx = _atoi(key)
    if idx >= len(con):
        raise _JPError(f"Unable to access invalid index: {idx}: invalid index referenced")
    if idx < 0:
        if idx < -len(con):
            raise _JPError(f"Unable to access invalid index: {idx}: invalid index referenced")
        idx += len(con)
    del con[idx]


def _find_object(doc: Any, path: str) -> tuple[Any, str]:
    split = path.split("/")
    if len(split) < 2:
        return None, ""
    cur = doc
    for part in split[1:-1]:
        try:
            nxt = _c_get(cur, _decode_key(part))
        except _JPError:
            return None, ""
        if not isinstance(nxt, dict | list):
            return None, ""
        cur = nxt
    return cur, _decode_key(split[-1])


def _jp_equal(a: Any, b: Any) -> bool:
    """lazyNode.equal: structural for objects/arrays, type-strict for scalars."""
    if isinstance(a, dict):
        if not isinstance(b, dict) or len(a) != len(b):
            return False
        return all(k in b and _jp_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        if not isinstance(b, list) or len(a) != len(b):
            return False
        return all(_jp_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(b, dict | list):
        return False
    return _gotype(a) == _gotype(b) and a == b


def _op_str(op: dict[str, Any], name: str) -> str:
    if name not in op or op[name] is None:
        raise _JPError(f"operation missing {name} field: missing value")
    v = op[name]
    if not isinstance(v, str):
        raise _JPError(f"json: cannot unmarshal {_go_json_kind(v)} into Go value of type string")
    return v


def _compact_len(v: Any) -> int:
    return len(json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode())


def _apply_op(doc: Any, op: dict[str, Any] | None, copied: list[int]) -> Any:
    op = op or {}
    kind = op.get("op")
    if not isinstance(kind, str):
        kind = "unknown"
    value = op.get("value", _MISSING)
    val = None if value is _MISSING else copy.deepcopy(value)
    if kind == "add":
        path = _op_str(op, "path")
        con, key = _find_object(doc, path)
        if con is None:
            raise _JPError(f'add operation does not apply: doc is missing path: "{path}": missing value')
        _c_add(con, key, val)
    elif kind == "remove":
        path = _op_str(op, "path")
        con, key = _find_object(doc, path)
        if con is None:
            raise _JPError(f'remove operation does not apply: doc is missing path: "{path}": missing value')
        _c_remove(con, key)
    elif kind == "replace":
        path = _op_str(op, "path")
        if path == "":
            if not isinstance(val, dict | list):
                raise _JPError("replace operation value must be object or array")
            return val
        con, key = _find_object(doc, path)
        if con is None:
            raise _JPError(f"replace operation does not apply: doc is missing path: {path}: missing value")
        _c_get(con, key)
        _c_set(con, key, val)
    elif kind == "move":
        frm = _op_str(op, "from")
        con, key = _find_object(doc, frm)
        if con is None:
            raise _JPError(f"move operation does not apply: doc is missing from path: {frm}: missing value")
        moved = _c_get(con, key)
        _c_remove(con, key)
        path = _op_str(op, "path")
        con, key = _find_object(doc, path)
        if con is None:
            raise _JPError(f"move operation does not apply: doc is missing destination path: {path}")
        _c_add(con, key, moved)
    elif kind == "test":
        path = _op_str(op, "path")
        if path == "":
            if value is _MISSING or not _jp_equal(doc, val):
                raise _JPError(f"testing value {path} failed: test failed")
            return doc
        con, key = _find_object(doc, path)
        if con is None:
            raise _JPError(f"test operation does not apply: is missing path: {path}: missing value")
        cur = _c_get(con, key)
        if cur is None:
            if val is None:
                return doc
            raise _JPError(f"testing value {path} failed: test failed")
        if value is _MISSING or not _jp_equal(cur, val):
            raise _JPError(f"testing value {path} failed: test failed")
    elif kind == "copy":
        frm = _op_str(op, "from")
        con, key = _find_object(doc, frm)
        if con is None:
            raise _JPError(f"copy operation does not apply: doc is missing from path: {frm}: missing value")
        src = _c_get(con, key)
        path = _op_str(op, "path")
        con, key = _find_object(doc, path)
        if con is None:
            raise _JPError(f"copy operation does not apply: doc is missing destination path: {path}")
        if src is not None:
            copied[0] += _compact_len(src)
            if copied[0] > JSON_PATCH_MAX_COPY_BYTES:
                raise _JPError("Unable to complete the copy, the accumulated size increase of copy is "
                               f"{copied[0]}, exceeding the limit {JSON_PATCH_MAX_COPY_BYTES}")
        _c_add(con, key, copy.deepcopy(src))
    else:
        raise _JPError(f"Unexpected kind: {kind}")
    return doc


def apply_json_patch(obj: dict[str, Any], patch_bytes: bytes | str) -> dict[str, Any]:
    """RFC 6902 JSON patch with the semantics of evanphx/json-patch v4 as used by apiserver."""
    if isinstance(patch_bytes, str):
        patch_bytes = patch_bytes.encode()
    msg = go_json_syntax_error(patch_bytes)
    if msg is not None:
        raise errors.bad_request(msg)
    ops = _loads(patch_bytes)
    if ops is None:
        ops = []
    if not isinstance(ops, list):
        raise errors.bad_request(
            f"json: cannot unmarshal {_go_json_kind(ops)} into Go value of type jsonpatch.Patch")
    for op in ops:
        if op is not None and not isinstance(op, dict):
            raise errors.bad_request(
                f"json: cannot unmarshal {_go_json_kind(op)} into Go value of type jsonpatch.Operation")
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise StatusError(413, "RequestEntityTooLarge",
                          "Request entity too large: The allowed maximum operations in a JSON patch is "
                          f"{MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}")
    doc: Any = copy.deepcopy(obj)
    copied = [0]
    try:
        for op in ops:
            doc = _apply_op(doc, op, copied)
    except (_JPError, RecursionError):
        raise _generic_invalid() from None
    if not isinstance(doc, dict):
        raise _not_an_object(doc)
    return doc
