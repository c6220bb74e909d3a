"""v1 ConfigMap (pkg/registry/core/configmap, ValidateConfigMap / ValidateConfigMapUpdate)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from kubelite.api import field as f
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import is_config_map_key, name_is_dns_subdomain
from kubelite.kinds._printing import age, age_column, doc, get, meta, name_column
from kubelite.kinds.base import Column, Kind, Obj, Strategy

# core.MaxSecretSize: the limit on the summed size of ConfigMap and Secret values.
MAX_SECRET_SIZE = 1 * 1024 * 1024
IMMUTABLE_MSG = "field is immutable when `immutable` is set"

def too_long(path: Path | str, max_len: int) -> FieldError:
    """field.TooLong as of apimachinery v0.37 ("may not be more than N bytes")."""
    unit = "byte" if max_len == 1 else "bytes"
    detail = f"may not be more than {max_len} {unit}" if max_len >= 0 else "value is too long"
    return FieldError(f.TOO_LONG, str(path), f.OMIT, detail)


def decoded_len(value: Any) -> int:
    """Length in bytes of a base64 ``[]byte`` JSON value (what Go sums as len(value))."""
    if not isinstance(value, str):
        return 0
    try:
        return len(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return len(value) * 3 // 4


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def validate_config_map(obj: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    data = _dict(obj.get("data"))
    binary = _dict(obj.get("binaryData"))
    total = 0
    for key, value in data.items():
        for msg in is_config_map_key(key):
            errs.append(f.invalid(Path("data").key(key), key, msg))
        if key in binary:
            errs.append(f.invalid(Path("data").key(key), key, "duplicate of key present in binaryData"))
        total += len(value.encode()) if isinstance(value, str) else 0
    for key, value in binary.items():
        for msg in is_config_map_key(key):
            errs.append(f.invalid(Path("binaryData").key(key), key, msg))
        total += decoded_len(value)
    if total > MAX_SECRET_SIZE:
        # field.NewPath(""): the error refers to the whole object; Go prints that path as "[]".
        errs.append(too_long("[]", MAX_SECRET_SIZE))
    return errs


def _immutable(obj: Obj) -> bool:
    return obj.get("immutable") is True


class ConfigMapStrategy(Strategy):
    def validate(self, obj: Obj) -> list[FieldError]:
        return validate_config_map(obj)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        errs: list[FieldError] = []
        if _immutable(old):
            if not _immutable(new):
                errs.append(f.forbidden("immutable", IMMUTABLE_MSG))
            if _dict(new.get("data")) != _dict(old.get("data")):
                errs.append(f.forbidden("data", IMMUTABLE_MSG))
            if _dict(new.get("binaryData")) != _dict(old.get("binaryData")):
                errs.append(f.forbidden("binaryData", IMMUTABLE_MSG))
        errs.extend(validate_config_map(new))
        return errs

    columns = (
        name_column(),
        Column("Data", "string", "", doc("io.k8s.api.core.v1.ConfigMap", "data")),
        age_column(),
    )

    def row(self, obj: Obj) -> list[Any]:
        n = len(_dict(obj.get("data"))) + len(_dict(obj.get("binaryData")))
        return [meta(obj).get("name", ""), n, age(get(obj, "metadata", "creationTimestamp"))]


CONFIGMAP = Kind(
    group="",
    version="v1",
    kind="ConfigMap",
    plural="configmaps",
    namespaced=True,
    strategy=ConfigMapStrategy(),
    short_names=("cm",),
    schema_ref="io.k8s.api.core.v1.ConfigMap",
    name_validator=name_is_dns_subdomain,
)
