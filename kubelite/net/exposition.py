"""Prometheus text exposition (format 0.0.4, as Kubernetes components serve it) of a
:class:`prometheus_client.CollectorRegistry`, shared by the API server and the node agent."""

from __future__ import annotations

import prometheus_client
from aiohttp import web
from prometheus_client import CollectorRegistry

# client_golang never writes the _created series prometheus_client adds to counters and
# histograms by default; dashboards do not expect them
prometheus_client.disable_created_metrics()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def render(registry: CollectorRegistry) -> web.Response:
    return web.Response(body=prometheus_client.generate_latest(registry), headers={"Content-Type": CONTENT_TYPE})


__all__ = ["CONTENT_TYPE", "render"]
