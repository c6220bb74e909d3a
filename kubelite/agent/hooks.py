"""Container lifecycle hooks (pkg/kubelet/lifecycle/handlers.go): postStart and preStop with
exec (in the container, over CRI ExecSync), httpGet (to the pod's IP by default) and sleep;
tcpSocket is accepted by validation but, as in the kubelet, cannot be run.

``run_hook`` returns None on success or the kubelet's failure message, which becomes the
FailedPostStartHook / FailedPreStopHook event. An HTTP hook fails only when no response comes
(any status code is an answer), as the kubelet's handler runner.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from kubelite.agent.crispec import format_pod
from kubelite.agent.probes import http_get_request, resolve_container_port

log = logging.getLogger("kubelite.agent.hooks")
Obj = dict[str, Any]
HTTP_HOOK_TIMEOUT = 10.0


def go_list(items: list[Any]) -> str:
    """fmt's %v of a []string: ``[sh -c exit 1]``."""
    return "[" + " ".join(str(i) for i in items) + "]"


async def run_hook(runtime: Any, pod: Obj, container: Obj, container_id: str, handler: Obj, pod_ip: str) -> str | None:
    name = container.get("name", "")
    if isinstance(handler.get("exec"), dict):
        command = list(handler["exec"].get("command") or [])
        err, output = await _exec(runtime, container_id, command)
        if err is None:
            return None
        return (f'Exec lifecycle hook ({go_list(command)}) for Container "{name}" in Pod "{format_pod(pod)}" failed '
                f'- error: {err}, message: "{output}"')
    if isinstance(handler.get("httpGet"), dict):
        http_get = handler["httpGet"]
        err = await _http(http_get, container, pod_ip)
        if err is None:
            return None
        return (f'HTTP lifecycle hook ({http_get.get("path") or ""}) for Container "{name}" in Pod '
                f'"{format_pod(pod)}" failed - error: {err}')
    if isinstance(handler.get("sleep"), dict):
        seconds = handler["sleep"].get("seconds") or 0
        await asyncio.sleep(max(0, int(seconds)))
        return None
    return f"Cannot run handler: invalid handler: {_handler_text(handler)}"


def _handler_text(handler: Obj) -> str:
    """Go's %v of a LifecycleHandler holding only a tcpSocket (or nothing)."""
    tcp = handler.get("tcpSocket")
    if isinstance(tcp, dict):
        return f"&LifecycleHandler{{Exec:nil,HTTPGet:nil,TCPSocket:&TCPSocketAction{{Port:{{{tcp.get('port')}}},Host:{tcp.get('host', '')},}},Sleep:nil,}}"
    return "&LifecycleHandler{Exec:nil,HTTPGet:nil,TCPSocket:nil,Sleep:nil,}"


async def _exec(runtime: Any, container_id: str, command: list[str]) -> tuple[str | None, str]:
    """RunInContainer without a timeout (the kubelet passes none for hooks): (error, output)."""
    import grpc
    from cri_api.v1 import api_pb2 as cri

    try:
        resp = await runtime.ExecSync(cri.ExecSyncRequest(container_id=container_id, cmd=command, timeout=0),
                                      timeout=None)
    except grpc.aio.AioRpcError as exc:
        return exc.details() or str(exc.code()), ""
    stderr = bytes(resp.stderr).decode("utf-8", errors="replace")
    output = (bytes(resp.stdout) + bytes(resp.stderr)).decode("utf-8", errors="replace")
    if resp.exit_code != 0:
        return f"command '{' '.join(command)}' exited with {resp.exit_code}: {stderr}", output
    return None, output


async def _http(http_get: Obj, container: Obj, pod_ip: str) -> str | None:
    try:
        resolve_container_port(http_get.get("port"), container)
        url, headers = http_get_request(http_get, container, pod_ip)
    except Exception as exc:  # a named port the container does not have
        return str(exc)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False, force_close=True)) as s:
            async with s.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=HTTP_HOOK_TIMEOUT),
                             allow_redirects=True) as resp:
                await resp.read()
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        return f'Get "{url}": {exc}'
    return None


__all__ = ["run_hook"]
