"""The agent's client-side load balancer over several API servers (k3s's pkg/agent/loadbalancer).

``kubelite agent --server https://s1:6443,https://s2:6443`` listens on
``127.0.0.1:--lb-server-port`` (k3s's default 6444) and the agent's kubeconfig points there.
Each connection is a plain TCP pipe to one server (TLS stays end to end: the agent verifies the
server's certificate, which carries 127.0.0.1, and presents its own client certificate). New
connections go to the current server; when dialing it fails the next one is tried, in order,
and becomes the current one. A health check (``/livez`` over HTTPS with the cluster CA once the
agent has one, a TCP connect before) runs every few seconds; when the current server fails it,
the balancer fails over and closes the connections still open to the failed server, so every
watch is re-established through the new one (both serve one datastore, so resourceVersions
carry over). The server list is kept in ``DIR/agent-load-balancer.json``, so an agent restarted
without ``--server`` finds its servers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from kubelite.tls.pki import atomic_write

log = logging.getLogger("kubelite.agent.loadbalancer")
DEFAULT_PORT = 6444  # k3s's --lb-server-port
STATE_FILE = "agent-load-balancer.json"
HEALTH_PERIOD = 2.0
DIAL_TIMEOUT = 5.0
_CHUNK = 65536


def parse_servers(values: list[str]) -> list[str]:
    """``--server`` values (repeated and/or comma-separated) as a list of distinct https URLs."""
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            url = part.strip().rstrip("/")
            if not url:
                continue
            u = urlsplit(url)
            if u.scheme != "https" or not u.hostname or u.path not in ("", "/"):
                raise ValueError(f"--server must be an https://HOST:PORT URL, not {part.strip()!r}")
            if url not in out:
                out.append(url)
    return out


def _address(url: str) -> tuple[str, int]:
    u = urlsplit(url)
    return u.hostname or "", u.port or 443


def load_state(data_dir: Path) -> list[str]:
    try:
        data = json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return []
    servers = data.get("servers") if isinstance(data, dict) else None
    return [s for s in servers if isinstance(s, str)] if isinstance(servers, list) else []


def save_state(data_dir: Path, servers: list[str]) -> None:
    atomic_write(data_dir / STATE_FILE, json.dumps({"servers": servers}, indent=1).encode(), 0o600)


def clear_state(data_dir: Path) -> None:
    (data_dir / STATE_FILE).unlink(missing_ok=True)


class LoadBalancer:
    def __init__(self, servers: list[str], port: int = DEFAULT_PORT, host: str = "127.0.0.1",
                 health_period: float = HEALTH_PERIOD, dial_timeout: float = DIAL_TIMEOUT) -> None:
        if not servers:
            raise ValueError("the load balancer needs at least one server")
        self.servers = list(servers)
        self.host = host
        self.port = port
        self.health_period = health_period
        self.dial_timeout = dial_timeout
        self.current = self.servers[0]
        self.healthy = dict.fromkeys(self.servers, True)
        self.health_ssl: ssl.SSLContext | None = None  # the cluster CA, once known: /livez checks
        self._conns: dict[str, set[asyncio.StreamWriter]] = {s: set() for s in self.servers}
        self._listener: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._health: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    async def start(self) -> None:
        for server in self.servers:  # a server at the balancer's own address would loop into itself
            host, port = _address(server)
            if port == self.port and host in (self.host, "localhost", "127.0.0.1", "::1"):
                raise OSError(f"{server} is the load balancer's own address")
        self._listener = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._listener.sockets[0].getsockname()[1]
        self._health = asyncio.create_task(self._health_loop(), name="agent-lb-health")
        log.info("Running load balancer %s -> %s [default: %s]", self.url, self.servers, self.servers[0])

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        if self._health is not None:
            self._health.cancel()
        for server in self.servers:
            self._close_connections(server)
        tasks = [*self._tasks, *([self._health] if self._health else [])]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._listener.wait_closed(), 5)

    # ------------------------------------------------------------------ connections
    def _order(self) -> list[str]:
        """The current server, then the others in --server order: healthy ones before failed ones."""
        i = self.servers.index(self.current)
        rotated = self.servers[i:] + self.servers[:i]
        return [s for s in rotated if self.healthy[s]] + [s for s in rotated if not self.healthy[s]]

    async def _dial(self) -> tuple[str, asyncio.StreamReader, asyncio.StreamWriter] | None:
        for server in self._order():
            host, port = _address(server)
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), self.dial_timeout)
            except (OSError, TimeoutError) as exc:
                why = str(exc) or type(exc).__name__
                log.warning("Dial error from load balancer %s to %s: %s", self.url, server, why)
                self._mark(server, False, why)
                continue
            self._mark(server, True)
            if server != self.current:
                self._fail_over(server)
            return server, reader, writer
        return None

    def _fail_over(self, to: str) -> None:
        old, self.current = self.current, to
        log.warning("Failed over to new server for load balancer %s: %s -> %s", self.url, old, to)
        if not self.healthy[old]:
            self._close_connections(old)

    def _mark(self, server: str, ok: bool, why: str = "") -> None:
        if self.healthy[server] != ok:
            log.info("load balancer %s: server %s is %s%s", self.url, server, "healthy" if ok else "failed",
                     f" ({why})" if why else "")
        self.healthy[server] = ok

    def _close_connections(self, server: str) -> None:
        conns = self._conns.get(server) or set()
        if conns:
            log.info("Closing %d connections to load balancer server %s", len(conns), server)
        for w in list(conns):
            w.close()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            dialed = await self._dial()
            if dialed is None:
                log.error("load balancer %s: no server of %s answers", self.url, self.servers)
                return
            server, back_r, back_w = dialed
            conns = self._conns[server]
            conns.update((client_w, back_w))
            try:
                await asyncio.gather(_pipe(client_r, back_w), _pipe(back_r, client_w))
            finally:
                conns.discard(client_w)
                conns.discard(back_w)
                back_w.close()
        except asyncio.CancelledError:  # close(): asyncio's server owns this task and logs a cancel as an error
            pass
        finally:
            client_w.close()
            if task is not None:
                self._tasks.discard(task)

    # ------------------------------------------------------------------ health
    async def check(self, server: str) -> str:
        """"" when ``server`` is healthy, else why not."""
        host, port = _address(server)
        try:
            if self.health_ssl is None:
                _, w = await asyncio.wait_for(asyncio.open_connection(host, port), self.dial_timeout)
                w.close()
                return ""
            return await asyncio.wait_for(self._livez(host, port), self.dial_timeout)
        except (OSError, TimeoutError, ValueError) as exc:  # (ssl.SSLError is an OSError)
            return str(exc) or type(exc).__name__

    async def _livez(self, host: str, port: int) -> str:
        r, w = await asyncio.open_connection(host, port, ssl=self.health_ssl, server_hostname=host)
        try:
            w.write(f"GET /livez HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            await w.drain()
            status = (await r.readline()).decode(errors="replace").strip()
            return "" if status.split(" ")[1:2] == ["200"] else f"/livez answered {status!r}"
        finally:
            w.close()

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.health_period)
            results = await asyncio.gather(*(self.check(s) for s in self.servers))
            for server, why in zip(self.servers, results, strict=True):
                self._mark(server, not why, why)
            if not self.healthy[self.current]:
                nxt = next((s for s in self._order() if self.healthy[s]), None)
                if nxt is not None:  # (with none healthy the connections stay: there is nowhere better)
                    self._fail_over(nxt)


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await src.read(_CHUNK)
            if not data:
                break
            dst.write(data)
            await dst.drain()
    except (OSError, RuntimeError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if dst.can_write_eof():
                dst.write_eof()
            else:
                dst.close()


def point_kubeconfig_at(kubeconfig: Path, url: str) -> None:
    """Make every cluster of a kubeconfig use ``url`` (the load balancer), keeping the rest."""
    import yaml

    cfg = yaml.safe_load(kubeconfig.read_text())
    changed = False
    for c in cfg.get("clusters") or []:
        cluster = c.get("cluster") or {}
        if cluster.get("server") != url:
            cluster["server"] = url
            changed = True
    if changed:
        atomic_write(kubeconfig, yaml.safe_dump(cfg, sort_keys=False).encode(), 0o600)


__all__ = ["DEFAULT_PORT", "LoadBalancer", "clear_state", "load_state", "parse_servers", "point_kubeconfig_at", "save_state"]
