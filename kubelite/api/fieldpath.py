"""Field paths and field sets, as sigs.k8s.io/structured-merge-diff (fieldpath + typed).

A path is a tuple of path elements; a path element is a small hashable tuple:

* ``("f", name)``                 a field of a struct or map      (``f:name``)
* ``("k", ((key, value), ...))``  an associative-list item by key  (``k:{"name":"kuard"}``)
* ``("v", value)``                a set-list item by value         (``v:"foo"``)
* ``("i", index)``                an index (atomic lists; only read) (``i:0``)

Values inside ``k`` and ``v`` elements are *frozen* (hashable) JSON values, see
:func:`freeze`. A :class:`FieldSet` is a plain set of such paths; FieldsV1 is its
trie serialization (``"."`` marks a path that is a member and also has children).

The second half walks objects with their JSON schema the way SMD's ``typed``
package does: :func:`to_field_set`, :func:`compare`, :func:`merge`,
:func:`remove_items` and :func:`ensure_named_fields_are_members`.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from kubelite.api import schema as sch
from kubelite.api.field import go_quote

PathElement = tuple
Path = tuple


class FieldsDecodeError(ValueError):
    """A FieldsV1 document that cannot be read."""


class TypedError(ValueError):
    """An object that does not fit its schema (SMD ValidationErrors)."""


# --------------------------------------------------------------------------- values

def freeze(v: Any) -> Any:
    """A hashable form of a JSON value; bools are tagged so True != 1."""
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, dict):
        return ("m", tuple(sorted(((k, freeze(x)) for k, x in v.items()), key=lambda kv: kv[0])))
    if isinstance(v, list):
        return ("l", tuple(freeze(x) for x in v))
    return v


def thaw(v: Any) -> Any:
    if isinstance(v, tuple):
        tag, body = v
        if tag == "b":
            return body
        if tag == "m":
            return {k: thaw(x) for k, x in body}
        return [thaw(x) for x in body]
    return v


def _vrank(v: Any) -> int:
    if v is None:
        return 5
    if isinstance(v, int | float):
        return 0
    if isinstance(v, str):
        return 1
    tag = v[0]
    return {"b": 2, "l": 3, "m": 4}[tag]


def _cmp(a: Any, b: Any) -> int:
    return (a > b) - (a < b)


def value_compare(a: Any, b: Any) -> int:
    """value.Compare on frozen values: numbers < strings < bools < lists < maps < null."""
    ra, rb = _vrank(a), _vrank(b)
    if ra != rb:
        return _cmp(ra, rb)
    if ra in (0, 1):
        return _cmp(a, b)
    if ra == 2:
        return _cmp(a[1], b[1])
    if ra == 3:
        for x, y in zip(a[1], b[1], strict=False):
            c = value_compare(x, y)
            if c:
                return c
        return _cmp(len(a[1]), len(b[1]))
    if ra == 4:
        for (kx, x), (ky, y) in zip(a[1], b[1], strict=False):
            c = _cmp(kx, ky) or value_compare(x, y)
            if c:
                return c
        return _cmp(len(a[1]), len(b[1]))
    return 0


def deep_equal(a: Any, b: Any) -> bool:
    """value.Equals: JSON equality where bools are not numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(deep_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(deep_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def _go_float(f: float) -> str:
    if f == int(f) and abs(f) < 1e21:
        return str(int(f))
    return repr(f)


_PLAIN_JSON_STR = re.compile(r'[ !#-%\'-;=?-\[\]-~]*')  # printable ASCII but " \\ < > &


def go_json(v: Any) -> str:
    """Compact JSON as Go's encoder writes it (sorted keys, HTML-escaped)."""
    if type(v) is str and _PLAIN_JSON_STR.fullmatch(v):
        return '"' + v + '"'
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, dict):
        return "{" + ",".join(f"{go_json(k)}:{go_json(x)}" for k, x in sorted(v.items())) + "}"
    if isinstance(v, list):
        return "[" + ",".join(go_json(x) for x in v) + "]"
    s = json.dumps(v, ensure_ascii=False)
    if isinstance(v, str):
        s = (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
             .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    return s


def value_string(v: Any) -> str:
    """value.ToString, used in human-readable paths."""
    v = thaw(v)
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return _go_float(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return go_quote(v)
    if isinstance(v, list):
        return "[" + ",".join(value_string(x) for x in v) + "]"
    return "".join(f"{k}={value_string(x)}" for k, x in v.items())


# --------------------------------------------------------------------------- path elements

_PE_RANK = {"f": 0, "k": 1, "v": 2, "i": 3}


def pe_compare(a: PathElement, b: PathElement) -> int:
    if a[0] != b[0]:
        return _cmp(_PE_RANK[a[0]], _PE_RANK[b[0]])
    if a[0] == "f" or a[0] == "i":
        return _cmp(a[1], b[1])
    if a[0] == "v":
        return value_compare(a[1], b[1])
    for (na, va), (nb, vb) in zip(a[1], b[1], strict=False):
        c = _cmp(na, nb) or value_compare(va, vb)
        if c:
            return c
    return _cmp(len(a[1]), len(b[1]))


pe_key = functools.cmp_to_key(pe_compare)


def path_key(p: Path) -> Any:
    return [pe_key(pe) for pe in p]


def pe_string(pe: PathElement) -> str:
    """PathElement.String(): ``.name``, ``[name="x"]``, ``[="v"]``, ``[0]``."""
    t = pe[0]
    if t == "f":
        return "." + pe[1]
    if t == "k":
        return "[" + ",".join(f"{n}={value_string(v)}" for n, v in pe[1]) + "]"
    if t == "v":
        return f"[={value_string(pe[1])}]"
    return f"[{pe[1]}]"


def path_string(p: Path) -> str:
    return "".join(pe_string(pe) for pe in p)


_PE_STR: dict[PathElement, str] = {}


def _pe_str(pe: PathElement) -> str:
    """serialize_pe, memoized (path elements repeat across objects of a kind)."""
    r = _PE_STR.get(pe)
    if r is None:
        r = serialize_pe(pe)
        if len(_PE_STR) > 20000:
            _PE_STR.clear()
        _PE_STR[pe] = r
    return r


def _sorted_pes(pes: Iterable[PathElement]) -> list[PathElement]:
    """Path elements in SMD order; plain field names (the common case) sort by name."""
    pes = list(pes)
    if len(pes) < 2:
        return pes
    for pe in pes:
        if pe[0] != "f":
            return sorted(pes, key=pe_key)
    return sorted(pes, key=_second)


def _second(pe: PathElement) -> Any:
    return pe[1]


def serialize_pe(pe: PathElement) -> str:
    t = pe[0]
    if t == "f":
        return "f:" + pe[1]
    if t == "k":
        return "k:{" + ",".join(f"{go_json(n)}:{go_json(thaw(v))}" for n, v in pe[1]) + "}"
    if t == "v":
        return "v:" + go_json(thaw(pe[1]))
    return f"i:{pe[1]}"


class _UnknownPE(Exception):
    pass


def deserialize_pe(s: str) -> PathElement:
    if len(s) < 2:
        raise FieldsDecodeError("key must be 2 characters long:")
    if s[1] != ":":
        raise FieldsDecodeError(f"missing colon: {s}")
    t, body = s[0], s[2:]
    if t == "f":
        return ("f", body)
    if t == "v":
        try:
            return ("v", freeze(json.loads(body)))
        except ValueError as e:
            raise FieldsDecodeError(str(e)) from None
    if t == "k":
        try:
            d = json.loads(body)
        except ValueError as e:
            raise FieldsDecodeError(str(e)) from None
        if not isinstance(d, dict):
            raise FieldsDecodeError(f"expected an object in key {s}")
        return ("k", tuple(sorted(((k, freeze(v)) for k, v in d.items()), key=lambda kv: kv[0])))
    if t == "i":
        try:
            return ("i", int(body))
        except ValueError as e:
            raise FieldsDecodeError(str(e)) from None
    raise _UnknownPE(s)


def field(*names: str) -> Path:
    """A path of field names: ``field("spec", "replicas")``."""
    return tuple(("f", n) for n in names)


def key(**kv: Any) -> PathElement:
    return ("k", tuple(sorted(((k, freeze(v)) for k, v in kv.items()), key=lambda x: x[0])))


# --------------------------------------------------------------------------- sets

class _Node:
    __slots__ = ("member", "children")

    def __init__(self) -> None:
        self.member = False
        self.children: dict[PathElement, _Node] = {}


def _trie(paths: Iterable[Path]) -> _Node:
    root = _Node()
    for p in paths:
        node = root
        for pe in p:
            nxt = node.children.get(pe)
            if nxt is None:
                nxt = node.children[pe] = _Node()
            node = nxt
        if p:
            node.member = True
    return root


_PE_PARSED: dict[str, Any] = {}  # FieldsV1 key -> path element (None: unknown kind)


def _dict_trie(paths: Iterable[Path]) -> dict[PathElement, list]:
    """A trie of nested dicts: element -> [member?, children]."""
    root: dict[PathElement, list] = {}
    for p in paths:
        ch = root
        for pe in p[:-1]:
            n = ch.get(pe)
            if n is None:
                n = ch[pe] = [False, {}]
            ch = n[1]
        n = ch.get(p[-1])
        if n is None:
            ch[p[-1]] = [True, {}]
        else:
            n[0] = True
    return root


def _emit(children: dict[PathElement, list]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pe in _sorted_pes(children):
        member, sub = children[pe]
        if sub:
            d = _emit(sub)
            if member:
                d = {".": {}, **d}
        else:
            d = {}
        out[_pe_str(pe)] = d
    return out


class FieldSet:
    """A set of field paths (fieldpath.Set), serializable as FieldsV1."""

    __slots__ = ("paths",)

    def __init__(self, paths: Iterable[Path] = ()) -> None:
        self.paths: set[Path] = {tuple(p) for p in paths if p}

    # --- set algebra
    def __contains__(self, p: object) -> bool:
        return p in self.paths

    def __len__(self) -> int:
        return len(self.paths)

    def __bool__(self) -> bool:
        return bool(self.paths)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldSet) and self.paths == other.paths

    def __hash__(self) -> int:  # pragma: no cover - sets are mutable; hash by identity is wrong
        raise TypeError("unhashable type: 'FieldSet'")

    def __iter__(self) -> Iterator[Path]:
        """Members in SMD's Iterate order (pre-order: a level's members, then its children)."""
        out: list[Path] = []

        def walk(node: _Node, prefix: Path) -> None:
            ordered = sorted(node.children, key=pe_key)
            for pe in ordered:
                if node.children[pe].member:
                    out.append(prefix + (pe,))
            for pe in ordered:
                if node.children[pe].children:
                    walk(node.children[pe], prefix + (pe,))

        walk(_trie(self.paths), ())
        return iter(out)

    def __repr__(self) -> str:
        return f"FieldSet({[path_string(p) for p in self]})"

    @classmethod
    def _wrap(cls, paths: set[Path]) -> FieldSet:
        """A FieldSet owning ``paths`` (non-empty tuples), without copying them."""
        fs = cls.__new__(cls)
        fs.paths = paths
        return fs

    def copy(self) -> FieldSet:
        return FieldSet._wrap(set(self.paths))

    def add(self, p: Path) -> None:
        if p:
            self.paths.add(tuple(p))

    def union(self, other: FieldSet) -> FieldSet:
        return FieldSet._wrap(self.paths | other.paths)

    def intersection(self, other: FieldSet) -> FieldSet:
        return FieldSet._wrap(self.paths & other.paths)

    def difference(self, other: FieldSet) -> FieldSet:
        return FieldSet._wrap(self.paths - other.paths)

    def recursive_difference(self, other: FieldSet) -> FieldSet:
        """Remove every path of ``other`` and everything below it."""
        if not other:
            return self.copy()
        op = other.paths
        lens = sorted({len(q) for q in op})
        return FieldSet._wrap({p for p in self.paths
                               if not any(p[:i] in op for i in lens if i <= len(p))})

    def with_prefix(self, prefix: Path) -> FieldSet:
        n = len(prefix)
        return FieldSet(p[n:] for p in self.paths if len(p) > n and p[:n] == prefix)

    def strings(self) -> list[str]:
        return [path_string(p) for p in self]

    # --- FieldsV1
    def to_fields_v1(self) -> dict[str, Any]:
        return _emit(_dict_trie(self.paths))

    @classmethod
    def from_fields_v1(cls, fields: Any) -> FieldSet:
        if fields is None:
            return cls()
        if not isinstance(fields, dict):
            raise FieldsDecodeError("FieldsV1 must be a JSON object")
        out = cls()

        def read(d: dict[str, Any], prefix: Path) -> bool:
            """Reads children of ``prefix``; True when ``prefix`` itself is a member."""
            is_member = False
            has_children = False
            for k, v in d.items():
                if k == ".":
                    is_member = True
                    continue
                pe = _PE_PARSED.get(k, _MISSING)
                if pe is _MISSING:
                    try:
                        pe = deserialize_pe(k)
                    except _UnknownPE:
                        pe = None
                    if len(_PE_PARSED) > 20000:
                        _PE_PARSED.clear()
                    _PE_PARSED[k] = pe
                if pe is None:
                    continue
                if not isinstance(v, dict):
                    raise FieldsDecodeError(f"expected an object for {k}")
                has_children = True
                p = prefix + (pe,)
                if read(v, p):
                    paths.add(p)
            return is_member or not has_children

        paths = out.paths
        read(fields, ())
        return out

    @classmethod
    def of(cls, *paths: Path) -> FieldSet:
        return cls(paths)


# --------------------------------------------------------------------------- schema helpers

SCALAR, LIST, MAP, DEDUCED = "scalar", "list", "map", "deduced"
_MISSING: Any = object()
MISSING = _MISSING

# Defaults of associative-list key fields from the OpenAPI models (+default markers).
_KEY_DEFAULTS = {"protocol": "TCP"}


class _SInfo:
    """What the walkers ask of one schema dict, computed once (see :func:`_info`)."""

    __slots__ = ("schema", "atom", "fields", "addl", "items", "keys", "list_atomic", "map_atomic")

    def __init__(self, s: dict) -> None:
        self.schema = s  # keeps the dict alive, so its id is not reused while cached
        self.atom = _schema_atom(s)
        self.fields: dict[str, tuple[dict | None, bool]] = {}
        addl = s.get("additionalProperties") if s else None
        self.addl = (sch.resolve(addl), False) if isinstance(addl, dict) else (None, False)
        self.items: Any = _MISSING
        self.list_atomic, self.keys = _list_keys(s)
        self.map_atomic = s.get("x-kubernetes-map-type") == "atomic"


_INFO: dict[int, _SInfo] = {}


def _info(s: dict) -> _SInfo:
    i = _INFO.get(id(s))
    if i is None or i.schema is not s:
        i = _SInfo(s)
        if len(_INFO) > 8192:
            _INFO.clear()
        _INFO[id(s)] = i
    return i


def schema_atom(s: dict | None) -> str:
    if s is None:
        return DEDUCED
    return _info(s).atom


def _schema_atom(s: dict | None) -> str:
    if s is None:
        return DEDUCED
    ts = sch.types_of(s)
    if "array" in ts:
        return LIST
    props = s.get("properties")
    addl = s.get("additionalProperties")
    if props or isinstance(addl, dict):
        return MAP
    if "object" in ts:
        return DEDUCED  # RawExtension & co: untyped
    return SCALAR if ts else DEDUCED


def field_schema(s: dict | None, name: str) -> tuple[dict | None, bool]:
    """(schema of field ``name``, whether it is a declared struct field)."""
    if not s:
        return None, False
    info = _info(s)
    r = info.fields.get(name)
    if r is None:
        props = s.get("properties")
        if isinstance(props, dict) and name in props:
            r = info.fields[name] = _field_schema(s, name)
        else:
            r = info.addl
    return r


def _field_schema(s: dict | None, name: str) -> tuple[dict | None, bool]:
    if not s:
        return None, False
    props = s.get("properties")
    if isinstance(props, dict) and name in props:
        raw = props[name]
        r = sch.resolve(raw)
        mt = raw.get("x-kubernetes-map-type") if isinstance(raw, dict) else None
        if r is not None and mt and r is not raw and r.get("x-kubernetes-map-type") != mt:
            r = {**r, "x-kubernetes-map-type": mt}
        return r, True
    addl = s.get("additionalProperties")
    if isinstance(addl, dict):
        return sch.resolve(addl), False
    return None, False


def list_keys(s: dict) -> tuple[bool, list[str] | None]:
    """(atomic?, keys) of a list schema; keys None means a set of scalars."""
    i = _info(s)
    return i.list_atomic, (list(i.keys) if i.keys is not None else None)


def _items_schema(s: dict | None) -> dict | None:
    """sch.items_schema, memoized."""
    if s is None:
        return None
    i = _info(s)
    if i.items is _MISSING:
        i.items = sch.items_schema(s)
    return i.items


def _list_keys(s: dict) -> tuple[bool, list[str] | None]:
    lt = s.get("x-kubernetes-list-type")
    if lt == "atomic":
        return True, None
    if lt == "set":
        return False, None
    if lt == "map":
        return False, list(s.get("x-kubernetes-list-map-keys") or [])
    strategy = s.get("x-kubernetes-patch-strategy") or ""
    if lt is None and "merge" in strategy.split(","):
        mk = s.get("x-kubernetes-patch-merge-key")
        return False, [mk] if mk else None
    return True, None


def _kind(s: dict | None, *values: Any) -> tuple[str, dict | None]:
    """The atom used to walk ``values``: (kind, schema). Mismatches become scalar leaves."""
    atom = DEDUCED if s is None else _info(s).atom
    present = [v for v in values if v is not _MISSING and v is not None]
    if atom == DEDUCED:
        if present and all(isinstance(v, dict) for v in present):
            return MAP, None
        if present and all(isinstance(v, list) for v in present):
            return LIST, None
        return SCALAR, None
    if atom == LIST and any(not isinstance(v, list) for v in present):
        return SCALAR, s
    if atom == MAP and any(not isinstance(v, dict) for v in present):
        return SCALAR, s
    return atom, s


def _is_atomic(kind: str, s: dict | None) -> bool:
    if kind == LIST:
        return s is None or _info(s).list_atomic
    if kind == MAP:
        return s is not None and _info(s).map_atomic
    return True


def item_pe(s: dict | None, item: Any) -> PathElement:
    """listItemToPathElement for an associative list."""
    keys = _info(s).keys if s is not None else None
    if keys is None:
        return ("v", freeze(item))
    if item is None:
        raise TypedError("associative list with keys may not have a null element")
    if not isinstance(item, dict):
        raise TypedError("associative list with keys may not have non-map elements")
    fields = []
    for k in keys:
        if k in item:
            fields.append((k, freeze(item[k])))
        elif k in _KEY_DEFAULTS:
            fields.append((k, _KEY_DEFAULTS[k]))
    if keys and not fields:
        raise TypedError(f"associative list with keys has an element that omits all key fields "
                         f"{_go_strs(keys)} (and doesn't have default values for any key fields)")
    fields.sort(key=lambda kv: kv[0])
    return ("k", tuple(fields))


def _go_strs(xs: list[str]) -> str:
    return "[" + " ".join(go_quote(x) for x in xs) + "]"


# --------------------------------------------------------------------------- typed walkers

def to_field_set(obj: Any, s: dict | None, *, strict: bool = False) -> FieldSet:
    """TypedValue.ToFieldSet(): every leaf, list item and non-struct map entry."""
    out = FieldSet()
    errs: list[str] = []
    _to_set(obj, s, (), out.paths, errs, strict)
    if strict and errs:  # typed.ValidationErrors.Error()
        raise TypedError(errs[0] if len(errs) == 1 else "errors:\n" + "\n".join("  " + e for e in errs))
    return out


def _go_value(v: Any, sharp: bool) -> str:
    """fmt's %v (or %#v) of SMD's *value.valueUnstructured holding ``v``."""
    if sharp:
        return f"&value.valueUnstructured{{Value:{_go_sharp(v)}}}"
    from kubelite.api.patch import _gv

    return "&{" + _gv(v) + "}"


def _go_sharp(v: Any) -> str:
    if isinstance(v, str):
        return go_quote(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "interface {}(nil)"
    if isinstance(v, int | float):
        from kubelite.api.patch import _go_float

        return str(v) if isinstance(v, int) else _go_float(v)
    if isinstance(v, list):
        return "[]interface {}{" + ", ".join(_go_sharp_iface(x) for x in v) + "}"
    return "map[string]interface {}{" + ", ".join(f"{go_quote(k)}:{_go_sharp_iface(x)}" for k, x in sorted(
        v.items())) + "}"


def _go_sharp_iface(v: Any) -> str:
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v}"
    if isinstance(v, float):
        return _go_sharp(v)
    return _go_sharp(v)


def _go_type(v: Any) -> str:
    if isinstance(v, str):
        return "string"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, list):
        return "[]interface {}"
    return "map[string]interface {}"


def _scalar_error(v: Any, s: dict | None) -> str | None:
    """typed.validateScalar / listValue / mapValue messages for a value under schema ``s``."""
    if s is None or v is None:
        return None
    atom = _info(s).atom
    if atom == LIST:
        return None if isinstance(v, list) else f"expected list, got {_go_value(v, False)}"
    if atom == MAP:
        return None if isinstance(v, dict) else f"expected map, got {_go_value(v, False)}"
    if atom != SCALAR:
        return None
    ts = sch.types_of(s)
    if len(ts) != 1 or s.get("x-kubernetes-int-or-string"):
        if isinstance(v, dict | list):
            return f"expected any scalar, got {_go_value(v, False)}"
        return None
    t = next(iter(ts))
    if t == "string" and not isinstance(v, str):
        return f"expected string, got {_go_value(v, True)}"
    if t in ("integer", "number") and (isinstance(v, bool) or not isinstance(v, int | float)):
        return f"expected numeric (int or float), got {_go_type(v)}"
    if t == "boolean" and not isinstance(v, bool):
        return f"expected boolean, got {_go_value(v, False)}"
    return None


def _to_set(v: Any, s: dict | None, path: Path, out: set[Path], errs: list[str], check: bool = False) -> None:
    kind, s = _kind(s, v)
    if kind == SCALAR:
        if path:
            out.add(path)
        if check:
            bad = _scalar_error(v, s)
            if bad is not None:
                errs.append(f"{path_string(path)}: {bad}")
        return
    if _is_atomic(kind, s):
        if path:
            out.add(path)
        return
    if kind == LIST:
        if not isinstance(v, list):
            return
        items = _items_schema(s)
        pes: list[Any] = []
        seen: set = set()
        dups: set = set()
        for i, child in enumerate(v):
            try:
                pe = item_pe(s, child)
            except TypedError as e:
                errs.append(f"{path_string(path)}: element {i}: {e}")
                pes.append(None)
                continue
            pes.append(pe)
            if pe in seen:
                if pe not in dups:
                    dups.add(pe)
                    out.add(path + (pe,))
            else:
                seen.add(pe)
        for child, pe in zip(v, pes, strict=True):
            if pe is None or pe in dups:
                continue
            _to_set(child, items, path + (pe,), out, errs, check)
            out.add(path + (pe,))
        return
    if not isinstance(v, dict):
        return
    for k, val in v.items():
        fs, declared = field_schema(s, k)
        p = path + (("f", k),)
        _to_set(val, fs, p, out, errs, check)
        if val is None or (isinstance(val, dict) and not val) or not declared:
            out.add(p)


class Comparison:
    __slots__ = ("added", "modified", "removed")

    def __init__(self) -> None:
        self.added = FieldSet()
        self.modified = FieldSet()
        self.removed = FieldSet()

    def is_same(self) -> bool:
        return not (self.added or self.modified or self.removed)

    def exclude(self, fields: FieldSet | None) -> Comparison:
        if fields:
            self.added = self.added.recursive_difference(fields)
            self.modified = self.modified.recursive_difference(fields)
            self.removed = self.removed.recursive_difference(fields)
        return self


def compare(lhs: Any, rhs: Any, s: dict | None, ignored: FieldSet | None = None) -> Comparison:
    """TypedValue.Compare(): fields added, modified and removed going from lhs to rhs.

    With ``ignored``, the result is ``compare(lhs, rhs, s).exclude(ignored)``: the walk
    does not enter ignored subtrees at all."""
    cmp = Comparison()
    skip = ignored.paths if ignored else None
    w = _Walk(cmp.added.paths, cmp.modified.paths, cmp.removed.paths, skip)
    w.compare(lhs, rhs, s, ())
    return cmp


def _empty_container(v: Any, kind: str) -> bool:
    if v is _MISSING or v is None:
        return True
    if kind == LIST:
        return not isinstance(v, list) or not v
    return not isinstance(v, dict) or not v


_DUMPS_OPT = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS


def _unchanged(a: Any, b: Any) -> bool:
    """A quick ``deep_equal(a, b)`` for subtrees: True only when they are deep_equal.

    Python's ``==`` (C speed) rules out most differences; what it cannot see (``True == 1``,
    ``1 == 1.0``, NaN) shows in the sorted JSON, else ``deep_equal`` decides."""
    if a is not b and a != b:
        return False
    if type(a) is not dict and type(a) is not list:
        return deep_equal(a, b)
    try:
        ja = orjson.dumps(a, option=_DUMPS_OPT)
        jb = ja if a is b else orjson.dumps(b, option=_DUMPS_OPT)
    except (TypeError, orjson.JSONEncodeError):
        return deep_equal(a, b)
    if ja == jb and b"null" not in ja:  # NaN and Infinity serialize as null
        return True
    return deep_equal(a, b)


class _Walk:
    """TypedValue.Compare into three path sets, skipping the subtrees in ``skip``."""

    __slots__ = ("added", "modified", "removed", "skip", "skip_depth")

    def __init__(self, added: set[Path], modified: set[Path], removed: set[Path],
                 skip: set[Path] | None) -> None:
        self.added, self.modified, self.removed = added, modified, removed
        self.skip = skip or None
        self.skip_depth = max((len(p) for p in skip), default=0) if skip else 0

    def _skipped(self, p: Path) -> bool:
        return self.skip is not None and len(p) <= self.skip_depth and p in self.skip

    def compare(self, lhs: Any, rhs: Any, s: dict | None, path: Path) -> None:
        if lhs is _MISSING:
            self.add_all(rhs, s, path)
            return
        kind, s = _kind(s, lhs, rhs)
        if kind == SCALAR or _is_atomic(kind, s) or (_empty_container(lhs, kind) and _empty_container(rhs, kind)):
            if not path:
                return
            if rhs is _MISSING:
                self.removed.add(path)
            elif not deep_equal(lhs, rhs):
                self.modified.add(path)
            return
        if kind == LIST:
            self.compare_list(lhs if isinstance(lhs, list) else None, rhs if isinstance(rhs, list) else None,
                              s, path)
        else:
            lm = lhs if isinstance(lhs, dict) else {}
            rm = rhs if isinstance(rhs, dict) else {}
            for k, lv in lm.items():
                p = path + (("f", k),)
                if self.skip is not None and self._skipped(p):
                    continue
                rv = rm.get(k, _MISSING)
                if rv is not _MISSING and _unchanged(lv, rv):
                    continue
                self.compare(lv, rv, field_schema(s, k)[0], p)
            for k, rv in rm.items():
                if k in lm:
                    continue
                p = path + (("f", k),)
                if self.skip is not None and self._skipped(p):
                    continue
                self.add_all(rv, field_schema(s, k)[0], p)
        if path and rhs is _MISSING:
            self.removed.add(path)

    def add_all(self, v: Any, s: dict | None, path: Path) -> None:
        """compare(MISSING, v): everything in ``v`` is added (``_kind``/``_is_atomic``/
        ``_empty_container`` inlined for one value)."""
        info = None if s is None else _info(s)
        atom = DEDUCED if info is None else info.atom
        if atom == MAP:
            assert info is not None
            leaf = not isinstance(v, dict) or not v or info.map_atomic
            is_map = True
        elif atom == LIST:
            assert info is not None
            leaf = not isinstance(v, list) or not v or info.list_atomic
            is_map = False
        elif atom == DEDUCED and isinstance(v, dict):
            leaf, is_map, s = not v, True, None
        else:  # scalars, and deduced lists (atomic without a schema)
            leaf = True
        if leaf:
            if path:
                self.added.add(path)
            return
        skip = self.skip
        if skip is not None and len(path) >= self.skip_depth:
            skip = None  # nothing below this depth is skipped
        if is_map:
            fields = info.fields if s and info is not None else None
            for k, val in v.items():
                p = path + (("f", k),)
                if skip is not None and p in skip:
                    continue
                if fields is None:
                    fs = None
                else:
                    r = fields.get(k)
                    fs = (r if r is not None else field_schema(s, k))[0]
                self.add_all(val, fs, p)
        else:
            items = _items_schema(s)
            order, vals = _index(s, v)
            for pe in order:
                p = path + (pe,)
                if skip is not None and p in skip:
                    continue
                same = vals[pe]
                if len(same) == 1:
                    self.add_all(same[0], items, p)
                else:
                    self.added.add(p)
        if path:
            self.added.add(path)

    def compare_list(self, lhs: list | None, rhs: list | None, s: dict | None, path: Path) -> None:
        items = _items_schema(s)
        lorder, lvals = _index(s, lhs)
        rorder, rvals = _index(s, rhs)
        for pe in lorder + [pe for pe in rorder if pe not in lvals]:
            p = path + (pe,)
            if self.skip is not None and self._skipped(p):
                continue
            ll, rl = lvals.get(pe, ()), rvals.get(pe, ())
            if len(ll) <= 1 and len(rl) <= 1:
                if ll and rl and _unchanged(ll[0], rl[0]):
                    continue
                self.compare(ll[0] if ll else _MISSING, rl[0] if rl else _MISSING, items, p)
            elif len(ll) >= 2 and len(rl) >= 2:
                if not deep_equal(ll, rl):
                    self.modified.add(p)
            elif len(ll) >= 2:
                if rl:
                    self.add_all(rl[0], items, p)
                self.removed.add(p)
            else:
                if ll:
                    self.compare(ll[0], _MISSING, items, p)
                self.added.add(p)


def _index(s: dict | None, lst: list | None) -> tuple[list[PathElement], dict[PathElement, list[Any]]]:
    order: list[PathElement] = []
    values: dict[PathElement, list[Any]] = {}
    for child in lst or ():
        try:
            pe = item_pe(s, child)
        except TypedError:
            continue
        if pe in values:
            values[pe].append(child)
        else:
            values[pe] = [child]
            order.append(pe)
    return order, values


def merge(lhs: Any, rhs: Any, s: dict | None) -> Any:
    """TypedValue.Merge(): rhs (the applied configuration) wins; lists merge by key."""
    out = _merge(lhs, rhs, s, ())
    return None if out is _MISSING else out


def _merge(lhs: Any, rhs: Any, s: dict | None, path: Path) -> Any:
    if lhs is _MISSING:
        return copy.deepcopy(rhs)
    if rhs is _MISSING:
        return copy.deepcopy(lhs)
    kind, s = _kind(s, lhs, rhs)
    if kind == SCALAR or _is_atomic(kind, s) or (_empty_container(lhs, kind) and _empty_container(rhs, kind)):
        return copy.deepcopy(rhs)
    if kind == LIST:
        out = _merge_list(lhs if isinstance(lhs, list) else None, rhs if isinstance(rhs, list) else None,
                          s, path)
        return out if out else _MISSING
    lm = lhs if isinstance(lhs, dict) else {}
    rm = rhs if isinstance(rhs, dict) else {}
    res: dict[str, Any] = {}
    for k in list(lm) + [k for k in rm if k not in lm]:
        fs, _ = field_schema(s, k)
        v = _merge(lm.get(k, _MISSING), rm.get(k, _MISSING), fs, path + (("f", k),))
        if v is not _MISSING:
            res[k] = v
    return res if res else _MISSING


def _merge_list(lhs: list | None, rhs: list | None, s: dict | None, path: Path) -> list[Any]:
    items = _items_schema(s)
    lhs = lhs or []
    rhs = rhs or []
    rpes: list[PathElement] = []
    robs: dict[PathElement, Any] = {}
    for i, child in enumerate(rhs):
        try:
            pe = item_pe(s, child)
        except TypedError as e:
            raise TypedError(f"{path_string(path)}: element {i}: {e}") from None
        if pe in robs:
            raise TypedError(f"{path_string(path)}: duplicate entries for key {pe_string(pe)}")
        robs[pe] = child
        rpes.append(pe)
    lpes: list[PathElement] = []
    lidx: list[int] = []
    lobs: dict[PathElement, Any] = {}
    for i, child in enumerate(lhs):
        try:
            pe = item_pe(s, child)
        except TypedError:
            continue
        lobs[pe] = None if pe in lobs else child  # duplicates merge as null
        lpes.append(pe)
        lidx.append(i)

    shared = [pe for pe in rpes if pe in lobs]
    next_shared = shared.pop(0) if shared else None
    merged_rhs: set = set()
    out: list[Any] = []

    def put(v: Any) -> None:
        if v is not _MISSING:
            out.append(v)

    li = ri = 0
    nl, nr = len(lpes), len(rpes)
    while li < nl or ri < nr:
        if li < nl and ri < nr:
            pe = lpes[li]
            if pe == rpes[ri]:
                merged_rhs.add(pe)
                put(_merge(lobs[pe], robs[pe], items, path + (pe,)))
                li += 1
                ri += 1
                next_shared = shared.pop(0) if shared else None
                continue
            if pe in robs and next_shared is not None and next_shared != pe:
                li += 1
                continue
        if li < nl:
            pe = lpes[li]
            if pe not in robs:
                put(_merge(lhs[lidx[li]], _MISSING, items, path + (pe,)))
                li += 1
                continue
            if pe in merged_rhs:
                li += 1
        if ri < nr:
            pe = rpes[ri]
            merged_rhs.add(pe)
            put(_merge(lobs.get(pe, _MISSING), robs[pe], items, path + (pe,)))
            ri += 1
            if next_shared is not None and next_shared == pe:
                next_shared = shared.pop(0) if shared else None
    return out


def remove_items(obj: Any, to_remove: FieldSet, s: dict | None) -> Any:
    """TypedValue.RemoveItems(): drop every member of ``to_remove`` (and what is below it)."""
    if not to_remove:
        return copy.deepcopy(obj)
    out = _remove(obj, _trie(to_remove.paths), s)
    return {} if out is _MISSING else out


def _remove(v: Any, node: _Node, s: dict | None) -> Any:
    kind, s = _kind(s, v)
    if kind == SCALAR or _is_atomic(kind, s) or _empty_container(v, kind):
        return copy.deepcopy(v)
    if kind == LIST:
        items = _items_schema(s)
        new: list[Any] = []
        for child in v:
            try:
                pe = item_pe(s, child)
            except TypedError:
                new.append(copy.deepcopy(child))
                continue
            sub = node.children.get(pe)
            if sub is not None and sub.member:
                continue
            if sub is not None and sub.children:
                child = _remove(child, sub, items)
                if child is _MISSING:
                    continue
                new.append(child)
            else:
                new.append(copy.deepcopy(child))
        return new if new else _MISSING
    res: dict[str, Any] = {}
    for k, val in v.items():
        sub = node.children.get(("f", k))
        if sub is not None and sub.member:
            continue
        if sub is not None and sub.children:
            fs, declared = field_schema(s, k)
            val = _remove(val, sub, fs)
            if val is _MISSING:
                if declared and fs is not None and schema_atom(fs) == MAP and not fs.get("additionalProperties"):
                    res[k] = {}
                continue
            res[k] = val
        else:
            res[k] = copy.deepcopy(val)
    return res if res else _MISSING


def ensure_named_fields_are_members(fs: FieldSet, s: dict | None) -> FieldSet:
    """Set.EnsureNamedFieldsAreMembers(): declared struct fields above members become members."""
    out = set(fs.paths)
    for p in fs.paths:
        cur = s
        for i, pe in enumerate(p[:-1]):
            if cur is None:
                break
            if pe[0] == "f":
                nxt, declared = field_schema(cur, pe[1]) if schema_atom(cur) == MAP else (None, False)
                if declared:
                    out.add(p[:i + 1])
                cur = nxt
            elif pe[0] == "k" and schema_atom(cur) == LIST:
                cur = sch.items_schema(cur)
            else:
                break
    return FieldSet(out)
