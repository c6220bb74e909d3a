"""pods/log, pods/exec, pods/attach and pods/portforward: validated here, served by the node agent.

The API server finds the pod's node (``spec.nodeName`` → Node ``status.addresses`` InternalIP and
``status.daemonEndpoints.kubeletEndpoint.Port``), calls the agent over TLS with the
kube-apiserver-kubelet-client certificate and relays the stream:

- log: plain HTTP streaming (``GET /containerLogs/...``), errors as Status;
- exec/attach: the client's WebSocket (``v5.channel.k8s.io`` from kubectl, ``v4`` from older
  clients) relayed frame by frame to a ``v5.channel.k8s.io`` WebSocket to the agent;
- portforward: the client's protocol is terminated here — kubectl's SPDY/3.1 frames
  tunnelled in WebSocket (``SPDY/3.1+portforward.k8s.io``) or the legacy channel framing
  (``v4.channel.k8s.io``, port-prefixed first frames) — and every forwarded connection
  becomes one WebSocket to the agent's ``/portForward`` (``portforward.kubelite.io``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import urllib.parse
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web

from kubelite.api import errors
from kubelite.api import field as fld
from kubelite.apiserver.handlers import APIHandler, Target
from kubelite.apiserver.stores import Stores
from kubelite.kinds.podutil import is_terminal
from kubelite.net import spdy
from kubelite.tls import pki as pki_mod

log = logging.getLogger("kubelite.apiserver.streams")

CHANNEL_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
SPDY_TUNNEL_PROTOCOL = "SPDY/3.1+portforward.k8s.io"
# the kubelet's websocket port-forward offers v4 (and the unversioned channel protocol), not v5
LEGACY_PORTFORWARD_PROTOCOLS = ("v4.channel.k8s.io", "channel.k8s.io")
AGENT_PORTFORWARD_PROTOCOL = "portforward.kubelite.io"
AGENT_ERROR_HEADER = "X-Kubelite-Error"
AGENT_UPGRADE_REQUIRED = "Upgrade request required"
DEFAULT_AGENT_PORT = 10250
CONNECT_TIMEOUT = 10.0

_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
            409: "Conflict", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
            504: "Timeout"}


# what crosses the node proxy (never the client's credentials)
_PROXIED_REQUEST_HEADERS = ("accept", "accept-encoding", "content-type", "user-agent")
_PROXIED_RESPONSE_HEADERS = ("content-type", "content-encoding", "cache-control", "date")


def _qbool(v: str | None) -> bool:
    return (v or "").lower() in ("1", "true", "t", "yes")


class StreamHandlers:
    """The four pod stream subresources; one instance per API server."""

    def __init__(self, stores: Stores, ssl_factory: Callable[[], ssl.SSLContext]) -> None:
        self.stores = stores
        self._ssl_factory = ssl_factory
        self._ssl: ssl.SSLContext | None = None
        self._session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ plumbing
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if self._ssl is None:
                self._ssl = self._ssl_factory()
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=0, enable_cleanup_closed=True),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _pod(self, t: Target) -> dict[str, Any]:
        return await self.stores[t.kind].get(t.namespace, t.name)

    async def _agent_base(self, node_name: str) -> str:
        try:
            node = await self.stores.get("", "nodes").get("", node_name)
        except errors.StatusError as exc:
            if exc.code == 404:
                raise errors.not_found("nodes", node_name) from exc
            raise
        status = node.get("status") or {}
        addrs = {a.get("type"): a.get("address") for a in status.get("addresses") or [] if a.get("address")}
        host = addrs.get("InternalIP") or addrs.get("ExternalIP") or addrs.get("Hostname") or node_name
        ep = ((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {})
        port = ep.get("Port") or ep.get("port") or DEFAULT_AGENT_PORT
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{port}"

    async def agent_get(self, node_name: str, path: str, timeout: float) -> bytes:
        """GET ``path`` of a node agent's endpoint (the metrics server scrapes /metrics/resource);
        raises when the node cannot be reached or does not answer 200."""
        base = await self._agent_base(node_name)
        async with self.session().get(base + path, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status,
                                                  message=body[:200].decode("utf-8", "replace"))
            return body

    # ------------------------------------------------------------------ pods/log
    async def log(self, handler: APIHandler, request: web.Request, t: Target) -> web.StreamResponse:
        if request.method != "GET":
            raise errors.method_not_supported("pods/log", _action(request.method))
        q = request.query
        _validate_log_options(t.name, q)
        pod = await self._pod(t)
        container = _validate_container(pod, q.get("container", ""))
        node = (pod.get("spec") or {}).get("nodeName", "")
        if not node:  # not scheduled: upstream answers an empty log
            return web.Response(status=200, body=b"", content_type="text/plain")
        _check_log_status(pod, container, _qbool(q.get("previous")))
        params = [(k, v) for k in ("follow", "previous", "timestamps") if _qbool(q.get(k)) for v in ["true"]]
        for k in ("sinceSeconds", "sinceTime", "tailLines", "limitBytes", "stream"):
            if q.get(k):
                params.append((k, q[k]))
        params.append(("podUID", pod["metadata"].get("uid", "")))
        base = await self._agent_base(node)
        url = (f"{base}/containerLogs/{_seg(t.namespace)}/{_seg(t.name)}/{_seg(container)}?"
               + urllib.parse.urlencode(params))
        try:
            upstream = await self.session().get(url)
        except (aiohttp.ClientError, OSError) as exc:
            raise _agent_unreachable(node, exc) from exc
        try:
            if upstream.status != 200:
                text = (await upstream.text()).strip()
                raise _agent_error(upstream.status, text, "pods/log", t.name)
            return await _relay_body(request, upstream, 200, {"Content-Type": "text/plain"})
        finally:
            upstream.close()  # a follow the client left: drop the agent connection too

    # ------------------------------------------------------------------ nodes/proxy
    async def node_proxy(self, handler: APIHandler, request: web.Request, t: Target) -> web.StreamResponse:
        """``/api/v1/nodes/NAME/proxy/PATH``: the request relayed to the node agent's endpoint
        (its /metrics, /stats/summary, /healthz, …), as the apiserver's node proxy does."""
        if not t.name:
            raise errors.method_not_supported("nodes/proxy", _action(request.method))
        base = await self._agent_base(t.name)
        url = f"{base}/{t.path}"
        if request.query_string:
            url += "?" + request.query_string
        headers = {k: v for k, v in request.headers.items() if k.lower() in _PROXIED_REQUEST_HEADERS}
        body = await request.read() if request.can_read_body else None
        try:
            upstream = await self.session().request(request.method, url, headers=headers, data=body,
                                                    allow_redirects=False)
        except (aiohttp.ClientError, OSError) as exc:
            raise _agent_unreachable(t.name, exc) from exc
        try:
            return await _relay_body(request, upstream, upstream.status, {
                k: v for k, v in upstream.headers.items() if k.lower() in _PROXIED_RESPONSE_HEADERS})
        finally:
            upstream.close()

    # ------------------------------------------------------------------ pods/exec, pods/attach
    async def exec(self, handler: APIHandler, request: web.Request, t: Target) -> web.StreamResponse:
        return await self._remote_command(request, t, "exec")

    async def attach(self, handler: APIHandler, request: web.Request, t: Target) -> web.StreamResponse:
        return await self._remote_command(request, t, "attach")

    async def _remote_command(self, request: web.Request, t: Target, verb: str) -> web.StreamResponse:
        if request.method not in ("GET", "POST"):
            raise errors.method_not_supported(f"pods/{verb}", _action(request.method))
        q = request.query
        stdin, stdout, stderr, tty = (_qbool(q.get(k)) for k in ("stdin", "stdout", "stderr", "tty"))
        command = q.getall("command", [])
        if not (stdin or stdout or stderr):
            raise errors.bad_request("you must specify at least 1 of stdin, stdout, stderr")
        if verb == "exec" and not command:
            raise errors.bad_request("you must specify at least one command for the container")
        pod = await self._pod(t)
        container = _validate_container(pod, q.get("container", ""))
        phase = (pod.get("status") or {}).get("phase", "")
        if is_terminal(pod):
            what = "exec into" if verb == "exec" else "attach to"
            raise errors.bad_request(f"cannot {what} a container in a completed pod; current phase is {phase}")
        node = (pod.get("spec") or {}).get("nodeName", "")
        if not node:
            raise errors.bad_request(f"pod {t.name} does not have a host assigned")
        params = [("command", c) for c in command]
        params += [(k, "1") for k, v in (("stdin", stdin), ("stdout", stdout), ("stderr", stderr), ("tty", tty)) if v]
        params.append(("podUID", pod["metadata"].get("uid", "")))
        base = await self._agent_base(node)
        url = f"{base}/{verb}/{_seg(t.namespace)}/{_seg(t.name)}/{_seg(container)}?" + urllib.parse.urlencode(params)
        if not _is_websocket(request):
            # SPDY (kubectl's fallback after a failed WebSocket upgrade) is not relayed; report what
            # the agent thinks of the request so that the user sees the real cause
            await self._probe_agent(url, node, f"pods/{verb}", t.name)
            raise errors.bad_request("Upgrade request required: kubelite serves pods/" + verb +
                                     " over WebSocket (v5.channel.k8s.io, v4.channel.k8s.io)")
        client_proto = _pick_protocol(request, CHANNEL_PROTOCOLS)
        if client_proto is None:
            raise errors.bad_request(
                f"unable to upgrade: no supported subprotocol among {list(CHANNEL_PROTOCOLS)} "
                f"(requested {request.headers.get('Sec-WebSocket-Protocol', '')!r})")
        agent = await self._agent_ws(url, ["v5.channel.k8s.io"], node, f"pods/{verb}", t.name)
        try:
            ws = web.WebSocketResponse(protocols=(client_proto,), autoping=True, max_msg_size=0)
            await ws.prepare(request)
            await _relay_frames(ws, agent, allow_close_signal=client_proto == "v5.channel.k8s.io")
            return ws
        finally:
            await agent.close()

    async def _probe_agent(self, url: str, node: str, resource: str, name: str) -> None:
        """A plain request to an agent stream endpoint: raises the agent's objection, if any."""
        try:
            async with self.session().get(url) as r:
                text = (await r.text()).strip()
                if r.status != 400 or text != AGENT_UPGRADE_REQUIRED:
                    raise _agent_error(r.status, text, resource, name)
        except (aiohttp.ClientError, OSError) as exc:
            raise _agent_unreachable(node, exc) from exc

    async def _agent_ws(self, url: str, protocols: list[str], node: str, resource: str,
                        name: str) -> aiohttp.ClientWebSocketResponse:
        try:
            return await self.session().ws_connect(url, protocols=protocols, autoping=True, max_msg_size=0,
                                                   timeout=aiohttp.ClientWSTimeout(ws_close=5))
        except aiohttp.WSServerHandshakeError as exc:
            hdrs: Any = exc.headers or {}
            msg = urllib.parse.unquote(hdrs.get(AGENT_ERROR_HEADER, "")) or exc.message
            raise _agent_error(exc.status, msg, resource, name) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise _agent_unreachable(node, exc) from exc

    # ------------------------------------------------------------------ pods/portforward
    async def portforward(self, handler: APIHandler, request: web.Request, t: Target) -> web.StreamResponse:
        if request.method not in ("GET", "POST"):
            raise errors.method_not_supported("pods/portforward", _action(request.method))
        pod = await self._pod(t)
        node = (pod.get("spec") or {}).get("nodeName", "")
        if not node:
            raise errors.bad_request(f"pod {t.name} does not have a host assigned")
        if not _is_websocket(request):
            raise errors.bad_request("Upgrade request required")
        base = await self._agent_base(node)
        uid = pod["metadata"].get("uid", "")
        pf_base = f"{base}/portForward/{_seg(t.namespace)}/{_seg(t.name)}"

        def agent_url(port: int) -> str:
            return f"{pf_base}?" + urllib.parse.urlencode([("port", str(port)), ("podUID", uid)])

        if _pick_protocol(request, (SPDY_TUNNEL_PROTOCOL,)):
            return await self._portforward_spdy(request, agent_url, node, t.name)
        ports = _parse_ports(request)
        proto = _pick_protocol(request, LEGACY_PORTFORWARD_PROTOCOLS) or ""
        return await self._portforward_channels(request, proto, ports, agent_url, node, t.name)

    async def _portforward_spdy(self, request: web.Request, agent_url: Callable[[int], str], node: str,
                                name: str) -> web.StreamResponse:
        ws = web.WebSocketResponse(protocols=(SPDY_TUNNEL_PROTOCOL,), autoping=True, max_msg_size=0)
        await ws.prepare(request)
        pairs: dict[str, dict[str, spdy.SpdyStream]] = {}

        async def on_stream(st: spdy.SpdyStream) -> None:
            # kubectl opens an error stream then a data stream per connection, same requestid
            rid = st.header("requestid")
            pair = pairs.setdefault(rid, {})
            pair[st.header("streamtype")] = st
            if "data" not in pair or "error" not in pair:
                return
            try:
                await self._forward_spdy_pair(pair["data"], pair["error"], agent_url, node, name)
            finally:
                pairs.pop(rid, None)
                session.remove(pair["data"])
                session.remove(pair["error"])

        async def send(data: bytes) -> None:
            await ws.send_bytes(data)

        session = spdy.SpdySession(send, client=False, on_stream=on_stream)
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    await session.feed(msg.data)
        except spdy.SpdyProtocolError as exc:
            log.debug("port-forward SPDY tunnel: %s", exc)
        finally:
            session.close()
            await session.wait_tasks()
            if not ws.closed:
                await ws.close()
        return ws

    async def _forward_spdy_pair(self, data: spdy.SpdyStream, err: spdy.SpdyStream,
                                 agent_url: Callable[[int], str], node: str, name: str) -> None:
        try:
            port = int(data.header("port"))
        except ValueError:
            await _finish(data, err, f'invalid port "{data.header("port")}"')
            return
        try:
            agent = await self._agent_ws(agent_url(port), [AGENT_PORTFORWARD_PROTOCOL], node, "pods/portforward",
                                         name)
        except errors.StatusError as exc:
            await _finish(data, err, f"error forwarding port {port} to pod {name}: {exc.message}")
            return
        errors_seen: list[str] = []

        async def up() -> None:
            while chunk := await data.read():
                await agent.send_bytes(chunk)
            if not agent.closed:
                await agent.send_bytes(b"")  # half-close

        async def down() -> None:
            async for msg in agent:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    if msg.data:
                        await data.write(msg.data)
                    else:
                        await data.close()
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    errors_seen.append(msg.data)

        up_t = asyncio.create_task(up())
        try:
            with contextlib.suppress(ConnectionError):
                await down()
        finally:
            up_t.cancel()
            await asyncio.gather(up_t, return_exceptions=True)
            await agent.close()
            await _finish(data, err, "".join(errors_seen))

    async def _portforward_channels(self, request: web.Request, proto: str, ports: list[int],
                                    agent_url: Callable[[int], str], node: str, name: str) -> web.StreamResponse:
        agents: list[aiohttp.ClientWebSocketResponse | None] = []
        errs: list[str] = []
        try:
            for port in ports:
                try:
                    agents.append(await self._agent_ws(agent_url(port), [AGENT_PORTFORWARD_PROTOCOL], node,
                                                       "pods/portforward", name))
                    errs.append("")
                except errors.StatusError as exc:
                    agents.append(None)
                    errs.append(f"error forwarding port {port} to pod {name}: {exc.message}")
            ws = web.WebSocketResponse(protocols=(proto,) if proto else (), autoping=True, max_msg_size=0)
            await ws.prepare(request)
            for i, port in enumerate(ports):
                prefix = struct.pack("<H", port)
                await ws.send_bytes(bytes([2 * i]) + prefix)
                await ws.send_bytes(bytes([2 * i + 1]) + prefix)
                if errs[i]:
                    await ws.send_bytes(bytes([2 * i + 1]) + errs[i].encode())

            async def down(i: int, agent: aiohttp.ClientWebSocketResponse) -> None:
                async for msg in agent:
                    if msg.type == aiohttp.WSMsgType.BINARY and msg.data:
                        await ws.send_bytes(bytes([2 * i]) + msg.data)
                    elif msg.type == aiohttp.WSMsgType.TEXT:
                        await ws.send_bytes(bytes([2 * i + 1]) + msg.data.encode())

            async def up() -> None:
                async for msg in ws:
                    frame = _frame_bytes(msg)
                    if not frame:
                        continue
                    ch, payload = frame[0], frame[1:]
                    i = ch // 2
                    if ch % 2 == 0 and i < len(agents) and payload and (a := agents[i]) is not None:
                        with contextlib.suppress(ConnectionError):
                            await a.send_bytes(payload)

            downs = [asyncio.create_task(down(i, a)) for i, a in enumerate(agents) if a is not None]
            up_t = asyncio.create_task(up())
            try:
                waiting = {up_t, *downs}
                if downs:
                    # ends when the client leaves or every forwarded connection ended
                    while up_t not in (done := (await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED))[0]):
                        waiting -= done
                        if not (waiting - {up_t}):
                            break
                else:
                    await up_t
            finally:
                for tk in (up_t, *downs):
                    tk.cancel()
                await asyncio.gather(up_t, *downs, return_exceptions=True)
                if not ws.closed:
                    await ws.close()
            return ws
        finally:
            for a in agents:
                if a is not None:
                    await a.close()


async def _relay_body(request: web.Request, upstream: aiohttp.ClientResponse, status: int,
                      headers: dict[str, str]) -> web.StreamResponse:
    """Stream an agent's response body to the client as it comes."""
    out = web.StreamResponse(status=status, headers=headers)
    await out.prepare(request)
    async for chunk in upstream.content.iter_any():
        await out.write(chunk)
    await out.write_eof()
    return out


def _frame_bytes(msg: aiohttp.WSMessage) -> bytes | None:
    """A channel frame's bytes: binary frames as sent, text frames as their UTF-8 bytes. The
    raw channel protocols (v4/v5.channel.k8s.io) read both kinds alike (wsstream reads every
    message into a []byte), and the official Python client sends str input as text frames."""
    if msg.type == aiohttp.WSMsgType.BINARY:
        return bytes(msg.data)
    if msg.type == aiohttp.WSMsgType.TEXT:
        return str(msg.data).encode("utf-8")
    return None


async def _finish(data: spdy.SpdyStream, err: spdy.SpdyStream, message: str) -> None:
    with contextlib.suppress(ConnectionError):
        if message:
            await err.write(message.encode())
        await err.close()
        await data.close()


async def _relay_frames(client: web.WebSocketResponse, agent: aiohttp.ClientWebSocketResponse,
                        allow_close_signal: bool) -> None:
    """Copy channel frames both ways until the agent ends the stream (or the client leaves)."""

    async def up() -> None:
        async for msg in client:
            data = _frame_bytes(msg)
            if data is None:
                continue
            if data[:1] == b"\xff" and not allow_close_signal:
                continue
            await agent.send_bytes(data)
        await agent.close()

    up_t = asyncio.create_task(up())
    try:
        async for msg in agent:
            if msg.type == aiohttp.WSMsgType.BINARY:
                await client.send_bytes(msg.data)
    except ConnectionResetError:
        pass
    finally:
        up_t.cancel()
        await asyncio.gather(up_t, return_exceptions=True)
        if not client.closed:
            await client.close()


# --------------------------------------------------------------------------- validation helpers


def _action(method: str) -> str:
    return {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, method.lower())


def _seg(s: str) -> str:
    return urllib.parse.quote(s, safe="")


def _is_websocket(request: web.Request) -> bool:
    return (request.headers.get("Upgrade", "").lower() == "websocket"
            and "upgrade" in request.headers.get("Connection", "").lower())


def _pick_protocol(request: web.Request, supported: tuple[str, ...]) -> str | None:
    offered = [p.strip() for h in request.headers.getall("Sec-WebSocket-Protocol", [])
               for p in h.split(",") if p.strip()]
    for p in offered:
        if p in supported:
            return p
    return None


def _parse_ports(request: web.Request) -> list[int]:
    raw = [p for v in request.query.getall("ports", []) for p in v.split(",") if p.strip()]
    if not raw:
        raise errors.bad_request("query parameter \"ports\" is required")
    out = []
    for p in raw:
        try:
            n = int(p)
        except ValueError as exc:
            raise errors.bad_request(f'unable to parse "{p}" as a port: invalid syntax') from exc
        if not 0 < n < 65536:
            raise errors.bad_request(f"port {n} must be > 0 and < 65536")
        out.append(n)
    return out


def _all_container_names(pod: dict[str, Any]) -> list[str]:
    spec = pod.get("spec") or {}
    names = []
    for key in ("initContainers", "containers", "ephemeralContainers"):
        names += [c.get("name", "") for c in spec.get(key) or []]
    return names


def _validate_container(pod: dict[str, Any], container: str) -> str:
    """pkg/registry/core/pod/strategy.go validateContainer."""
    name = pod["metadata"]["name"]
    containers = (pod.get("spec") or {}).get("containers") or []
    if not container:
        if len(containers) == 1:
            return containers[0].get("name", "")
        if not containers:
            raise errors.bad_request(f"a container name must be specified for pod {name}")
        names = " ".join(_all_container_names(pod))
        raise errors.bad_request(f"a container name must be specified for pod {name}, choose one of: [{names}]")
    if container not in _all_container_names(pod):
        raise errors.bad_request(f"container {container} is not valid for pod {name}")
    return container


def _validate_log_options(name: str, q: Any) -> None:
    """ValidatePodLogOptions."""
    errs: list[fld.FieldError] = []

    def num(key: str) -> int | None:
        v = q.get(key)
        if v in (None, ""):
            return None
        try:
            return int(v)
        except ValueError as exc:
            raise errors.bad_request(f'{key}: Invalid value: "{v}": strconv.ParseInt: parsing "{v}": '
                                     f"invalid syntax") from exc

    tail, limit, since = num("tailLines"), num("limitBytes"), num("sinceSeconds")
    if tail is not None and tail < 0:
        errs.append(fld.invalid("tailLines", tail, "must be greater than or equal to 0"))
    if limit is not None and limit < 1:
        errs.append(fld.invalid("limitBytes", limit, "must be greater than 0"))
    if since is not None and q.get("sinceTime"):
        errs.append(fld.forbidden("", "at most one of `sinceTime` or `sinceSeconds` may be specified"))
    if since is not None and since < 1:
        errs.append(fld.invalid("sinceSeconds", since, "must be greater than 0"))
    stream = q.get("stream")
    if stream not in (None, "", "All", "Stdout", "Stderr"):
        errs.append(fld.not_supported("stream", stream, ["All", "Stderr", "Stdout"]))
    if stream in ("Stdout", "Stderr") and tail is not None:
        errs.append(fld.forbidden("", "`tailLines` and specific `stream` are mutually exclusive for now"))
    if errs:
        raise errors.invalid("PodLogOptions", name, errs)


def _check_log_status(pod: dict[str, Any], container: str, previous: bool) -> None:
    """The kubelet's validateContainerLogStatus, on the status the agent reported."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    all_statuses = [*(status.get("containerStatuses") or []), *(status.get("initContainerStatuses") or []),
                    *(status.get("ephemeralContainerStatuses") or [])]
    cs = next((s for s in all_statuses if s.get("name") == container), None)
    if cs is None:
        if all_statuses:
            raise errors.bad_request(f'container "{container}" in pod "{name}" is not available')
        # not reported yet: the kubelet's own generated status says the container is being created
        spec = pod.get("spec") or {}
        init_names = {c.get("name") for c in spec.get("initContainers") or []}
        reason = "PodInitializing" if spec.get("initContainers") and container not in init_names else \
            "ContainerCreating"
        if previous:
            raise errors.bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
        raise errors.bad_request(f'container "{container}" in pod "{name}" is waiting to start: {reason}')
    last = (cs.get("lastState") or {}).get("terminated")
    state = cs.get("state") or {}
    if previous:
        if not last or not last.get("containerID"):
            raise errors.bad_request(f'previous terminated container "{container}" in pod "{name}" not found')
        return
    if state.get("running") is not None:
        return
    if state.get("terminated") is not None:
        if not state["terminated"].get("containerID") and not (last and last.get("containerID")):
            raise errors.bad_request(f'container "{container}" in pod "{name}" is terminated')
        return
    if last is not None:
        if not last.get("containerID"):
            raise errors.bad_request(f'container "{container}" in pod "{name}" is terminated')
        return
    waiting = state.get("waiting")
    if waiting is not None:
        reason = waiting.get("reason", "")
        if reason == "ErrImagePull":
            msg = "image can't be pulled"
        elif reason == "ImagePullBackOff":
            msg = "trying and failing to pull image"
        else:
            msg = reason
        raise errors.bad_request(f'container "{container}" in pod "{name}" is waiting to start: {msg}')
    raise errors.bad_request(f'container "{container}" in pod "{name}" is waiting to start - no logs yet')


def _agent_error(code: int, message: str, resource: str, name: str) -> errors.StatusError:
    """NewGenericServerResponse for a non-2xx answer from the agent."""
    reason = _REASONS.get(code, "InternalError" if code >= 500 else "BadRequest")
    if code == 404 and not message:
        return errors.not_found(resource, name)
    return errors.StatusError(code if code in _REASONS else 500, reason, message or f"the server responded "
                              f"with the status code {code} but did not return more information", None)


def _agent_unreachable(node: str, exc: BaseException) -> errors.StatusError:
    return errors.StatusError(500, "", f"error dialing backend: {exc}", None)


# --------------------------------------------------------------------------- wiring


def node_streams(stores: Stores, pki: pki_mod.PKI,
                 client_ssl_context_factory: Callable[[], ssl.SSLContext] | None = None) -> StreamHandlers:
    """The NodeStreams service of an API server: calls to node agents use ``client_ssl_context_factory()``,
    by default the kube-apiserver-kubelet-client certificate (issued on first use)."""
    factory = client_ssl_context_factory or (lambda: pki_mod.kubelet_client_ssl_context(pki))
    return StreamHandlers(stores, factory)
