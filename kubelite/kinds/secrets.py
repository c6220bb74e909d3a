"""v1 Secret (pkg/registry/core/secret, ValidateSecret / ValidateSecretUpdate).

``stringData`` is write-only: upstream merges it into ``data`` while converting the
v1 object to the internal one (Convert_v1_Secret_To_core_Secret), i.e. on every
decoded write, before defaulting. Here :meth:`SecretStrategy.default` does it.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from kubelite.api import field as f
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import is_config_map_key, name_is_dns_subdomain
from kubelite.kinds._printing import age, age_column, doc, get, meta, name_column
from kubelite.kinds.base import Column, Kind, Obj, Strategy
from kubelite.kinds.configmaps import IMMUTABLE_MSG, MAX_SECRET_SIZE, too_long

SECRET_TYPE_OPAQUE = "Opaque"
SECRET_TYPE_SERVICE_ACCOUNT_TOKEN = "kubernetes.io/service-account-token"
SECRET_TYPE_DOCKERCFG = "kubernetes.io/dockercfg"
SECRET_TYPE_DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
SECRET_TYPE_BASIC_AUTH = "kubernetes.io/basic-auth"
SECRET_TYPE_SSH_AUTH = "kubernetes.io/ssh-auth"
SECRET_TYPE_TLS = "kubernetes.io/tls"
SECRET_TYPE_BOOTSTRAP_TOKEN = "bootstrap.kubernetes.io/token"

SERVICE_ACCOUNT_NAME_KEY = "kubernetes.io/service-account.name"
SERVICE_ACCOUNT_UID_KEY = "kubernetes.io/service-account.uid"
DOCKER_CONFIG_KEY = ".dockercfg"
DOCKER_CONFIG_JSON_KEY = ".dockerconfigjson"
BASIC_AUTH_USERNAME_KEY = "username"
BASIC_AUTH_PASSWORD_KEY = "password"
SSH_AUTH_PRIVATE_KEY = "ssh-privatekey"
TLS_CERT_KEY = "tls.crt"
TLS_PRIVATE_KEY_KEY = "tls.key"

_REDACTED = "<secret contents redacted>"


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _decode(value: Any) -> bytes:
    if not isinstance(value, str):
        return b""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""


def merge_string_data(obj: Obj) -> None:
    """Fold write-only ``stringData`` into ``data`` (base64), overwriting equal keys."""
    sd = obj.pop("stringData", None)
    if not isinstance(sd, dict) or not sd:
        return
    data = obj.get("data")
    if not isinstance(data, dict):
        data = {}
        obj["data"] = data
    for k, v in sd.items():
        data[k] = base64.b64encode(str(v).encode()).decode("ascii")


def _json_error(raw: bytes) -> str | None:
    """The error of Go's json.Unmarshal into map[string]interface{} (None when it decodes).

    Messages follow encoding/json's for the common cases; exotic syntax errors are approximated.
    """
    text = raw.decode("utf-8", errors="replace")
    try:
        v = json.loads(text)
    except json.JSONDecodeError as e:
        if e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated"):
            return "unexpected end of JSON input"
        c = "'" + text[e.pos] + "'"
        if e.msg.startswith("Expecting property name"):
            return f"invalid character {c} looking for beginning of object key string"
        if e.msg.startswith("Expecting ':'"):
            return f"invalid character {c} after object key"
        if e.msg.startswith("Expecting ','"):
            return f"invalid character {c} after object key:value pair"
        if e.msg.startswith("Extra data"):
            return f"invalid character {c} after top-level value"
        return f"invalid character {c} looking for beginning of value"
    if v is None or isinstance(v, dict):
        return None
    kind = "array" if isinstance(v, list) else "string" if isinstance(v, str) else (
        "bool" if isinstance(v, bool) else "number")
    return f"json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}"


def validate_secret(obj: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    data_path = Path("data")
    data = _dict(obj.get("data"))
    total = 0
    for key, value in data.items():
        for msg in is_config_map_key(key):
            errs.append(f.invalid(data_path.key(key), key, msg))
        total += len(_decode(value))
    if total > MAX_SECRET_SIZE:
        errs.append(too_long(data_path, MAX_SECRET_SIZE))

    typ = obj.get("type") or ""
    if typ == SECRET_TYPE_SERVICE_ACCOUNT_TOKEN:
        ann = _dict(meta(obj).get("annotations"))
        if not ann.get(SERVICE_ACCOUNT_NAME_KEY):
            errs.append(f.required(Path("metadata", "annotations").key(SERVICE_ACCOUNT_NAME_KEY)))
    elif typ in (SECRET_TYPE_DOCKERCFG, SECRET_TYPE_DOCKER_CONFIG_JSON):
        key = DOCKER_CONFIG_KEY if typ == SECRET_TYPE_DOCKERCFG else DOCKER_CONFIG_JSON_KEY
        if key not in data:
            errs.append(f.required(data_path.key(key)))
        else:
            err = _json_error(_decode(data[key]))
            if err is not None:
                errs.append(f.invalid(data_path.key(key), _REDACTED, err))
    elif typ == SECRET_TYPE_BASIC_AUTH:
        # username or password might be empty, but one of the fields must be present
        if BASIC_AUTH_USERNAME_KEY not in data and BASIC_AUTH_PASSWORD_KEY not in data:
            errs.append(f.required(data_path.key(BASIC_AUTH_USERNAME_KEY)))
            errs.append(f.required(data_path.key(BASIC_AUTH_PASSWORD_KEY)))
    elif typ == SECRET_TYPE_SSH_AUTH:
        if not _decode(data.get(SSH_AUTH_PRIVATE_KEY)):
            errs.append(f.required(data_path.key(SSH_AUTH_PRIVATE_KEY)))
    elif typ == SECRET_TYPE_TLS:
        if TLS_CERT_KEY not in data:
            errs.append(f.required(data_path.key(TLS_CERT_KEY)))
        if TLS_PRIVATE_KEY_KEY not in data:
            errs.append(f.required(data_path.key(TLS_PRIVATE_KEY_KEY)))
    return errs


class SecretStrategy(Strategy):
    def default(self, obj: Obj) -> None:
        merge_string_data(obj)
        if not obj.get("type"):
            obj["type"] = SECRET_TYPE_OPAQUE

    def validate(self, obj: Obj) -> list[FieldError]:
        return validate_secret(obj)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        errs: list[FieldError] = []
        if (new.get("type") or "") != (old.get("type") or ""):
            errs.append(f.invalid("type", new.get("type") or "", "field is immutable"))
        if old.get("immutable") is True:
            if new.get("immutable") is not True:
                errs.append(f.forbidden("immutable", IMMUTABLE_MSG))
            if _dict(new.get("data")) != _dict(old.get("data")):
                errs.append(f.forbidden("data", IMMUTABLE_MSG))
        errs.extend(validate_secret(new))
        return errs

    def field_labels(self, obj: Obj) -> dict[str, str]:
        return {"type": str(obj.get("type") or "")}

    columns = (
        name_column(),
        Column("Type", "string", "", doc("io.k8s.api.core.v1.Secret", "type")),
        Column("Data", "string", "", doc("io.k8s.api.core.v1.Secret", "data")),
        age_column(),
    )

    def row(self, obj: Obj) -> list[Any]:
        return [
            meta(obj).get("name", ""),
            str(obj.get("type") or ""),
            len(_dict(obj.get("data"))),
            age(get(obj, "metadata", "creationTimestamp")),
        ]


SECRET = Kind(
    group="",
    version="v1",
    kind="Secret",
    plural="secrets",
    namespaced=True,
    strategy=SecretStrategy(),
    schema_ref="io.k8s.api.core.v1.Secret",
    name_validator=name_is_dns_subdomain,
)
