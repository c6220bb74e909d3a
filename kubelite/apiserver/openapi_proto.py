"""The /openapi/v2 document in protobuf (gnostic's ``openapi.v2.Document``), as kube-openapi
serves it for ``Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf``.

kubectl reads this form, not the JSON one: its client-side schema validation (used when an
object is not a served resource, e.g. ``kind: List`` files) parses the protobuf document.
The encoder writes proto3 wire format directly from the JSON document, following the field
numbers of gnostic's ``openapiv2/OpenAPIv2.proto``: no generated code (no protoc here, and no
package on PyPI carries these messages). Values gnostic keeps as ``Any`` (defaults, examples,
enum values, ``x-`` extensions) are carried as their YAML text — JSON is YAML — which is what
kube-openapi reads back (``Any.yaml``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

import orjson

PROTO_MEDIA_TYPES = ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
                     "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")
PROTO_CONTENT_TYPE = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"

Obj = dict[str, Any]


# --------------------------------------------------------------------------- wire format
def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # int64 two's complement, as protobuf encodes negative varints
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _bytes(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data


def _str(field: int, s: Any) -> bytes:
    if not isinstance(s, str) or not s:
        return b""
    return _bytes(field, s.encode())


def _strs(field: int, items: Any) -> bytes:
    return b"".join(_bytes(field, str(s).encode()) for s in items or [] if isinstance(s, str))


def _bool(field: int, v: Any) -> bytes:
    return _key(field, 0) + b"\x01" if v is True else b""


def _int(field: int, v: Any) -> bytes:
    if isinstance(v, bool) or not isinstance(v, int) or v == 0:
        return b""
    return _key(field, 0) + _varint(v)


def _double(field: int, v: Any) -> bytes:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v == 0:
        return b""
    return _key(field, 1) + struct.pack("<d", float(v))


def _msg(field: int, payload: bytes, always: bool = False) -> bytes:
    return _bytes(field, payload) if payload or always else b""


def _any(value: Any) -> bytes:
    """gnostic ``Any``: field 2, the value's YAML (here JSON) text."""
    return _str(2, orjson.dumps(value).decode())


def _named_any(field: int, name: str, value: Any) -> bytes:
    return _bytes(field, _str(1, name) + _msg(2, _any(value), always=True))


def _extensions(field: int, obj: Obj) -> bytes:
    return b"".join(_named_any(field, k, v) for k, v in obj.items() if k.startswith("x-"))


# --------------------------------------------------------------------------- messages
def schema(s: Obj) -> bytes:
    """openapi.v2.Schema."""
    out = [_str(1, s.get("$ref")), _str(2, s.get("format")), _str(3, s.get("title")),
           _str(4, s.get("description"))]
    if "default" in s:
        out.append(_msg(5, _any(s["default"]), always=True))
    out += [_double(6, s.get("multipleOf")), _double(7, s.get("maximum")), _bool(8, s.get("exclusiveMaximum")),
            _double(9, s.get("minimum")), _bool(10, s.get("exclusiveMinimum")), _int(11, s.get("maxLength")),
            _int(12, s.get("minLength")), _str(13, s.get("pattern")), _int(14, s.get("maxItems")),
            _int(15, s.get("minItems")), _bool(16, s.get("uniqueItems")), _int(17, s.get("maxProperties")),
            _int(18, s.get("minProperties")), _strs(19, s.get("required"))]
    out += [_msg(20, _any(v), always=True) for v in s.get("enum") or []]
    ap = s.get("additionalProperties")
    if isinstance(ap, dict):
        out.append(_msg(21, _msg(1, schema(ap), always=True), always=True))
    elif isinstance(ap, bool):
        out.append(_msg(21, _key(2, 0) + (b"\x01" if ap else b"\x00"), always=True))
    t = s.get("type")
    if t is not None:
        out.append(_msg(22, _strs(1, t if isinstance(t, list) else [t]), always=True))
    items = s.get("items")
    if isinstance(items, dict):
        out.append(_msg(23, _msg(1, schema(items), always=True), always=True))
    elif isinstance(items, list):
        out.append(_msg(23, b"".join(_msg(1, schema(i), always=True) for i in items if isinstance(i, dict)),
                        always=True))
    out += [_msg(24, schema(x), always=True) for x in s.get("allOf") or [] if isinstance(x, dict)]
    props = s.get("properties")
    if isinstance(props, dict):
        out.append(_msg(25, _named(props, schema), always=True))
    out += [_str(26, s.get("discriminator")), _bool(27, s.get("readOnly"))]
    if "example" in s:
        out.append(_msg(30, _any(s["example"]), always=True))
    out.append(_extensions(31, s))
    return b"".join(out)


def _named(m: Obj, encode: Any, field: int = 1) -> bytes:
    """A gnostic ``Named<X>`` list (map keys in order): name 1, value 2."""
    return b"".join(_bytes(field, _str(1, k) + _msg(2, encode(v), always=True)) for k, v in m.items())


def _json_reference(p: Obj) -> bytes:
    return _str(1, p.get("$ref")) + _str(2, p.get("description"))


def _primitive_items(it: Obj) -> bytes:
    return _str(1, it.get("type")) + _str(2, it.get("format")) + (
        _msg(3, _primitive_items(it["items"]), always=True) if isinstance(it.get("items"), dict) else b"") + \
        _str(4, it.get("collectionFormat")) + _extensions(18, it)


def _non_body(p: Obj) -> bytes:
    """NonBodyParameter: header 1, formData 2, query 3, path 4 sub-schemas (their fields line
    up for what the API server emits: required, in, description, name, then type and the rest)."""
    where = p.get("in")
    common = _bool(1, p.get("required")) + _str(2, where) + _str(3, p.get("description")) + _str(4, p.get("name"))
    if where in ("query", "formData"):
        rest = _bool(5, p.get("allowEmptyValue")) + _str(6, p.get("type")) + _str(7, p.get("format"))
        if isinstance(p.get("items"), dict):
            rest += _msg(8, _primitive_items(p["items"]), always=True)
        rest += _str(9, p.get("collectionFormat")) + b"".join(_msg(21, _any(v), always=True)
                                                              for v in p.get("enum") or [])
        rest += _bool(20, p.get("uniqueItems")) + _extensions(23, p)
        return _msg(3 if where == "query" else 2, common + rest, always=True)
    rest = _str(5, p.get("type")) + _str(6, p.get("format"))
    if isinstance(p.get("items"), dict):
        rest += _msg(7, _primitive_items(p["items"]), always=True)
    rest += _str(8, p.get("collectionFormat")) + _bool(19, p.get("uniqueItems")) + _extensions(22, p)
    return _msg(1 if where == "header" else 4, common + rest, always=True)


def _parameter(p: Obj) -> bytes:
    if p.get("in") == "body":
        body = _str(1, p.get("description")) + _str(2, p.get("name")) + _str(3, "body") + \
            _bool(4, p.get("required")) + (_msg(5, schema(p["schema"]), always=True)
                                           if isinstance(p.get("schema"), dict) else b"") + _extensions(6, p)
        return _msg(1, body, always=True)
    return _msg(2, _non_body(p), always=True)


def _parameters_item(p: Obj) -> bytes:
    if "$ref" in p:
        return _msg(2, _json_reference(p), always=True)
    return _msg(1, _parameter(p), always=True)


def _response_value(r: Obj) -> bytes:
    if "$ref" in r:
        return _msg(2, _json_reference(r), always=True)
    resp = _str(1, r.get("description"))
    if isinstance(r.get("schema"), dict):
        resp += _msg(2, _msg(1, schema(r["schema"]), always=True), always=True)
    return _msg(1, resp + _extensions(5, r), always=True)


def _operation(op: Obj) -> bytes:
    out = _strs(1, op.get("tags")) + _str(2, op.get("summary")) + _str(3, op.get("description")) + \
        _str(5, op.get("operationId")) + _strs(6, op.get("produces")) + _strs(7, op.get("consumes"))
    out += b"".join(_bytes(8, _parameters_item(p)) for p in op.get("parameters") or [] if isinstance(p, dict))
    responses = op.get("responses") or {}
    out += _msg(9, _named({k: v for k, v in responses.items() if not k.startswith("x-")}, _response_value)
                + _extensions(2, responses), always=True)
    out += _strs(10, op.get("schemes")) + _bool(11, op.get("deprecated")) + _extensions(13, op)
    return out


_METHODS = {"get": 2, "put": 3, "post": 4, "delete": 5, "options": 6, "head": 7, "patch": 8}


def _path_item(item: Obj) -> bytes:
    out = _str(1, item.get("$ref"))
    for method, field in _METHODS.items():
        if isinstance(item.get(method), dict):
            out += _msg(field, _operation(item[method]), always=True)
    out += b"".join(_bytes(9, _parameters_item(p)) for p in item.get("parameters") or [] if isinstance(p, dict))
    return out + _extensions(10, item)


def _security_definition(d: Obj) -> bytes:
    if d.get("type") == "apiKey":
        body = _str(1, "apiKey") + _str(2, d.get("name")) + _str(3, d.get("in")) + _str(4, d.get("description"))
        return _msg(2, body + _extensions(5, d), always=True)
    if d.get("type") == "basic":
        return _msg(1, _str(1, "basic") + _str(2, d.get("description")) + _extensions(3, d), always=True)
    return b""


def _security(reqs: Iterable[Obj]) -> bytes:
    return b"".join(_bytes(12, _named(r, lambda scopes: _strs(1, scopes))) for r in reqs)


def document(doc: Obj) -> bytes:
    """openapi.v2.Document for the served JSON document ``doc``."""
    info = doc.get("info") or {}
    out = _str(1, doc.get("swagger")) + _msg(2, _str(1, info.get("title")) + _str(2, info.get("version")) +
                                            _str(3, info.get("description")) + _extensions(7, info))
    out += _str(3, doc.get("host")) + _str(4, doc.get("basePath")) + _strs(5, doc.get("schemes")) + \
        _strs(6, doc.get("consumes")) + _strs(7, doc.get("produces"))
    paths = doc.get("paths") or {}
    out += _msg(8, _extensions(1, paths) + b"".join(
        _bytes(2, _str(1, k) + _msg(2, _path_item(v), always=True)) for k, v in paths.items()
        if not k.startswith("x-")), always=True)
    out += _msg(9, _named(doc.get("definitions") or {}, schema), always=True)
    out += _security(doc.get("security") or [])
    sd = doc.get("securityDefinitions") or {}
    if sd:
        out += _msg(13, _named(sd, _security_definition))
    return out + _extensions(16, doc)


def wants_protobuf(accept: str) -> bool | None:
    """Content negotiation for /openapi/v2 as kube-openapi does it: True for the protobuf
    document, False for JSON, None when the client accepts neither (406)."""
    if not accept.strip():
        return False
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        media = media.strip().lower()
        if "q=0" in params.replace(" ", "") and "q=0." not in params.replace(" ", ""):
            continue
        if media in PROTO_MEDIA_TYPES:
            return True
        if media in ("application/json", "application/*", "*/*"):
            return False
    return None


__all__ = ["PROTO_CONTENT_TYPE", "PROTO_MEDIA_TYPES", "document", "schema", "wants_protobuf"]
