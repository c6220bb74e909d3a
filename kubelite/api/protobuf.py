"""Kubernetes protobuf wire format (``application/vnd.kubernetes.protobuf``).

client-go's typed clients (and so ``kubectl create namespace``/``configmap``/
``secret``/``serviceaccount``/``token``, ``kubectl auth can-i`` ...) send request
bodies of built-in kinds as protobuf and do not fall back to JSON.  This module
turns such a body into exactly the dict the JSON encoding of the same Go object
would give, so the rest of the server never sees protobuf.

Wire layout (k8s.io/apimachinery/pkg/runtime/serializer/protobuf)::

    "k8s\\x00" + runtime.Unknown{typeMeta{apiVersion=1, kind=2}=1, raw=2,
                                 contentEncoding=3, contentType=4}

``raw`` is the object message.  Field numbers come from ``protobuf_fields.json``
(extracted from kubernetes/api and kubernetes/apimachinery ``generated.proto``
plus the ``json``/``protobuf`` struct tags of the Go types), one row per field::

    [json name, proto type, label ("o" | "r" | "m"), flags(, map key type)]

flags: 1 Go pointer, 2 ``omitempty``, 4 embedded (inlined into the parent JSON
object), 8 ``omitzero``, 16 ``json:"-"``, 32 Go slice/map (nil when absent).
A message marked ``"l": 1`` is a named Go slice wrapper (``Verbs``,
``ExtraValue``): JSON renders it as the list of its ``items``.

Go's encoding/json rules are mimicked: a non-pointer scalar is always emitted
unless ``omitempty`` and zero; a non-pointer struct is always emitted (``omitempty``
does not apply to structs); nil pointers/slices/maps are ``null`` unless
``omitempty``.  Public API: :func:`is_protobuf`, :func:`decode`, :func:`encode`.
"""

from __future__ import annotations

import base64
import json
import re
import struct
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from kubelite.api.errors import StatusError, bad_request

MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
MAGIC = b"k8s\x00"

_META = "k8s.io.apimachinery.pkg.apis.meta.v1"
_TIME = f"{_META}.Time"
_MICROTIME = f"{_META}.MicroTime"
_DURATION = f"{_META}.Duration"
_FIELDSV1 = f"{_META}.FieldsV1"
_QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"
_QUANTITY_VALUE = "k8s.io.apimachinery.pkg.api.resource.QuantityValue"
_INTSTR = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
_RAWEXT = "k8s.io.apimachinery.pkg.runtime.RawExtension"
_UNKNOWN = "k8s.io.apimachinery.pkg.runtime.Unknown"

F_POINTER, F_OMITEMPTY, F_INLINE, F_OMITZERO, F_SKIP, F_COLLECTION = 1, 2, 4, 8, 16, 32

_VARINT_TYPES = {"int32", "int64", "uint32", "uint64", "bool", "sint32", "sint64"}
_ZERO = {"string": "", "bool": False, "bytes": "", "double": 0.0, "float": 0.0}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_GO_ZERO_TIME_UNIX = -62135596800  # time.Time{}.Unix()


class _Field:
    __slots__ = ("num", "json", "type", "label", "flags", "key")

    def __init__(self, num: int, row: list[Any]) -> None:
        self.num = num
        self.json: str = row[0]
        self.type: str = row[1]
        self.label: str = row[2]
        self.flags: int = row[3]
        self.key: str | None = row[4] if len(row) > 4 else None


class _Message:
    __slots__ = ("name", "fields", "by_num", "is_list")

    def __init__(self, name: str, spec: dict[str, Any]) -> None:
        self.name = name
        self.fields = sorted((_Field(int(n), r) for n, r in spec["f"].items()), key=lambda f: f.num)
        self.by_num = {f.num: f for f in self.fields}
        self.is_list = bool(spec.get("l"))


@cache
def _table() -> tuple[dict[str, str], dict[str, _Message]]:
    data = json.loads((Path(__file__).with_name("protobuf_fields.json")).read_text())
    msgs = {name: _Message(name, spec) for name, spec in data["messages"].items()}
    return data["groups"], msgs


def is_protobuf(content_type: str | None) -> bool:
    """True for ``application/vnd.kubernetes.protobuf`` (parameters ignored)."""
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == MEDIA_TYPE


class MalformedError(Exception):
    """Bytes that are not a well-formed protobuf message."""


# --------------------------------------------------------------------------- wire reading


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise MalformedError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise MalformedError("varint too long")


def parse_fields(buf: bytes) -> dict[int, list[tuple[int, Any]]]:
    """Split a message into {field number: [(wire type, value)]} in wire order."""
    out: dict[int, list[tuple[int, Any]]] = {}
    pos, n = 0, len(buf)
    while pos < n:
        val: int | bytes
        tag, pos = _varint(buf, pos)
        num, wt = tag >> 3, tag & 7
        if num == 0:
            raise MalformedError("field number 0")
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 1:
            if pos + 8 > n:
                raise MalformedError("truncated fixed64")
            val, pos = buf[pos:pos + 8], pos + 8
        elif wt == 2:
            ln, pos = _varint(buf, pos)
            if pos + ln > n:
                raise MalformedError(f"truncated length-delimited field {num}")
            val, pos = buf[pos:pos + ln], pos + ln
        elif wt == 5:
            if pos + 4 > n:
                raise MalformedError("truncated fixed32")
            val, pos = buf[pos:pos + 4], pos + 4
        else:
            raise MalformedError(f"unsupported wire type {wt} for field {num}")
        out.setdefault(num, []).append((wt, val))
    return out


def _signed(v: int, bits: int) -> int:
    v &= (1 << 64) - 1
    if v >= 1 << 63:
        v -= 1 << 64
    if bits == 32:
        v = ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    return v


def _scalar(typ: str, wt: int, val: Any) -> Any:
    if typ in _VARINT_TYPES:
        if wt != 0:
            raise MalformedError(f"{typ} field with wire type {wt}")
        if typ == "bool":
            return val != 0
        if typ == "int32":
            return _signed(val, 32)
        if typ == "int64":
            return _signed(val, 64)
        if typ in ("sint32", "sint64"):
            return (val >> 1) ^ -(val & 1)
        return val
    if typ == "string":
        if wt != 2:
            raise MalformedError(f"string field with wire type {wt}")
        try:
            return val.decode("utf-8")
        except UnicodeDecodeError as e:
            raise MalformedError("invalid UTF-8 in string field") from e
    if typ == "bytes":
        if wt != 2:
            raise MalformedError(f"bytes field with wire type {wt}")
        return base64.b64encode(val).decode("ascii")
    if typ in ("double", "fixed64", "sfixed64"):
        if wt != 1:
            raise MalformedError(f"{typ} field with wire type {wt}")
        return struct.unpack("<" + {"double": "d", "fixed64": "Q", "sfixed64": "q"}[typ], val)[0]
    if typ in ("float", "fixed32", "sfixed32"):
        if wt != 5:
            raise MalformedError(f"{typ} field with wire type {wt}")
        return struct.unpack("<" + {"float": "f", "fixed32": "I", "sfixed32": "i"}[typ], val)[0]
    raise MalformedError(f"unknown scalar type {typ}")


def _repeated_scalars(typ: str, vals: list[tuple[int, Any]]) -> list[Any]:
    out: list[Any] = []
    for wt, val in vals:
        if wt == 2 and typ not in ("string", "bytes"):  # packed
            pos = 0
            if typ in _VARINT_TYPES:
                while pos < len(val):
                    v, pos = _varint(val, pos)
                    out.append(_scalar(typ, 0, v))
            else:
                size, wt2 = (8, 1) if typ in ("double", "fixed64", "sfixed64") else (4, 5)
                if len(val) % size:
                    raise MalformedError(f"bad packed {typ} length")
                out.extend(_scalar(typ, wt2, val[i:i + size]) for i in range(0, len(val), size))
        else:
            out.append(_scalar(typ, wt, val))
    return out


def _last_scalar(fields: dict[int, list[tuple[int, Any]]], num: int, typ: str, default: Any) -> Any:
    vals = fields.get(num)
    return _scalar(typ, *vals[-1]) if vals else default


def _msg_bytes(vals: list[tuple[int, Any]], what: str) -> bytes:
    # Repeated occurrences of a singular message field merge == concatenation.
    parts = []
    for wt, val in vals:
        if wt != 2:
            raise MalformedError(f"message field {what} with wire type {wt}")
        parts.append(val)
    return b"".join(parts)


# --------------------------------------------------------------------------- Go value rendering


def _rfc3339(seconds: int, micros: int | None = None) -> str | None:
    if seconds == _GO_ZERO_TIME_UNIX and not micros:
        return None  # time.Time{} -> JSON null
    try:
        t = _EPOCH + timedelta(seconds=seconds, microseconds=micros or 0)
    except OverflowError as e:
        raise MalformedError(f"timestamp out of range: {seconds}") from e
    base = f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
    return base + ("Z" if micros is None else f".{t.microsecond:06d}Z")


def _fmt_frac(v: int, prec: int) -> tuple[str, int]:
    digits = ""
    printed = False
    for _ in range(prec):
        d = v % 10
        printed = printed or d != 0
        if printed:
            digits = str(d) + digits
        v //= 10
    return ("." + digits if printed else ""), v


def go_duration(ns: int) -> str:
    """time.Duration.String()."""
    if ns == 0:
        return "0s"
    neg, u = ns < 0, abs(ns)
    if u < 1_000_000_000:
        if u < 1_000:
            s = f"{u}ns"
        elif u < 1_000_000:
            frac, whole = _fmt_frac(u, 3)
            s = f"{whole}{frac}µs"
        else:
            frac, whole = _fmt_frac(u, 6)
            s = f"{whole}{frac}ms"
    else:
        frac, secs = _fmt_frac(u, 9)
        s = f"{secs % 60}{frac}s"
        mins = secs // 60
        if mins:
            s = f"{mins % 60}m" + s
            hours = mins // 60
            if hours:
                s = f"{hours}h" + s
    return "-" + s if neg else s


_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
                   "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(s: str) -> int:
    """time.ParseDuration (nanoseconds)."""
    text, sign = s.strip(), 1
    if text[:1] in "+-" and text:
        sign, text = (-1 if text[0] == "-" else 1), text[1:]
    if text == "0":
        return 0
    pos, total = 0, 0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        num, unit = m.groups()
        whole, _, frac = num.partition(".")
        scale = _DURATION_UNITS[unit]
        total += int(whole or 0) * scale
        if frac:
            total += int(frac) * scale // 10 ** len(frac)
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {s!r}")
    return sign * total


def _json_raw(raw: bytes, what: str) -> Any:
    if raw.startswith(MAGIC):
        return _decode_envelope(raw)
    try:
        return json.loads(raw)
    except ValueError as e:
        raise MalformedError(f"{what} does not hold JSON") from e


def _special(name: str, buf: bytes) -> tuple[bool, Any]:
    if name in (_TIME, _MICROTIME):
        if not buf:
            return True, None
        f = parse_fields(buf)
        secs = _last_scalar(f, 1, "int64", 0)
        if name == _TIME:
            return True, _rfc3339(secs)  # nanos are dropped, as by metav1.Time.Unmarshal
        nanos = _last_scalar(f, 2, "int32", 0)
        return True, _rfc3339(secs, nanos // 1000)
    if name == _DURATION:
        return True, go_duration(_last_scalar(parse_fields(buf), 1, "int64", 0))
    if name in (_QUANTITY, _QUANTITY_VALUE):
        return True, _last_scalar(parse_fields(buf), 1, "string", "") or "0"
    if name == _INTSTR:
        f = parse_fields(buf)
        if _last_scalar(f, 1, "int64", 0) == 1:
            return True, _last_scalar(f, 3, "string", "")
        return True, _last_scalar(f, 2, "int32", 0)
    if name == _RAWEXT:
        raw = parse_fields(buf).get(1)
        return True, _json_raw(raw[-1][1], "RawExtension") if raw and raw[-1][1] else None
    if name == _FIELDSV1:
        raw = parse_fields(buf).get(1)
        return True, _json_raw(raw[-1][1], "FieldsV1") if raw and raw[-1][1] else None
    if name == _UNKNOWN:
        raw = parse_fields(buf).get(2)
        return True, _json_raw(raw[-1][1], "Unknown") if raw and raw[-1][1] else None
    return False, None


def _is_go_zero(v: Any) -> bool:
    return v is None or v is False or v == 0 or v == "" or v == [] or v == {}


def _message(name: str, buf: bytes) -> Any:
    handled, value = _special(name, buf)
    if handled:
        return value
    msg = _table()[1].get(name)
    if msg is None:
        raise MalformedError(f"no protobuf schema for message {name}")
    fields = parse_fields(buf)
    if msg.is_list:
        items = msg.by_num[1]
        vals = fields.get(1)
        if not vals:
            return None
        return _repeated(items, vals)
    out: dict[str, Any] = {}
    _fill(msg, fields, out)
    return out


def _element(f: _Field, wt: int, val: Any) -> Any:
    if f.type in _message_types():
        if wt != 2:
            raise MalformedError(f"message field {f.json} with wire type {wt}")
        return _message(f.type, val)
    return _scalar(f.type, wt, val)


@cache
def _message_types() -> frozenset[str]:
    return frozenset(_table()[1]) | {_TIME, _MICROTIME, _DURATION, _QUANTITY, _QUANTITY_VALUE, _INTSTR,
                                      _RAWEXT, _FIELDSV1, _UNKNOWN}


def _repeated(f: _Field, vals: list[tuple[int, Any]]) -> list[Any]:
    if f.type in _message_types():
        return [_element(f, wt, v) for wt, v in vals]
    return _repeated_scalars(f.type, vals)


def _map(f: _Field, vals: list[tuple[int, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    is_msg = f.type in _message_types()
    for wt, entry in vals:
        if wt != 2:
            raise MalformedError(f"map field {f.json} with wire type {wt}")
        ef = parse_fields(entry)
        key = _last_scalar(ef, 1, f.key or "string", "")
        v = ef.get(2)
        if is_msg:
            value = _message(f.type, _msg_bytes(v, f.json) if v else b"")
        elif v:
            value = _scalar(f.type, *v[-1])
        else:
            value = _ZERO.get(f.type, 0)
        out[str(key)] = value
    return out


def _fill(msg: _Message, fields: dict[int, list[tuple[int, Any]]], out: dict[str, Any]) -> None:
    mtypes = _message_types()
    for f in msg.fields:
        if f.flags & F_SKIP:
            continue
        vals = fields.get(f.num)
        is_msg = f.type in mtypes
        if f.flags & F_INLINE:
            if f.flags & F_POINTER and not vals:
                continue
            sub = _table()[1].get(f.type)
            if sub is None:
                raise MalformedError(f"no protobuf schema for message {f.type}")
            _fill(sub, parse_fields(_msg_bytes(vals, f.json)) if vals else {}, out)
            continue
        value: Any
        if f.label == "r":
            value = _repeated(f, vals) if vals else None
        elif f.label == "m":
            value = _map(f, vals) if vals else None
        elif vals:
            value = _message(f.type, _msg_bytes(vals, f.json)) if is_msg else _scalar(f.type, *vals[-1])
        elif f.flags & (F_POINTER | F_COLLECTION):
            value = None
        elif is_msg:
            value = _message(f.type, b"")  # non-pointer struct: its zero value
        else:
            value = _ZERO.get(f.type, 0)
        if f.flags & (F_POINTER | F_COLLECTION) or (f.label in ("r", "m")):
            if value is None or (f.flags & F_COLLECTION and not value):
                if f.flags & (F_OMITEMPTY | F_OMITZERO):
                    continue
                value = None
        elif is_msg:
            # omitempty never applies to Go structs; omitzero does.
            if f.flags & F_OMITZERO and value == _message(f.type, b""):
                continue
        elif f.flags & (F_OMITEMPTY | F_OMITZERO) and _is_go_zero(value):
            continue
        out[f.json] = value


# --------------------------------------------------------------------------- envelope


def message_name(api_version: str, kind: str) -> str | None:
    """The protobuf message for apiVersion/kind, or None when we have no schema for it."""
    groups, msgs = _table()
    pkg = groups.get(api_version)
    if pkg and f"{pkg}.{kind}" in msgs:
        return f"{pkg}.{kind}"
    if f"{_META}.{kind}" in msgs:  # DeleteOptions, Status, ... are registered in every group
        return f"{_META}.{kind}"
    return None


def _decode_envelope(raw: bytes) -> dict[str, Any]:
    if not raw.startswith(MAGIC):
        raise MalformedError("missing the k8s protobuf magic prefix")
    env = parse_fields(raw[len(MAGIC):])
    tm_vals = env.get(1)
    tm = parse_fields(_msg_bytes(tm_vals, "typeMeta")) if tm_vals else {}
    api_version = _last_scalar(tm, 1, "string", "")
    kind = _last_scalar(tm, 2, "string", "")
    if not kind:
        raise MalformedError("object kind is not set in the protobuf envelope")
    encoding = _last_scalar(env, 3, "string", "")
    if encoding:
        raise MalformedError(f"unsupported protobuf content encoding {encoding!r}")
    name = message_name(api_version, kind)
    if name is None:
        raise MalformedError(f"no protobuf decoder for kind {kind!r} in version {api_version!r}")
    body = env.get(2)
    obj = _message(name, _msg_bytes(body, "raw") if body else b"")
    if not isinstance(obj, dict):
        raise MalformedError(f"{kind} does not decode to an object")
    return {"kind": kind, "apiVersion": api_version, **obj}


def decode(raw: bytes) -> dict[str, Any]:
    """Decode a ``application/vnd.kubernetes.protobuf`` body into its JSON-shaped dict.

    Raises :class:`~kubelite.api.errors.StatusError` (400 BadRequest) for anything
    malformed or for a kind without a schema.
    """
    try:
        return _decode_envelope(bytes(raw))
    except StatusError:
        raise
    except MalformedError as e:
        raise bad_request(f"unable to decode protobuf body: {e}") from None
    except (ValueError, TypeError, KeyError, IndexError, struct.error, RecursionError) as e:
        raise bad_request(f"unable to decode protobuf body: {type(e).__name__}: {e}") from None


# --------------------------------------------------------------------------- encoding (tests, best effort)


def _put_varint(out: bytearray, v: int) -> None:
    v &= (1 << 64) - 1
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return


def _put_tag(out: bytearray, num: int, wt: int) -> None:
    _put_varint(out, num << 3 | wt)


def put_bytes(out: bytearray, num: int, data: bytes) -> None:
    _put_tag(out, num, 2)
    _put_varint(out, len(data))
    out += data


def _put_scalar(out: bytearray, num: int, typ: str, v: Any) -> None:
    if typ in _VARINT_TYPES:
        _put_tag(out, num, 0)
        if typ in ("sint32", "sint64"):
            v = (v << 1) ^ (v >> 63)
        _put_varint(out, int(v))
    elif typ == "string":
        put_bytes(out, num, str(v).encode("utf-8"))
    elif typ == "bytes":
        put_bytes(out, num, base64.b64decode(v) if isinstance(v, str) else bytes(v))
    elif typ in ("double", "fixed64", "sfixed64"):
        _put_tag(out, num, 1)
        out += struct.pack("<" + {"double": "d", "fixed64": "Q", "sfixed64": "q"}[typ], v)
    elif typ in ("float", "fixed32", "sfixed32"):
        _put_tag(out, num, 5)
        out += struct.pack("<" + {"float": "f", "fixed32": "I", "sfixed32": "i"}[typ], v)
    else:
        raise ValueError(f"unknown scalar type {typ}")


def _parse_time(s: str, micro: bool) -> tuple[int, int]:
    t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    delta = t - _EPOCH
    secs = delta.days * 86400 + delta.seconds
    return secs, (delta.microseconds * 1000 if micro else 0)


def _encode_special(name: str, v: Any) -> bytes | None:
    out = bytearray()
    if name in (_TIME, _MICROTIME):
        if v is not None:
            secs, nanos = _parse_time(v, name == _MICROTIME)
            _put_scalar(out, 1, "int64", secs)
            _put_scalar(out, 2, "int32", nanos)
        return bytes(out)
    if name == _DURATION:
        _put_scalar(out, 1, "int64", parse_go_duration(v) if isinstance(v, str) else int(v or 0))
        return bytes(out)
    if name in (_QUANTITY, _QUANTITY_VALUE):
        _put_scalar(out, 1, "string", str(v))
        return bytes(out)
    if name == _INTSTR:
        is_str = isinstance(v, str)
        _put_scalar(out, 1, "int64", 1 if is_str else 0)
        _put_scalar(out, 2, "int32", 0 if is_str else int(v or 0))
        _put_scalar(out, 3, "string", v if is_str else "")
        return bytes(out)
    if name in (_RAWEXT, _FIELDSV1):
        if v is not None:
            put_bytes(out, 1, json.dumps(v, separators=(",", ":")).encode())
        return bytes(out)
    if name == _UNKNOWN:
        raise ValueError("encoding runtime.Unknown fields is not supported")
    return None


def _encode_message(name: str, v: Any) -> bytes:
    special = _encode_special(name, v)
    if special is not None:
        return special
    msg = _table()[1][name]
    out = bytearray()
    if msg.is_list:
        for item in v or []:
            _put_scalar(out, 1, msg.by_num[1].type, item)
        return bytes(out)
    _encode_fields(msg, v or {}, out)
    return bytes(out)


def _encode_fields(msg: _Message, obj: dict[str, Any], out: bytearray) -> None:
    mtypes = _message_types()
    for f in msg.fields:
        if f.flags & F_SKIP:
            continue
        is_msg = f.type in mtypes
        if f.flags & F_INLINE:
            sub = _table()[1][f.type]
            if f.flags & F_POINTER and not any(s.json in obj for s in sub.fields):
                continue
            buf = bytearray()
            _encode_fields(sub, obj, buf)
            put_bytes(out, f.num, bytes(buf))
            continue
        v = obj.get(f.json)
        if f.label == "r":
            for item in v or []:
                if is_msg:
                    put_bytes(out, f.num, _encode_message(f.type, item))
                else:
                    _put_scalar(out, f.num, f.type, item)
        elif f.label == "m":
            v = v or {}
            for key in sorted(v):  # gogo sorts map keys
                entry = bytearray()
                _put_scalar(entry, 1, f.key or "string", key)
                if is_msg:
                    put_bytes(entry, 2, _encode_message(f.type, v[key]))
                else:
                    _put_scalar(entry, 2, f.type, v[key])
                put_bytes(out, f.num, bytes(entry))
        elif v is None:
            # gogo always writes non-pointer (non-nullable) fields, even when zero
            if f.flags & (F_POINTER | F_COLLECTION):
                continue
            if is_msg:
                put_bytes(out, f.num, _encode_message(f.type, None))
            else:
                _put_scalar(out, f.num, f.type, _ZERO.get(f.type, 0))
        elif is_msg:
            if f.flags & F_COLLECTION and not v:
                continue
            put_bytes(out, f.num, _encode_message(f.type, v))
        else:
            _put_scalar(out, f.num, f.type, v)


def encode(obj: dict[str, Any]) -> bytes:
    """Encode a JSON-shaped object (with apiVersion/kind) as a k8s protobuf body (best effort)."""
    api_version = obj.get("apiVersion", "")
    kind = obj.get("kind", "")
    name = message_name(api_version, kind)
    if name is None:
        raise ValueError(f"no protobuf schema for kind {kind!r} in version {api_version!r}")
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    tm = bytearray()
    _put_scalar(tm, 1, "string", api_version)
    _put_scalar(tm, 2, "string", kind)
    env = bytearray()
    put_bytes(env, 1, bytes(tm))
    put_bytes(env, 2, _encode_message(name, body))
    _put_scalar(env, 3, "string", "")
    _put_scalar(env, 4, "string", "")
    return MAGIC + bytes(env)
