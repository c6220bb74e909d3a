"""The protobuf /openapi/v2 document (gnostic openapi.v2.Document), read back with a small
wire-format reader: every definition is there with its type, properties and x- extensions."""

from __future__ import annotations

import json

from kubelite.apiserver import openapi, openapi_proto
from tests.unit.test_openapi import KINDS


def _fields(data: bytes) -> list[tuple[int, object]]:
    out, i = [], 0
    while i < len(data):
        key, i = _varint(data, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = _varint(data, i)
            out.append((field, v))
        elif wire == 1:
            out.append((field, data[i:i + 8]))
            i += 8
        elif wire == 2:
            n, i = _varint(data, i)
            out.append((field, data[i:i + n]))
            i += n
        else:
            raise AssertionError(f"unexpected wire type {wire}")
    return out


def _varint(data: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, i


def _get(msg: bytes, field: int) -> list:
    return [v for f, v in _fields(msg) if f == field]


def test_document_definitions_round_trip():
    doc = openapi.build_v2(KINDS)
    data = openapi_proto.document(doc)
    assert _get(data, 1) == [b"2.0"]
    defs = {bytes(_get(n, 1)[0]).decode(): _get(n, 2)[0] for n in _get(_get(data, 9)[0], 1)}
    assert set(defs) == set(doc["definitions"])
    pod = defs["io.k8s.api.core.v1.Pod"]
    assert _get(_get(pod, 22)[0], 1) == [b"object"]  # type
    props = [bytes(_get(n, 1)[0]).decode() for n in _get(_get(pod, 25)[0], 1)]
    assert props == list(doc["definitions"]["io.k8s.api.core.v1.Pod"]["properties"])
    ext = {bytes(_get(n, 1)[0]).decode(): _get(_get(n, 2)[0], 2)[0] for n in _get(pod, 31)}
    assert json.loads(ext["x-kubernetes-group-version-kind"]) == [{"group": "", "kind": "Pod", "version": "v1"}]
    paths = [bytes(_get(n, 1)[0]).decode() for n in _get(_get(data, 8)[0], 2)]
    assert paths == [p for p in doc["paths"] if not p.startswith("x-")]


def test_negotiation():
    assert openapi_proto.wants_protobuf("") is False
    assert openapi_proto.wants_protobuf("application/json, */*") is False
    assert openapi_proto.wants_protobuf("application/com.github.proto-openapi.spec.v2@v1.0+protobuf") is True
    assert openapi_proto.wants_protobuf("application/com.github.proto-openapi.spec.v2.v1.0+protobuf;q=1") is True
    assert openapi_proto.wants_protobuf("application/xml") is None
