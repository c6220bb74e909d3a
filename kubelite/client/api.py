"""The small async API client the components share (scheduler, agent, controllers, bench).

Speaks JSON over HTTPS with a client certificate from a kubeconfig; errors come back as
:class:`~kubelite.api.errors.StatusError`, watches as async iterators of (type, object).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import yaml

from kubelite.api import errors

Obj = dict[str, Any]
PATCH_TYPES = {
    "strategic": "application/strategic-merge-patch+json",
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}


def _kubeconfig_bytes(base: Path, section: dict[str, Any], key: str) -> bytes | None:
    """``<key>-data`` (base64) or ``<key>`` (a file, relative to the kubeconfig's directory)."""
    if section.get(f"{key}-data"):
        return base64.b64decode(section[f"{key}-data"])
    if section.get(key):
        return (base / section[key]).read_bytes()
    return None


def kubeconfig_credentials(path: Path) -> tuple[str, bytes, bytes | None, bytes | None, str | None]:
    """(server URL, CA PEM, client certificate PEM, client key PEM, bearer token) of the
    kubeconfig's current context."""
    path = Path(path)
    cfg = yaml.safe_load(path.read_text())
    ctx_name = cfg.get("current-context")
    context = next((c["context"] for c in cfg.get("contexts", []) if c["name"] == ctx_name),
                   cfg["contexts"][0]["context"])
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in cfg["users"] if u["name"] == context["user"])
    base = path.resolve().parent
    ca = _kubeconfig_bytes(base, cluster, "certificate-authority") or b""
    return (cluster["server"], ca, _kubeconfig_bytes(base, user, "client-certificate"),
            _kubeconfig_bytes(base, user, "client-key"), user.get("token"))


def load_client_pair(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """Load a client certificate and key given as PEM into ``ctx`` (ssl reads only files: a
    private temporary directory, removed at once)."""
    with tempfile.TemporaryDirectory() as d:
        cert, key = Path(d) / "c.pem", Path(d) / "k.pem"
        cert.write_bytes(cert_pem)
        key.touch(mode=0o600)
        key.write_bytes(key_pem)
        ctx.load_cert_chain(cert, key)


def ssl_context_from_kubeconfig(path: Path) -> tuple[str, ssl.SSLContext, str | None]:
    """(server URL, SSL context with the user's client certificate, bearer token or None)."""
    server, ca, cert, key, token = kubeconfig_credentials(path)
    ctx = ssl.create_default_context(cadata=ca.decode())
    if cert and key:
        load_client_pair(ctx, cert, key)
    return server, ctx, token


def resource_path(api_version: str, plural: str, namespace: str = "", name: str = "", sub: str = "") -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    p = base + (f"/namespaces/{namespace}" if namespace else "") + f"/{plural}"
    if name:
        p += f"/{name}"
    if sub:
        p += f"/{sub}"
    return p


class Client:
    def __init__(self, server: str, ssl_context: ssl.SSLContext, token: str | None = None,
                 user_agent: str = "kubelite", limit: int = 100) -> None:
        self.server = server.rstrip("/")
        self._ssl = ssl_context
        self._limit = limit
        self._headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._session = self._new_session()
        # requests in flight per session; sessions of an earlier client certificate close
        # when their last request ends
        self._inflight: dict[aiohttp.ClientSession, int] = {}
        self._retired: set[aiohttp.ClientSession] = set()
        self._closing: set[asyncio.Task[None]] = set()

    def _new_session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            headers=self._headers, connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self._limit),
            json_serialize=lambda o: orjson.dumps(o).decode())

    @classmethod
    def from_kubeconfig(cls, path: Path, user_agent: str = "kubelite", limit: int = 100) -> Client:
        server, ctx, token = ssl_context_from_kubeconfig(path)
        return cls(server, ctx, token, user_agent, limit)

    async def close(self) -> None:
        for old in list(self._retired):
            await old.close()
        self._retired.clear()
        for t in list(self._closing):
            await t
        await self._session.close()

    def use_client_certificate(self, cert_pem: bytes, key_pem: bytes) -> None:
        """Present this pair from now on (certificate rotation). Requests start on a new
        connection pool, so their handshakes hand the new certificate over; the old pool's
        connections (authenticated with the old one) close as soon as their requests end,
        instead of cutting in-flight requests and watches as the kubelet does."""
        load_client_pair(self._ssl, cert_pem, key_pem)
        old, self._session = self._session, self._new_session()
        self._retired.add(old)
        if not self._inflight.get(old):
            self._close_retired(old)

    @contextlib.contextmanager
    def _use(self) -> Iterator[aiohttp.ClientSession]:
        session = self._session
        self._inflight[session] = self._inflight.get(session, 0) + 1
        try:
            yield session
        finally:
            n = self._inflight[session] - 1
            if n:
                self._inflight[session] = n
            else:
                del self._inflight[session]
                if session in self._retired:
                    self._close_retired(session)

    def _close_retired(self, session: aiohttp.ClientSession) -> None:
        self._retired.discard(session)
        task = asyncio.get_running_loop().create_task(session.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None,
                      content_type: str = "application/json", timeout: float = 30.0) -> Any:
        url = self.server + path
        if params:
            url += "?" + urlencode({k: v for k, v in params.items() if v is not None}, doseq=True)
        data = None
        headers = {}
        if body is not None:
            data = body if isinstance(body, bytes | str) else orjson.dumps(body)
            headers["Content-Type"] = content_type
        with self._use() as session:
            async with session.request(method, url, data=data, headers=headers,
                                       timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise _status_error(resp.status, raw)
                return orjson.loads(raw) if raw else None

    async def text(self, path: str, params: dict[str, Any] | None = None, timeout: float = 30.0) -> str:
        """GET of a plain-text resource (``pods/<name>/log``)."""
        url = self.server + path
        if params:
            url += "?" + urlencode({k: v for k, v in params.items() if v is not None}, doseq=True)
        with self._use() as session:
            async with session.get(url, headers={"Accept": "*/*"}, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise _status_error(resp.status, raw)
                return raw.decode(errors="replace")

    # convenience verbs ---------------------------------------------------------
    async def get(self, api_version: str, plural: str, name: str, namespace: str = "") -> Obj:
        return await self.request("GET", resource_path(api_version, plural, namespace, name))

    async def list(self, api_version: str, plural: str, namespace: str = "", **params: Any) -> Obj:
        return await self.request("GET", resource_path(api_version, plural, namespace), params=params)

    async def create(self, api_version: str, plural: str, obj: Obj, namespace: str = "", **params: Any) -> Obj:
        return await self.request("POST", resource_path(api_version, plural, namespace), obj, params)

    async def update(self, api_version: str, plural: str, obj: Obj, namespace: str = "", sub: str = "",
                     **params: Any) -> Obj:
        name = obj["metadata"]["name"]
        return await self.request("PUT", resource_path(api_version, plural, namespace, name, sub), obj, params)

    async def patch(self, api_version: str, plural: str, name: str, patch: Any, namespace: str = "",
                    patch_type: str = "merge", sub: str = "", **params: Any) -> Obj:
        return await self.request("PATCH", resource_path(api_version, plural, namespace, name, sub), patch,
                                  params, content_type=PATCH_TYPES[patch_type])

    async def delete(self, api_version: str, plural: str, name: str, namespace: str = "",
                     grace_period_seconds: int | None = None, **params: Any) -> Obj:
        if grace_period_seconds is not None:
            params["gracePeriodSeconds"] = grace_period_seconds
        return await self.request("DELETE", resource_path(api_version, plural, namespace, name), params=params)

    async def watch(self, api_version: str, plural: str, namespace: str = "", resource_version: str = "",
                    timeout_seconds: int | None = None, **params: Any) -> AsyncIterator[tuple[str, Obj]]:
        """Yields (type, object) until the server ends the stream; raises StatusError on ERROR events."""
        params = dict(params, watch="true", allowWatchBookmarks="true")
        if resource_version:
            params["resourceVersion"] = resource_version
        if timeout_seconds is not None:
            params["timeoutSeconds"] = timeout_seconds
        url = self.server + resource_path(api_version, plural, namespace) + "?" + urlencode(params)
        with self._use() as session:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)) as resp:
                if resp.status >= 400:
                    raise _status_error(resp.status, await resp.read())
                async for line in resp.content:
                    if not line.strip():
                        continue
                    ev = orjson.loads(line)
                    if ev["type"] == "ERROR":
                        st = ev["object"]
                        raise errors.StatusError(st.get("code", 500), st.get("reason", ""), st.get("message", ""),
                                                 st.get("details"))
                    yield ev["type"], ev["object"]


def _status_error(code: int, raw: bytes) -> errors.StatusError:
    try:
        st = orjson.loads(raw)
        return errors.StatusError(st.get("code", code), st.get("reason", ""), st.get("message", ""),
                                  st.get("details"))
    except Exception:
        return errors.StatusError(code, "", raw[:200].decode(errors="replace"))
