"""The probe kinds (pkg/probe/{http,tcp,exec,grpc} and prober.go runProbe): one call each,
answering ``(result, output)`` like upstream's ``probe.Result`` plus output, or raising
:class:`ProbeError` where upstream returns an error (the result is then thrown away).

Messages are upstream's, Go error strings included, because they end up in ``Unhealthy``
events: ``HTTP probe failed with statuscode: 500``, ``Get "http://10.244.0.7:8080/healthy":
dial tcp 10.244.0.7:8080: connect: connection refused``, ``dial tcp …: i/o timeout``,
``command "sleep 5" timed out``, ``service unhealthy (responded with "NOT_SERVING")``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import socket
import struct
from typing import Any
from urllib.parse import urljoin, urlsplit

from kubelite.agent.node import KUBELET_VERSION
from kubelite.agent.podenv import expand
from kubelite.api import protobuf
from kubelite.api.field import go_quote

Obj = dict[str, Any]

# probe.Result
SUCCESS = "success"
WARNING = "warning"
FAILURE = "failure"
UNKNOWN = "unknown"

MAX_RESP_BODY = 10 * 1024  # pkg/probe/http maxRespBodyLength
MAX_EXEC_OUTPUT = 10 * 1024  # pkg/probe/exec maxReadLength
MAX_REDIRECTS = 10
RUNTIME_REQUEST_TIMEOUT = 120.0  # the kubelet's runtime-request-timeout, added to ExecSync's deadline
REDIRECT_CODES = (301, 302, 303, 307, 308)


def user_agent(purpose: str = "probe") -> str:
    """``kube-probe/1.37`` (userAgent in pkg/probe/http/request.go: major.minor only)."""
    major, minor = KUBELET_VERSION.lstrip("v").split(".")[:2]
    return f"kube-{purpose}/{major}.{minor}"


class ProbeError(Exception):
    """A probe that could not run (upstream's non-nil ``err``); ``result`` is what it resulted in."""

    def __init__(self, message: str, result: str = UNKNOWN) -> None:
        super().__init__(message)
        self.result = result


# --------------------------------------------------------------------------- helpers
def go_duration(seconds: float) -> str:
    """time.Duration.String for whole and fractional seconds (``1s``, ``1.5s``, ``2m0s``)."""
    if seconds < 60:
        s = f"{seconds:.3f}".rstrip("0").rstrip(".")
        return f"{s}s"
    m, rest = divmod(int(seconds), 60)
    return f"{m}m{rest}s"


def join_host_port(host: str, port: int) -> str:
    """net.JoinHostPort: brackets around IPv6 literals."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _errno_text(e: int | None) -> str:
    """A syscall error as Go prints it (``connection refused``, ``no route to host``)."""
    if not e:
        return "unknown error"
    text = os.strerror(e)
    return text[:1].lower() + text[1:]


def canonical_header_key(name: str) -> str:
    """textproto.CanonicalMIMEHeaderKey: ``x-custom-header`` → ``X-Custom-Header``."""
    if not name or any(c in name for c in " \t\r\n:"):
        return name
    return "-".join(p[:1].upper() + p[1:].lower() for p in name.split("-"))


def resolve_container_port(port: Any, container: Obj) -> int:
    """probe.ResolveContainerPort: a number, or a named container port, or a number in a string."""
    if isinstance(port, bool) or port is None:
        raise ProbeError(f"intOrString had no kind: {port!r}")
    if isinstance(port, int):
        value = port
    else:
        s = str(port)
        for p in container.get("ports") or []:
            if p.get("name") == s:
                value = int(p.get("containerPort") or 0)
                break
        else:
            try:
                if not s or not (s.lstrip("+-").isdigit()):
                    raise ValueError
                value = int(s)
            except ValueError:
                raise ProbeError(f"strconv.Atoi: parsing {go_quote(s)}: invalid syntax") from None
    if 0 < value < 65536:
        return value
    raise ProbeError(f"invalid port number: {value}")


def _set_linger0(sock: socket.socket) -> None:
    """probe.ProbeDialer: SO_LINGER with a zero timeout, so probes leave no TIME_WAIT sockets."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


# --------------------------------------------------------------------------- HTTP
def http_get_request(http_get: Obj, container: Obj, pod_ip: str) -> tuple[str, list[tuple[str, str]]]:
    """NewRequestForHTTPGetAction: the URL (scheme, host defaulting to the pod IP, resolved
    port, path with its query) and the headers (User-Agent and Accept unless given)."""
    scheme = str(http_get.get("scheme") or "HTTP").lower()
    host = http_get.get("host") or pod_ip
    port = resolve_container_port(http_get.get("port"), container)
    path = http_get.get("path") or ""
    if path and not path.startswith("/"):
        path = "/" + path
    url = f"{scheme}://{join_host_port(host, port)}{path}"
    headers: list[tuple[str, str]] = []
    for h in http_get.get("httpHeaders") or []:
        headers.append((canonical_header_key(h.get("name", "")), h.get("value", "")))
    names = {k for k, _ in headers}
    if "User-Agent" not in names:
        headers.append(("User-Agent", user_agent()))
    if "Accept" not in names:
        headers.append(("Accept", "*/*"))
    elif all(v == "" for k, v in headers if k == "Accept"):
        headers = [(k, v) for k, v in headers if k != "Accept"]
    return url, headers


def _conn_error_text(exc: BaseException, url: str) -> str:
    import aiohttp

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_err = exc.os_error
        if isinstance(os_err, socket.gaierror):
            return f"dial tcp: lookup {host}: no such host"
        return f"dial tcp {join_host_port(host, port)}: connect: {_errno_text(getattr(os_err, 'errno', None))}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "EOF"
    if isinstance(exc, ConnectionResetError | aiohttp.ClientOSError) and getattr(exc, "errno", None):
        return f"read tcp {join_host_port(host, port)}: read: {_errno_text(exc.errno)}"
    return str(exc) or type(exc).__name__


async def http_probe(url: str, headers: list[tuple[str, str]], timeout: float) -> tuple[str, str]:
    """DoHTTPProbe with the kubelet's client: no keep-alive, no compression, TLS not verified,
    redirects followed only to the same host (at most 10), the whole exchange within
    ``timeout``. 200–399 succeeds (3xx that was not followed: a warning), anything else fails."""
    import aiohttp
    from multidict import CIMultiDict

    first_host = urlsplit(url).hostname
    current = url
    hdrs = CIMultiDict(headers)
    if "Connection" not in hdrs:
        hdrs["Connection"] = "close"
    skip = {"Accept-Encoding"}
    if "Accept" not in hdrs:
        skip.add("Accept")
    if "User-Agent" in hdrs and not hdrs["User-Agent"]:
        del hdrs["User-Agent"]
        skip.add("User-Agent")
    phase = "awaiting headers"
    connector = aiohttp.TCPConnector(force_close=True, ssl=False, limit=0)
    session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=None),
                                    skip_auto_headers=skip, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar())
    try:
        async with asyncio.timeout(timeout):
            via = 0
            while True:
                phase = "awaiting headers"
                try:
                    resp = await session.get(current, headers=hdrs, allow_redirects=False)
                except (aiohttp.ClientError, OSError) as exc:
                    return FAILURE, f"Get {go_quote(current)}: {_conn_error_text(exc, current)}"
                location = resp.headers.get("Location")
                if resp.status in REDIRECT_CODES and location:
                    target = urljoin(current, location)
                    if urlsplit(target).hostname != first_host:
                        pass  # http.ErrUseLastResponse: this response is the answer
                    elif via + 1 >= MAX_REDIRECTS:
                        resp.release()
                        return FAILURE, f"Get {go_quote(target)}: stopped after {MAX_REDIRECTS} redirects"
                    else:
                        resp.release()
                        via += 1
                        if urlsplit(location).scheme:  # an absolute location drops a custom Host
                            hdrs.popall("Host", None)
                        current = target
                        continue
                phase = "reading body"
                try:
                    body = await resp.content.read(MAX_RESP_BODY)
                except (aiohttp.ClientError, OSError) as exc:
                    raise ProbeError(_conn_error_text(exc, current), FAILURE) from None
                finally:
                    resp.release()
                break
    except TimeoutError:
        if phase == "reading body":
            raise ProbeError("context deadline exceeded (Client.Timeout or context cancellation while reading body)",
                             FAILURE) from None
        return FAILURE, f"Get {go_quote(current)}: context deadline exceeded (Client.Timeout exceeded while {phase})"
    finally:
        await session.close()
    text = body.decode("utf-8", errors="replace")
    if 200 <= resp.status < 400:
        if resp.status >= 300:
            return WARNING, f"Probe terminated redirects, Response body: {text}"
        return SUCCESS, text
    return FAILURE, f"HTTP probe failed with statuscode: {resp.status}"


# --------------------------------------------------------------------------- TCP
async def tcp_probe(host: str, port: int, timeout: float) -> tuple[str, str]:
    """DoTCPProbe: success when a connection opens within ``timeout``; closed at once."""
    addr = join_host_port(host, port)
    family = socket.AF_INET
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            family = socket.AF_INET6
    loop = asyncio.get_running_loop()
    sock = None
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, family=0 if _is_name(host) else family,
                                           type=socket.SOCK_STREAM)
            fam, stype, proto, _, sa = infos[0]
            sock = socket.socket(fam, stype, proto)
            sock.setblocking(False)
            _set_linger0(sock)
            await loop.sock_connect(sock, sa)
    except TimeoutError:
        return FAILURE, f"dial tcp {addr}: i/o timeout"
    except socket.gaierror:
        return FAILURE, f"dial tcp: lookup {host}: no such host"
    except OSError as exc:
        return FAILURE, f"dial tcp {addr}: connect: {_errno_text(exc.errno or errno.ECONNREFUSED)}"
    finally:
        if sock is not None:
            sock.close()
    return SUCCESS, ""


def _is_name(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return False
    except ValueError:
        return True


# --------------------------------------------------------------------------- exec
def exec_command(command: list[str], container: Obj) -> list[str]:
    """ExpandContainerCommandOnlyStatic: ``$(VAR)`` from the container's literal env values."""
    env = {e.get("name", ""): e.get("value", "") or "" for e in container.get("env") or []}
    return [expand(c, env) for c in command]


def _grpc_error_text(exc: Any) -> str:
    """A gRPC error as grpc-go prints it: ``rpc error: code = NotFound desc = …``."""
    code = "".join(p.capitalize() for p in exc.code().name.split("_"))
    code = {"Ok": "OK"}.get(code, code)
    return f"rpc error: code = {code} desc = {exc.details() or ''}"


async def exec_probe(runtime: Any, container_id: str, command: list[str], timeout: float) -> tuple[str, str]:
    """The exec prober over CRI ExecSync: exit code 0 succeeds; any other exit fails with the
    combined output; the runtime's deadline becomes ``command "…" timed out`` (a failure);
    other runtime errors are errors."""
    import grpc
    from cri_api.v1 import api_pb2 as cri

    secs = int(timeout)
    try:
        resp = await runtime.ExecSync(cri.ExecSyncRequest(container_id=container_id, cmd=command, timeout=secs),
                                      timeout=timeout + RUNTIME_REQUEST_TIMEOUT)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return FAILURE, f"command {go_quote(' '.join(command))} timed out"
        raise ProbeError(_grpc_error_text(exc)) from None
    data = (bytes(resp.stdout) + bytes(resp.stderr))[:MAX_EXEC_OUTPUT].decode("utf-8", errors="replace")
    if resp.exit_code != 0:
        return FAILURE, data
    return SUCCESS, data


# --------------------------------------------------------------------------- gRPC
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
SERVING_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def _encode_health_request(service: str) -> bytes:
    """grpc.health.v1.HealthCheckRequest{service} in protobuf wire format."""
    out = bytearray()
    if service:
        protobuf.put_bytes(out, 1, service.encode())
    return bytes(out)


def _decode_health_status(data: bytes) -> int:
    """HealthCheckResponse.status (field 1, varint); 0 when absent or unreadable."""
    try:
        fields = protobuf.parse_fields(data)
    except protobuf.MalformedError:
        return 0
    varints = [v for wt, v in fields.get(1, []) if wt == 0]
    return varints[-1] if varints else 0


async def grpc_probe(host: str, service: str, port: int, timeout: float) -> tuple[str, str]:
    """The gRPC health probe (grpc.health.v1.Health/Check, plaintext)."""
    import grpc

    addr = join_host_port(host, port)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    channel = grpc.aio.insecure_channel(addr, options=[("grpc.primary_user_agent", user_agent())])
    try:
        try:
            await asyncio.wait_for(channel.channel_ready(), timeout)
        except TimeoutError:
            return FAILURE, (f"timeout: failed to connect service {go_quote(addr)} within {go_duration(timeout)}: "
                             "context deadline exceeded")
        call = channel.unary_unary(HEALTH_CHECK, request_serializer=lambda b: b, response_deserializer=lambda b: b)
        try:
            resp = await call(_encode_health_request(service), timeout=max(deadline - loop.time(), 0.001))
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return FAILURE, ("error: this server does not implement the grpc health protocol "
                                 f"(grpc.health.v1.Health): {exc.details() or ''}")
            if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                return FAILURE, f"timeout: health rpc did not complete within {go_duration(timeout)}"
            return FAILURE, f"error: health rpc probe failed: {_grpc_error_text(exc)}"
    finally:
        await channel.close()
    status = _decode_health_status(resp)
    if status != 1:
        return FAILURE, f"service unhealthy (responded with {go_quote(SERVING_STATUS.get(status, str(status)))})"
    return SUCCESS, "service is serving"
