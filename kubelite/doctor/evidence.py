"""What ``kubelite doctor`` looks at for one pod — the pod, its events, the nodes (with the
pods bound to them, for free capacity) and the last log lines of its containers — as one
plain value, so the diagnosis is a pure function of it and tests can record and replay it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from kubelite.kinds._printing import parse_time

Obj = dict[str, Any]


@dataclass
class Evidence:
    pod: Obj
    events: list[Obj] = field(default_factory=list)  # core/v1 Events about the pod
    nodes: list[Obj] | None = None  # None: not readable (RBAC) or not asked
    node_pods: list[Obj] | None = None  # pods bound to nodes (for requested resources)
    logs: dict[str, dict[str, str]] = field(default_factory=dict)  # container → {"current"|"previous": tail}
    now: float = field(default_factory=time.time)

    def to_dict(self) -> Obj:
        return {"pod": self.pod, "events": self.events, "nodes": self.nodes, "nodePods": self.node_pods,
                "logs": self.logs, "now": self.now}

    @classmethod
    def from_dict(cls, d: Obj) -> Evidence:
        return cls(pod=d["pod"], events=list(d.get("events") or []), nodes=d.get("nodes"),
                   node_pods=d.get("nodePods"), logs=dict(d.get("logs") or {}), now=float(d.get("now") or 0))


def event_time(ev: Obj) -> float:
    """When an event last happened (lastTimestamp, series, eventTime, firstTimestamp, creation)."""
    raw = ev.get("series")
    series: Obj = raw if isinstance(raw, dict) else {}
    for ts in (ev.get("lastTimestamp"), series.get("lastObservedTime"), ev.get("eventTime"),
               ev.get("firstTimestamp"), (ev.get("metadata") or {}).get("creationTimestamp")):
        t = parse_time(ts) if isinstance(ts, str) else None
        if t is not None:
            return t
    return 0.0


def events_of(pod: Obj, events: list[Obj]) -> list[Obj]:
    """The events about this pod (this incarnation, when the event names a uid), oldest first."""
    meta = pod.get("metadata") or {}
    uid, name, ns = meta.get("uid"), meta.get("name"), meta.get("namespace")
    out = []
    for ev in events:
        inv = ev.get("involvedObject") or ev.get("regarding") or {}
        if inv.get("kind", "Pod") != "Pod" or inv.get("name") != name:
            continue
        if inv.get("namespace", ns) != ns or (uid and inv.get("uid") and inv.get("uid") != uid):
            continue
        out.append(ev)
    return sorted(out, key=event_time)
