"""The scrape loop (metrics-server's pkg/scraper and pkg/server): every node's
``/metrics/resource``, all nodes at once with a per-node timeout, every resolution (15 s) and
once at start, over the node's serving TLS with the API server's kubelet-client certificate
(as pods/log and pods/exec reach the node)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from kubelite.apiserver.registry import ListOptions
from kubelite.metricsserver.storage import METRIC_RESOLUTION, Batch, NodeStorage, PodStorage, decode_batch

log = logging.getLogger("kubelite.metricsserver")

SCRAPE_TIMEOUT = 10.0
RESOURCE_PATH = "/metrics/resource"

# (node name, path, timeout) -> the body of the node agent's answer (raises when it fails)
NodeGetter = Callable[[str, str, float], Awaitable[bytes]]


class MetricsServer:
    def __init__(self, stores: Any, node_get: NodeGetter, resolution: float = METRIC_RESOLUTION,
                 timeout: float = SCRAPE_TIMEOUT) -> None:
        self.stores = stores
        self.node_get = node_get
        self.resolution = resolution
        self.timeout = timeout
        self.nodes = NodeStorage()
        self.pods = PodStorage(resolution)
        self.scrapes = 0

    async def _scrape_node(self, name: str) -> Batch | None:
        started = time.time()
        try:
            body = await self.node_get(name, RESOURCE_PATH, self.timeout)
            return decode_batch(body.decode("utf-8", "replace"), started, name)
        except Exception as exc:  # one node's failure does not hold the others' points back
            log.info("scraping node %s failed: %s", name, exc or type(exc).__name__)
            return None

    async def scrape_once(self) -> None:
        nodes, _, _, _ = await self.stores.get("", "nodes").list("", ListOptions())
        names = [n["metadata"]["name"] for n in nodes]
        batches = await asyncio.gather(*(self._scrape_node(n) for n in names))
        merged = Batch()
        for b in batches:
            if b is not None:
                merged.nodes.update(b.nodes)
                merged.pods.update(b.pods)
        self.nodes.store(merged)
        self.pods.store(merged)
        self.scrapes += 1

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.scrape_once()
            except Exception:
                log.exception("metrics scrape failed")
            await asyncio.sleep(max(0.0, self.resolution - (time.monotonic() - started)))


__all__ = ["MetricsServer", "NodeGetter"]
