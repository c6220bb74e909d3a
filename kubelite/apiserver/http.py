"""Request decoding and response encoding shared by every handler."""

from __future__ import annotations

import asyncio
import unicodedata
from typing import Any

import orjson
import yaml
from aiohttp import web
from multidict import CIMultiDict

from kubelite.api import errors, protobuf
from kubelite.net.listener import BODY_DEADLINE

try:  # the C loader is much faster; Debian's python3-yaml and PyPI wheels both ship it
    _YamlLoader: Any = yaml.CSafeLoader
    _YamlDumper: Any = yaml.CSafeDumper
except AttributeError:  # pragma: no cover
    _YamlLoader = yaml.SafeLoader
    _YamlDumper = yaml.SafeDumper

JSON = "application/json"
YAML = "application/yaml"
MAX_BODY = errors.REQUEST_LIMIT_BYTES


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def yaml_dumps(obj: Any) -> bytes:
    return yaml.dump(obj, Dumper=_YamlDumper, default_flow_style=False, sort_keys=False,
                     allow_unicode=True).encode()


def load_yaml(raw: bytes) -> Any:
    try:
        return yaml.load(raw, Loader=_YamlLoader)
    except yaml.YAMLError as exc:
        raise errors.bad_request(f"error converting YAML to JSON: {_yaml_message(exc)}") from exc


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is not None:
        return f"yaml: line {mark.line + 1}: {problem}"
    return f"yaml: {problem}"


def load_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {exc}") from exc


def media_type(request: web.Request) -> str:
    ct = request.headers.get("Content-Type", "")
    return ct.split(";", 1)[0].strip().lower()


BODY_TIMEOUT = errors.StatusError(504, "Timeout", "Timeout: request did not complete within the allotted timeout",
                                  {})


async def read_body(request: web.Request) -> bytes:
    """The request body, at most 3 MiB; a body that does not arrive by the listener's body
    deadline ends the request with the apiserver's request-timeout 504 (and the connection)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise errors.request_entity_too_large()
    chunks: list[bytes] = []
    size = 0
    deadline = request.get(BODY_DEADLINE)
    while True:
        if deadline is None:
            chunk = await request.content.read(65536)
        else:
            try:
                async with asyncio.timeout_at(deadline):
                    chunk = await request.content.read(65536)
            except TimeoutError:
                # answered as the apiserver's request timeout, and the connection closed after it
                exc = web.HTTPGatewayTimeout(text=dumps(BODY_TIMEOUT.status()).decode(), content_type=JSON)
                exc.force_close()
                raise exc from None
        if not chunk:
            break
        size += len(chunk)
        if size > MAX_BODY:
            raise errors.request_entity_too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def decode_object(raw: bytes, ctype: str) -> Any:
    """A create/update body: JSON or YAML (protobuf and CBOR are not served)."""
    if not raw.strip():
        raise errors.bad_request("the body of the request was empty")
    if ctype in ("", JSON, "*/*"):
        return load_json(raw)
    if ctype in (YAML, "application/x-yaml", "text/yaml"):
        return load_yaml(raw)
    if protobuf.is_protobuf(ctype):
        return protobuf.decode(raw)
    raise errors.unsupported_media_type("application/json, application/yaml, application/vnd.kubernetes.protobuf")


def wants_yaml(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    for part in accept.split(","):
        mt = part.split(";", 1)[0].strip().lower()
        if mt in (JSON, "*/*", "application/*"):
            return False
        if mt == YAML:
            return True
    return False


def table_requested(request: web.Request) -> bool:
    """True when the client asks for meta.k8s.io Table (kubectl get does) before plain JSON."""
    accept = request.headers.get("Accept", "")
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        params = dict(f.split("=", 1) for f in fields[1:] if "=" in f)
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" and params.get("v") in ("v1", "v1beta1"):
            return True
        if fields[0] in (JSON, YAML, "*/*") and "as" not in params:
            return False
    return False


def respond(request: web.Request, obj: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    headers = CIMultiDict[str]()
    for h in warning_headers(warnings or ()):
        headers.add("Warning", h)
    if wants_yaml(request):
        return web.Response(body=yaml_dumps(obj), status=status, content_type=YAML, headers=headers)
    return web.Response(body=dumps(obj), status=status, content_type=JSON, headers=headers)


WARNING_TOTAL_RUNES = 4 * 1024
WARNING_ITEM_RUNES = 256


def _valid_warning(text: str) -> bool:
    """net.NewWarningHeader refuses text that is not UTF-8 or holds control characters."""
    if any(unicodedata.category(c) == "Cc" for c in text):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def warning_headers(warnings: Any) -> list[str]:
    """One ``Warning`` header value per warning, as the apiserver's warning recorder writes
    them (k8s.io/apiserver/pkg/endpoints/filters/warning.go): duplicates dropped, texts with
    control characters dropped, quotes and backslashes escaped, and once the texts pass 4096
    runes every text cut to 256 runes."""
    recorded: set[str] = set()
    ordered: list[str] = []
    out: list[str] = []
    written, truncating = 0, False
    for text in warnings:
        if not text or (written >= WARNING_TOTAL_RUNES and truncating) or text in recorded:
            continue
        recorded.add(text)
        ordered.append(text)
        if truncating and len(text) > WARNING_ITEM_RUNES:
            text = text[:WARNING_ITEM_RUNES]
        if not _valid_warning(text):
            continue
        if written + len(text) <= WARNING_TOTAL_RUNES or truncating:
            written += len(text)
            out.append(warning_header(text))
            continue
        truncating, written, out = True, 0, []
        for t in ordered:
            t = t[:WARNING_ITEM_RUNES]
            if _valid_warning(t):
                written += len(t)
                out.append(warning_header(t))
    return out


def warning_header(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{escaped}"'


def status_response(err: errors.StatusError) -> web.Response:
    return web.Response(body=dumps(err.status()), status=err.code, content_type=JSON)


def success_status(details: dict[str, Any] | None = None) -> dict[str, Any]:
    st: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details:
        st["details"] = details
    return st
