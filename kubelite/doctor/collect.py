"""The thin client layer of ``kubelite doctor``: reads the pods, their events, the nodes and
the last log lines through the API (as ``kubectl describe`` and ``kubectl logs`` do) into
:class:`~kubelite.doctor.evidence.Evidence`. Everything else is pure
(:mod:`kubelite.doctor.diagnose`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from kubelite.api import errors
from kubelite.client.api import Client, resource_path
from kubelite.doctor.evidence import Evidence, events_of
from kubelite.kinds._printing import parse_time

Obj = dict[str, Any]
TAIL_LINES = 20
LIMIT_BYTES = 64 * 1024
RECENT_RESTART = 600.0  # a restart this recent makes a Ready pod worth a look


def _ok(pod: Obj, now: float) -> bool:
    """Running with every container ready and no recent restart, or finished successfully."""
    st = pod.get("status") or {}
    if st.get("phase") == "Succeeded":
        return True
    if st.get("phase") != "Running" or (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
    cs = st.get("containerStatuses") or []
    for c in cs:
        finished = parse_time(((c.get("lastState") or {}).get("terminated") or {}).get("finishedAt"))
        if finished is not None and now - finished < RECENT_RESTART:
            return False
    return conds.get("Ready") == "True" and all(c.get("ready") for c in cs)


async def _maybe(coro: Any) -> Any:
    """The answer, or None when the API refuses (a user without access to nodes still gets a diagnosis)."""
    try:
        return await coro
    except errors.StatusError as exc:
        if exc.code in (401, 403, 404):
            return None
        raise


async def _logs(client: Client, pod: Obj) -> dict[str, dict[str, str]]:
    meta, st = pod["metadata"], pod.get("status") or {}
    path = resource_path("v1", "pods", meta.get("namespace", ""), meta["name"], "log")
    jobs: list[tuple[str, str, Any]] = []
    for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
        name, state = cs.get("name", ""), cs.get("state") or {}
        if "running" in state or "terminated" in state:
            jobs.append((name, "current", client.text(path, {"container": name, "tailLines": TAIL_LINES,
                                                               "limitBytes": LIMIT_BYTES}, timeout=10)))
        if cs.get("restartCount") or "terminated" in (cs.get("lastState") or {}):
            jobs.append((name, "previous", client.text(path, {"container": name, "previous": "true",
                                                                "tailLines": TAIL_LINES, "limitBytes": LIMIT_BYTES},
                                                       timeout=10)))
    out: dict[str, dict[str, str]] = {}
    results = await asyncio.gather(*(j[2] for j in jobs), return_exceptions=True)
    for (name, which, _), res in zip(jobs, results, strict=True):
        if isinstance(res, str):
            out.setdefault(name, {})[which] = res
    return out


async def gather(client: Client, namespace: str, name: str = "", include_healthy: bool = False) -> list[Evidence]:
    """Evidence for one pod (``name``) or for every pod of ``namespace`` ("" = all namespaces) that
    is not Running and Ready (all of them with ``include_healthy``). Raises StatusError for
    the pod itself (NotFound, Forbidden)."""
    if name:
        pods = [await client.get("v1", "pods", name, namespace=namespace)]
    else:
        lst = await client.list("v1", "pods", namespace=namespace)
        pods = sorted(lst.get("items") or [], key=lambda p: (p["metadata"].get("namespace", ""),
                                                             p["metadata"]["name"]))
        if not include_healthy:
            pods = [p for p in pods if not _ok(p, time.time())]
    if not pods:
        return []
    unscheduled = any(not (p.get("spec") or {}).get("nodeName") for p in pods)
    ev_params = {"fieldSelector": f"involvedObject.name={name}"} if name else {}
    events_l, nodes_l, all_pods = await asyncio.gather(
        _maybe(client.list("v1", "events", namespace=namespace, **ev_params)),
        _maybe(client.list("v1", "nodes")),
        _maybe(client.list("v1", "pods")) if unscheduled else asyncio.sleep(0, None))
    events = (events_l or {}).get("items") or []
    nodes = (nodes_l or {}).get("items") if nodes_l is not None else None
    node_pods = None
    if all_pods is not None:
        node_pods = [p for p in all_pods.get("items") or [] if (p.get("spec") or {}).get("nodeName")
                     and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
    out = []
    for pod in pods:
        logs: dict[str, dict[str, str]] = {}
        if not _ok(pod, time.time()):
            with contextlib.suppress(errors.StatusError, TimeoutError, OSError):
                logs = await _logs(client, pod)
        out.append(Evidence(pod=pod, events=events_of(pod, events), nodes=nodes, node_pods=node_pods, logs=logs))
    return out
