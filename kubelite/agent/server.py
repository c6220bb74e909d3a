"""The node agent's HTTPS endpoint (the kubelet's port 10250): logs, exec, attach, port-forward,
metrics and stats.

Logs, exec, attach and port-forward are the API server's alone: the request is refused (403)
unless it comes with a client certificate from the cluster CA whose CN is
``kube-apiserver-kubelet-client``. ``/metrics``, ``/metrics/cadvisor``, ``/metrics/probes``,
``/metrics/resource`` and ``/stats/summary`` are for whoever the API server authorizes on
``nodes/metrics`` / ``nodes/stats`` (a certificate or a bearer token; see ``auth.py``).

- ``GET /containerLogs/{ns}/{pod}/{container}`` streams the CRI log file (see ``logs.py``).
- ``/exec/{ns}/{pod}/{container}?command=..&stdin=&stdout=&stderr=&tty=`` and
  ``/attach/...``: a WebSocket speaking ``v5.channel.k8s.io`` (or v4) towards the caller;
  towards containerd the agent asks CRI Exec/Attach for a single-use URL and speaks SPDY/3.1
  remotecommand ``v4.channel.k8s.io`` to it (SPDY, unlike containerd's WebSocket, can
  half-close stdin, which v5's close signal needs).
- ``/portForward/{ns}/{pod}?port=N``: one WebSocket per forwarded connection (subprotocol
  ``portforward.kubelite.io``): binary messages carry data, an empty binary message is a
  half-close, a text message is an error; the agent speaks SPDY ``portforward.k8s.io`` to
  containerd's stream server.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import glob
import logging
import os
import re
import ssl
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from kubelite.agent import logs
from kubelite.net import listener, spdy
from kubelite.net.exposition import render
from kubelite.tls import pki as pki_mod

log = logging.getLogger("kubelite.agent.server")

DEFAULT_PORT = 10250
LOG_ROTATION_PERIOD = 10.0  # the kubelet checks every 10 s
ALLOWED_CLIENT_CN = pki_mod.KUBELET_CLIENT_CN
PORTFORWARD_PROTOCOL = "portforward.kubelite.io"
ERROR_HEADER = "X-Kubelite-Error"
UPGRADE_REQUIRED = "Upgrade request required"
CHANNEL_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
REMOTECOMMAND_PROTOCOLS = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"]

LABEL_POD_UID = "io.kubernetes.pod.uid"
LABEL_POD_NAME = "io.kubernetes.pod.name"
LABEL_POD_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_CONTAINER_NAME = "io.kubernetes.container.name"

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


class AgentError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _qbool(v: str | None) -> bool:
    return (v or "").lower() in ("1", "true", "t", "yes")


def peer_subject(request: web.Request) -> tuple[str, tuple[str, ...]] | None:
    """(CN, O values) of the client certificate (verified against the cluster CA by the TLS
    handshake), or None without one."""
    transport = request.transport
    cert = transport.get_extra_info("peercert") if transport is not None else None
    if not cert:
        return None
    cn, orgs = "", []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
            elif key == "organizationName":
                orgs.append(value)
    return cn, tuple(orgs)


def peer_common_name(request: web.Request) -> str | None:
    subject = peer_subject(request)
    return subject[0] if subject is not None and subject[0] else None


# served to whoever the API server authorizes (NodeAuth); everything else only to the API server
DELEGATED_PREFIXES = ("/metrics", "/stats")


def _delegated(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in DELEGATED_PREFIXES)


@web.middleware
async def _only_apiserver(request: web.Request, handler: Any) -> web.StreamResponse:
    if peer_common_name(request) != ALLOWED_CLIENT_CN:
        return web.Response(status=403, text="Forbidden: only the API server may use this endpoint\n")
    try:
        return await handler(request)
    except AgentError as exc:
        # the message also travels in a header: a failed WebSocket handshake hides the body
        return web.Response(status=exc.code, text=exc.message,
                            headers={ERROR_HEADER: urllib.parse.quote(exc.message)})


class AgentServer:
    """``AgentServer(cri, data_dir, pki, port)``; ``await start()`` / ``await stop()``.

    ``cri`` is a connected :class:`kubelite.agent.cri.CRI`. The TLS context is ``ssl_context``
    when given (a node's, with its serving certificate from a kubelet-serving CSR: see
    ``agent/certmanager.py``); otherwise it is made from ``pki``, the cluster PKI, whose CA key
    issues the agent's serving cert (``ensure_kubelet_certs``: the server's own agent).
    """

    def __init__(self, cri: Any, data_dir: Path | str, pki: pki_mod.PKI | None, port: int = DEFAULT_PORT,
                 bind: str = "0.0.0.0", node_addresses: list[str] | tuple[str, ...] = (),
                 node_name: str = "", certs: pki_mod.KubeletCerts | None = None,
                 log_rotation: bool = True, log_max_size: int = logs.DEFAULT_MAX_SIZE,
                 log_max_files: int = logs.DEFAULT_MAX_FILES,
                 log_rotation_period: float = LOG_ROTATION_PERIOD, ssl_context: ssl.SSLContext | None = None) -> None:
        self.cri = cri
        self._ssl_context = ssl_context
        self.data_dir = Path(data_dir)
        self.pki = pki
        self.port = port
        self.bind = bind
        self.node_addresses = list(node_addresses)
        self.node_name = node_name
        self.certs = certs  # None: issue them from the cluster CA (needs the CA key)
        self.runner: web.AppRunner | None = None
        self.guard: listener.Guard | None = None
        self.rotator = logs.LogRotator(self._running_logs, self._reopen_log, log_max_size, log_max_files)
        self.log_rotation = log_rotation
        self.log_rotation_period = log_rotation_period
        self._rotation_task: asyncio.Task | None = None
        # (namespace, pod, container, uid or "") -> the container's status as the agent computed
        # it, or None: `logs --previous` follows its lastState like the kubelet
        self.container_status: Callable[[str, str, str, str], dict | None] | None = None
        # what /metrics, /metrics/cadvisor, /metrics/resource and /stats/summary serve, and who
        # may read them (kubelite.agent.auth.NodeAuth); the agent sets them
        self.auth: Any = None
        self.metrics: Any = None  # kubelite.agent.metrics.AgentMetrics
        self.stats: Any = None  # kubelite.agent.stats.StatsProvider

    # ------------------------------------------------------------------ lifecycle
    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl_context is not None:
            return self._ssl_context
        if self.pki is None:
            raise ValueError("the agent endpoint needs an SSL context or the cluster PKI")
        kc = self.certs or pki_mod.ensure_kubelet_certs(self.pki, self.node_addresses, self.node_name)
        return pki_mod.kubelet_server_ssl_context(self.pki, kc)

    def app(self, front: tuple[Any, ...] = ()) -> web.Application:
        app = web.Application(middlewares=[*front, self._access()])
        r = app.router
        r.add_get("/metrics", self.metrics_endpoint)
        r.add_get("/metrics/cadvisor", self.metrics_cadvisor)
        r.add_get("/metrics/probes", self.metrics_probes)
        r.add_get("/metrics/resource", self.metrics_resource)
        r.add_get("/stats/summary", self.stats_summary)
        r.add_get("/containerLogs/{ns}/{pod}/{container}", self.container_logs)
        for verb in ("exec", "attach"):
            r.add_route("GET", f"/{verb}/{{ns}}/{{pod}}/{{container}}", self.remote_command)
            r.add_route("POST", f"/{verb}/{{ns}}/{{pod}}/{{container}}", self.remote_command)
        r.add_route("GET", "/portForward/{ns}/{pod}", self.port_forward)
        r.add_route("POST", "/portForward/{ns}/{pod}", self.port_forward)
        r.add_get("/healthz", self.healthz)
        return app

    def _access(self) -> Any:
        """Metrics and stats: whoever the API server authorizes on nodes/metrics or
        nodes/stats (the kubelet's webhook authn/authz); the rest: the API server only."""

        @web.middleware
        async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
            if not _delegated(request.path):
                return await _only_apiserver(request, handler)
            if self.auth is None:
                return web.Response(status=403, text="Forbidden: this endpoint has no authorizer\n")
            denied = await self.auth.check(request)
            if denied is not None:
                return denied
            return await handler(request)

        return middleware

    async def start(self) -> None:
        ctx = self.ssl_context()
        # the apiserver's listener hygiene; only the apiserver's connections become trusted
        self.guard = listener.prepare(listener.ListenerLimits(),
                                      trusted=lambda r: peer_common_name(r) == ALLOWED_CLIENT_CN)
        self.runner = web.AppRunner(self.app((self.guard.middleware(),)), access_log=None, handler_cancellation=True,
                                    shutdown_timeout=1.0, keepalive_timeout=self.guard.limits.idle_timeout)
        await self.runner.setup()
        await listener.serve_https(self.runner, self.guard, self.bind, self.port, ctx)
        if self.port == 0:  # pick up the kernel's choice
            self.port = listener.bound_port(self.guard)
        log.info("agent endpoint listening on %s:%d", self.bind, self.port)
        if self.log_rotation:
            self._rotation_task = asyncio.create_task(self._rotate_logs_forever(), name="agent-log-rotation")

    async def stop(self) -> None:
        if self._rotation_task is not None:
            self._rotation_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rotation_task
            self._rotation_task = None
        if self.guard is not None:
            await self.guard.close()
            self.guard = None
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    # ------------------------------------------------------------------ log rotation
    async def _rotate_logs_forever(self) -> None:
        while True:
            await asyncio.sleep(self.log_rotation_period)
            try:
                await self.rotator.rotate_all()
            except Exception:  # CRI down for a moment: try again next period
                log.warning("container log rotation failed", exc_info=True)

    async def _running_logs(self) -> list[tuple[str, str]]:
        """(container id, log path) of every running container (the kubelet's rotation set)."""
        from kubelite.agent.cri import pb

        flt = pb.ContainerFilter(state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING))
        resp = await self.cri.runtime.ListContainers(pb.ListContainersRequest(filter=flt), timeout=10)
        out = []
        for c in resp.containers:
            try:
                st = await self.cri.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=c.id), timeout=10)
            except Exception:
                continue
            if st.status.log_path:
                out.append((c.id, st.status.log_path))
        return out

    async def _reopen_log(self, cid: str) -> None:
        from kubelite.agent.cri import pb

        await self.cri.runtime.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid), timeout=10)

    async def healthz(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    # ------------------------------------------------------------------ metrics and stats
    async def metrics_endpoint(self, request: web.Request) -> web.StreamResponse:
        if self.metrics is None:
            raise web.HTTPNotFound()
        return render(self.metrics.registry)

    async def metrics_probes(self, request: web.Request) -> web.StreamResponse:
        if self.metrics is None:
            raise web.HTTPNotFound()
        return render(self.metrics.probe_registry)

    async def metrics_cadvisor(self, request: web.Request) -> web.StreamResponse:
        if self.stats is None:
            raise web.HTTPNotFound()
        return render(await self.stats.cadvisor_registry())

    async def metrics_resource(self, request: web.Request) -> web.StreamResponse:
        if self.stats is None:
            raise web.HTTPNotFound()
        return render(await self.stats.resource_registry())

    async def stats_summary(self, request: web.Request) -> web.StreamResponse:
        if self.stats is None:
            raise web.HTTPNotFound()
        import orjson

        return web.Response(body=orjson.dumps(await self.stats.summary()), content_type="application/json")

    # ------------------------------------------------------------------ CRI lookups
    async def find_sandbox(self, namespace: str, name: str, uid: str = "") -> Any | None:
        """The newest ready sandbox of a pod (by CRI labels), or None."""
        from kubelite.agent.cri import pb

        labels = {LABEL_POD_NAMESPACE: namespace, LABEL_POD_NAME: name}
        if uid:
            labels[LABEL_POD_UID] = uid
        flt = pb.PodSandboxFilter(label_selector=labels,
                                  state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY))
        resp = await self.cri.runtime.ListPodSandbox(pb.ListPodSandboxRequest(filter=flt), timeout=10)
        items = sorted(resp.items, key=lambda s: s.created_at, reverse=True)
        return items[0] if items else None

    async def find_containers(self, namespace: str, name: str, container: str, uid: str = "") -> list[Any]:
        """All CRI containers of a pod's container name (any state), newest attempt first."""
        from kubelite.agent.cri import pb

        labels = {LABEL_POD_NAMESPACE: namespace, LABEL_POD_NAME: name, LABEL_CONTAINER_NAME: container}
        if uid:
            labels[LABEL_POD_UID] = uid
        resp = await self.cri.runtime.ListContainers(
            pb.ListContainersRequest(filter=pb.ContainerFilter(label_selector=labels)), timeout=10)
        items = list(resp.containers)
        if not uid and items:  # several pods of this name over time: the newest one wins
            newest = max(items, key=lambda c: c.created_at).labels.get(LABEL_POD_UID, "")
            items = [c for c in items if c.labels.get(LABEL_POD_UID, "") == newest]
        return sorted(items, key=lambda c: (c.metadata.attempt, c.created_at), reverse=True)

    async def running_container(self, namespace: str, name: str, container: str, uid: str = "") -> str:
        from kubelite.agent.cri import pb

        for c in await self.find_containers(namespace, name, container, uid):
            if c.state == pb.CONTAINER_RUNNING:
                return c.id
        raise AgentError(404, f'container not found ("{container}")')

    def pod_log_dirs(self, namespace: str, name: str, uid: str = "") -> list[Path]:
        pattern = f"{glob.escape(namespace)}_{glob.escape(name)}_{glob.escape(uid) if uid else '*'}"
        dirs = [Path(p) for p in glob.glob(str(self.data_dir / "pods" / pattern))]
        return sorted(dirs, key=lambda p: p.stat().st_mtime, reverse=True)

    async def _log_target(self, namespace: str, name: str, container: str, previous: bool,
                          uid: str) -> tuple[Path, str | None]:
        """(log file, CRI container id or None) of the current or previous instance."""
        from kubelite.agent.cri import pb

        containers = await self.find_containers(namespace, name, container, uid)
        if containers:
            cur = containers[0]
            if previous:
                # validateContainerLogStatus: --previous is the container of lastState.terminated
                # (in CrashLoopBackOff the newest exited one; older instances may be GC'd by now)
                last_id = self._last_terminated_id(namespace, name, container, uid)
                byid = [c for c in containers if c.id == last_id]
                older = [c for c in containers[1:] if c.metadata.attempt < cur.metadata.attempt]
                if byid:
                    cur = byid[0]
                elif not older:
                    raise AgentError(400, f'previous terminated container "{container}" in pod "{name}" not found')
                else:
                    cur = older[0]
            st = await self.cri.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=cur.id), timeout=10)
            path = st.status.log_path
            if path and not os.path.isabs(path):
                pod_uid = cur.labels.get(LABEL_POD_UID, uid)
                path = str(self.data_dir / "pods" / f"{namespace}_{name}_{pod_uid}" / path)
            if path and os.path.exists(path):
                return Path(path), cur.id
        # no CRI record (pod gone, runtime restarted): the files are all there is
        for d in self.pod_log_dirs(namespace, name, uid):
            nums = sorted((int(m.group(1)) for f in os.listdir(d / container) if (m := re.fullmatch(r"(\d+)\.log", f)))
                          if (d / container).is_dir() else [], reverse=True)
            if not nums:
                continue
            if previous:
                if len(nums) < 2:
                    raise AgentError(400, f'previous terminated container "{container}" in pod "{name}" not found')
                return d / container / f"{nums[1]}.log", None
            return d / container / f"{nums[0]}.log", None
        if previous:
            raise AgentError(400, f'previous terminated container "{container}" in pod "{name}" not found')
        raise AgentError(404, f'container "{container}" in pod "{name}" is not available')

    def _last_terminated_id(self, namespace: str, name: str, container: str, uid: str) -> str:
        """The CRI id in lastState.terminated of the container's status as the agent last
        computed it ("" when unknown); the agent sets :attr:`container_status`."""
        if self.container_status is None:
            return ""
        try:
            cs = self.container_status(namespace, name, container, uid) or {}
        except Exception:
            return ""
        term = (cs.get("lastState") or {}).get("terminated") or {}
        return str(term.get("containerID", "")).partition("://")[2]

    async def _is_running(self, cid: str | None) -> bool:
        if cid is None:
            return False
        from kubelite.agent.cri import pb

        try:
            st = await self.cri.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=cid), timeout=10)
        except Exception:
            return False
        return st.status.state == pb.CONTAINER_RUNNING

    # ------------------------------------------------------------------ logs
    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        ns, name, container = (request.match_info[k] for k in ("ns", "pod", "container"))
        q = request.query
        try:
            opts = logs.LogOptions.from_query(q, dt.datetime.now(dt.UTC))
        except ValueError as exc:
            raise AgentError(400, str(exc)) from exc
        path, cid = await self._log_target(ns, name, container, _qbool(q.get("previous")), q.get("podUID", ""))
        resp = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
        await resp.prepare(request)

        async def write(stream: str, data: bytes) -> None:
            await resp.write(data)

        async def running() -> bool:
            return await self._is_running(cid)

        with contextlib.suppress(FileNotFoundError):  # removed between lookup and open
            await logs.read_logs(path, opts, write, running if opts.follow else None)
        with contextlib.suppress(ConnectionResetError):
            await resp.write_eof()
        return resp

    # ------------------------------------------------------------------ exec / attach
    async def remote_command(self, request: web.Request) -> web.StreamResponse:
        from kubelite.agent.cri import pb

        verb = request.path.split("/", 2)[1]
        ns, name, container = (request.match_info[k] for k in ("ns", "pod", "container"))
        q = request.query
        stdin, stdout, stderr, tty = (_qbool(q.get(k)) for k in ("stdin", "stdout", "stderr", "tty"))
        if tty and stderr:
            stderr = False  # the kubelet drops stderr with a TTY
        if not (stdin or stdout or stderr):
            raise AgentError(400, "you must specify at least 1 of stdin, stdout, stderr")
        cid = await self.running_container(ns, name, container, q.get("podUID", ""))
        cmd = q.getall("command", [])
        if verb == "exec" and not cmd:
            raise AgentError(400, "you must specify at least one command for the container")
        if request.headers.get("Upgrade", "").lower() != "websocket":
            # everything checked, nothing started: callers probe with a plain request
            raise AgentError(400, UPGRADE_REQUIRED)
        if verb == "exec":
            r = await self.cri.runtime.Exec(pb.ExecRequest(container_id=cid, cmd=cmd, tty=tty, stdin=stdin,
                                                           stdout=stdout, stderr=stderr), timeout=10)
        else:
            r = await self.cri.runtime.Attach(pb.AttachRequest(container_id=cid, stdin=stdin, tty=tty,
                                                               stdout=stdout, stderr=stderr), timeout=10)
        try:
            session, proto, reader = await spdy.connect_upgrade(r.url, REMOTECOMMAND_PROTOCOLS)
        except spdy.SpdyUpgradeError as exc:
            raise AgentError(exc.status or 500, exc.body) from exc
        try:
            streams = await _open_remotecommand_streams(session, stdin, stdout, stderr, tty)
            ws = web.WebSocketResponse(protocols=CHANNEL_PROTOCOLS, autoping=True, heartbeat=None)
            await ws.prepare(request)
            await bridge_remotecommand(ws, streams)
            return ws
        finally:
            session.close()
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader

    # ------------------------------------------------------------------ port forward
    async def port_forward(self, request: web.Request) -> web.StreamResponse:
        from kubelite.agent.cri import pb

        ns, name = request.match_info["ns"], request.match_info["pod"]
        try:
            port = int(request.query.get("port", ""))
            if not 0 < port < 65536:
                raise ValueError
        except ValueError as exc:
            raise AgentError(400, f'invalid port {request.query.get("port", "")!r}') from exc
        sandbox = await self.find_sandbox(ns, name, request.query.get("podUID", ""))
        if sandbox is None:
            raise AgentError(404, f'pod "{name}" not found')
        r = await self.cri.runtime.PortForward(pb.PortForwardRequest(pod_sandbox_id=sandbox.id, port=[port]),
                                               timeout=10)
        try:
            session, _, reader = await spdy.connect_upgrade(r.url, ["portforward.k8s.io"])
        except spdy.SpdyUpgradeError as exc:
            raise AgentError(exc.status or 500, exc.body) from exc
        try:
            hdr = {"port": str(port), "requestid": "0"}
            err_stream = await session.open_stream({"streamtype": "error", **hdr})
            data_stream = await session.open_stream({"streamtype": "data", **hdr})
            await err_stream.close()  # the client never writes to the error stream
            ws = web.WebSocketResponse(protocols=(PORTFORWARD_PROTOCOL,), autoping=True)
            await ws.prepare(request)
            await bridge_portforward(ws, data_stream, err_stream)
            return ws
        finally:
            session.close()
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader


async def _open_remotecommand_streams(session: spdy.SpdySession, stdin: bool, stdout: bool, stderr: bool,
                                      tty: bool) -> dict[int, spdy.SpdyStream]:
    """The remotecommand v4 client's stream set, in its order (error, stdin, stdout, stderr, resize)."""
    out = {ERROR: await session.open_stream({"streamtype": "error"})}
    if stdin:
        out[STDIN] = await session.open_stream({"streamtype": "stdin"})
    if stdout:
        out[STDOUT] = await session.open_stream({"streamtype": "stdout"})
    if stderr and not tty:
        out[STDERR] = await session.open_stream({"streamtype": "stderr"})
    if tty:
        out[RESIZE] = await session.open_stream({"streamtype": "resize"})
    return out


SUCCESS_STATUS = b'{"metadata":{},"status":"Success"}'


async def bridge_remotecommand(ws: web.WebSocketResponse, streams: dict[int, spdy.SpdyStream]) -> None:
    """Relay a channel WebSocket (v4/v5) and remotecommand SPDY streams until the command ends."""

    async def ws_to_spdy() -> None:
        async for msg in ws:
            # text frames carry channel bytes too (wsstream reads every message as []byte)
            if msg.type == aiohttp.WSMsgType.TEXT:
                frame = str(msg.data).encode("utf-8")
            elif msg.type == aiohttp.WSMsgType.BINARY:
                frame = bytes(msg.data)
            else:
                continue
            if not frame:
                continue
            ch, payload = frame[0], frame[1:]
            if ch == CLOSE and payload:
                st = streams.get(payload[0])
                if st is not None and payload[0] in (STDIN, RESIZE):
                    await st.close()
            elif ch in (STDIN, RESIZE) and ch in streams and payload:
                with contextlib.suppress(ConnectionError):
                    await streams[ch].write(payload)
        # the caller went away: end the command's input
        for ch in (STDIN, RESIZE):
            if ch in streams:
                await streams[ch].close()

    async def spdy_to_ws(ch: int) -> None:
        st = streams[ch]
        while True:
            data = await st.read()
            if not data:
                return
            await ws.send_bytes(bytes([ch]) + data)

    async def read_all(st: spdy.SpdyStream) -> bytes:
        buf = b""
        while chunk := await st.read():
            buf += chunk
        return buf

    reader = asyncio.create_task(ws_to_spdy())
    outs = [asyncio.create_task(spdy_to_ws(ch)) for ch in (STDOUT, STDERR) if ch in streams]
    try:
        status = await read_all(streams[ERROR])
        # all output the command produced goes out before its status
        if outs:
            await asyncio.wait(outs, timeout=30)
        if not ws.closed:
            await ws.send_bytes(bytes([ERROR]) + (status or SUCCESS_STATUS))
            await ws.close()
    except ConnectionResetError:
        pass
    finally:
        reader.cancel()
        for t in outs:
            t.cancel()
        await asyncio.gather(reader, *outs, return_exceptions=True)


async def bridge_portforward(ws: web.WebSocketResponse, data: spdy.SpdyStream, err: spdy.SpdyStream) -> None:
    """Relay one forwarded connection between the agent WebSocket and containerd's streams."""

    async def ws_to_stream() -> None:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                if not msg.data:
                    await data.close()
                    continue
                with contextlib.suppress(ConnectionError):
                    await data.write(msg.data)
        await data.close()

    async def stream_to_ws() -> None:
        while chunk := await data.read():
            await ws.send_bytes(chunk)
        if not ws.closed:
            await ws.send_bytes(b"")

    async def errors_to_ws() -> None:
        buf = b""
        while chunk := await err.read():
            buf += chunk
        if buf and not ws.closed:
            await ws.send_str(buf.decode("utf-8", "replace"))

    up = asyncio.create_task(ws_to_stream())
    down = asyncio.create_task(stream_to_ws())
    errs = asyncio.create_task(errors_to_ws())
    try:
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        if down.done():
            # the container side finished: report any error, then end the connection
            await asyncio.wait({errs}, timeout=1)
            if not ws.closed:
                await ws.close()
    except ConnectionResetError:
        pass
    finally:
        for t in (up, down, errs):
            t.cancel()
        await asyncio.gather(up, down, errs, return_exceptions=True)
