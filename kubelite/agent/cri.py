"""CRI client: the generated runtime.v1 stubs over one grpc.aio channel.

    from cri_api.v1 import api_pb2 as cri_pb
    client = await connect(socket_path)
    resp = await client.runtime.RunPodSandbox(cri_pb.RunPodSandboxRequest(config=...))
    await client.close()

``client.runtime`` is a ``RuntimeServiceStub`` and ``client.image`` an ``ImageServiceStub``
(from PyPI ``container-runtime-interface-api``, module ``cri_api.v1``); call them with
``cri_api.v1.api_pb2`` messages. The channel reconnects quickly (≤ 1 s backoff) after a
containerd restart. ``pb`` re-exports the message module for convenience.
"""

from __future__ import annotations

from pathlib import Path

import grpc
from cri_api.v1 import api_pb2 as pb
from cri_api.v1 import api_pb2_grpc as pb_grpc

__all__ = ["CRI", "connect", "pb", "grpc"]

MAX_MESSAGE = 16 * 1024 * 1024  # the kubelet's limit

CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE),
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.enable_retries", 1),
]


class CRI:
    """A CRI connection: ``runtime`` and ``image`` stubs sharing one ``grpc.aio`` channel."""

    def __init__(self, channel: grpc.aio.Channel, socket_path: str | Path) -> None:
        self.channel = channel
        self.socket_path = Path(socket_path)
        self.runtime = pb_grpc.RuntimeServiceStub(channel)
        self.image = pb_grpc.ImageServiceStub(channel)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> CRI:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ thin helpers
    async def version(self, timeout: float | None = 5.0) -> pb.VersionResponse:
        return await self.runtime.Version(pb.VersionRequest(version="v1"), timeout=timeout)

    async def status(self, verbose: bool = False, timeout: float | None = 5.0) -> pb.StatusResponse:
        return await self.runtime.Status(pb.StatusRequest(verbose=verbose), timeout=timeout)

    async def conditions(self, timeout: float | None = 5.0) -> dict[str, pb.RuntimeCondition]:
        resp = await self.status(timeout=timeout)
        return {c.type: c for c in resp.status.conditions}

    async def runtime_ready(self, timeout: float | None = 5.0) -> tuple[bool, str]:
        """(RuntimeReady, why-not) from ``Status``."""
        cond = (await self.conditions(timeout=timeout)).get("RuntimeReady")
        if cond is None:
            return False, "no RuntimeReady condition"
        return cond.status, f"{cond.reason}: {cond.message}" if not cond.status else ""

    async def network_ready(self, timeout: float | None = 5.0) -> tuple[bool, str]:
        cond = (await self.conditions(timeout=timeout)).get("NetworkReady")
        if cond is None:
            return False, "no NetworkReady condition"
        return cond.status, f"{cond.reason}: {cond.message}" if not cond.status else ""


async def connect(socket_path: str | Path, *, options: list[tuple[str, object]] | None = None) -> CRI:
    """Open a CRI connection to a containerd socket (lazy: the first RPC connects)."""
    target = f"unix://{Path(socket_path)}"
    channel = grpc.aio.insecure_channel(target, options=[*CHANNEL_OPTIONS, *(options or [])])
    return CRI(channel, socket_path)
