"""The agent's client-side load balancer (kubelite/agent/loadbalancer.py): connections go to the
current server, the next one when it cannot be dialed, and connections to a server that fails its
health check are closed so that clients reconnect through the next one. Plain TCP servers on
127.0.0.1 stand in for API servers (the balancer never looks inside the bytes)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from kubelite.agent import loadbalancer as lbmod


class Backend:
    """Answers every line with ``<name>:<line>``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self, port: int = 0) -> Backend:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        self.writers.add(w)
        try:
            while line := await r.readline():
                w.write(f"{self.name}:".encode() + line)
                await w.drain()
        except OSError:
            pass
        finally:
            self.writers.discard(w)
            w.close()

    async def kill(self) -> None:
        """As a process that died: the listener is gone and its connections are reset."""
        assert self.server is not None
        self.server.close()
        for w in list(self.writers):
            w.transport.abort()
        await self.server.wait_closed()


async def ask(port: int, text: str = "hi") -> str:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    try:
        w.write(text.encode() + b"\n")
        await w.drain()
        return (await asyncio.wait_for(r.readline(), 5)).decode().strip()
    finally:
        w.close()


async def test_fails_over_to_the_next_server_and_closes_connections_to_the_dead_one(caplog):
    one, two = await Backend("one").start(), await Backend("two").start()
    lb = lbmod.LoadBalancer([one.url, two.url], port=0, health_period=0.1)
    await lb.start()
    try:
        assert await ask(lb.port) == "one:hi"
        r, w = await asyncio.open_connection("127.0.0.1", lb.port)  # a long-lived watch
        w.write(b"watch\n")
        await w.drain()
        assert (await r.readline()).strip() == b"one:watch"
        await one.kill()
        assert await asyncio.wait_for(r.read(), 5) == b""  # the watch ends: the client re-establishes it
        w.close()
        assert await ask(lb.port) == "two:hi"
        assert lb.current == two.url and not lb.healthy[one.url]
        # the first server comes back: the balancer stays where it is until that one fails
        await one.start(one.port)
        assert await ask(lb.port) == "two:hi"
        await two.kill()
        assert await ask(lb.port) == "one:hi"
        _, open_w = await asyncio.open_connection("127.0.0.1", lb.port)  # still open when the agent stops
        await asyncio.sleep(0.05)
    finally:
        caplog.set_level(logging.ERROR, "asyncio")
        await lb.close()
        await asyncio.sleep(0.05)
        assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text
        for b in (one, two):
            with contextlib.suppress(Exception):
                await b.kill()


async def test_dial_failure_moves_to_the_next_server_at_once():
    one, two = await Backend("one").start(), await Backend("two").start()
    lb = lbmod.LoadBalancer([one.url, two.url], port=0, health_period=60)  # no health check in time
    await lb.start()
    try:
        await one.kill()
        assert await ask(lb.port) == "two:hi"
        assert lb.current == two.url
    finally:
        await lb.close()
        await two.kill()


def test_server_flags_and_state(tmp_path):
    assert lbmod.parse_servers(["https://a:6443,https://b:6443/", "https://a:6443", "https://c:1"]) == [
        "https://a:6443", "https://b:6443", "https://c:1"]
    for bad in ("http://a:6443", "a:6443", "https://a:6443/api"):
        with pytest.raises(ValueError, match="--server must be an https://HOST:PORT URL"):
            lbmod.parse_servers([bad])
    assert lbmod.load_state(tmp_path) == []
    lbmod.save_state(tmp_path, ["https://a:1", "https://b:2"])
    assert lbmod.load_state(tmp_path) == ["https://a:1", "https://b:2"]
    assert (tmp_path / lbmod.STATE_FILE).stat().st_mode & 0o777 == 0o600


async def test_a_server_at_the_balancers_own_address_is_refused():
    from tests.e2e.harness import free_port

    port = free_port()
    lb = lbmod.LoadBalancer([f"https://127.0.0.1:{port}", "https://127.0.0.1:1"], port=port)
    with pytest.raises(OSError, match="is the load balancer's own address"):
        await lb.start()
