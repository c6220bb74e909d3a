"""ResourceQuota admission (plugin/pkg/admission/resourcequota): a create that would take a
namespace over a quota's ``spec.hard`` is refused::

    exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2

As upstream, admission charges the quota: it adds the object's usage to ``status.used`` with a
compare-and-swap on the quota's resourceVersion before the object is admitted, so concurrent
creates cannot together exceed it (the quota controller later recomputes ``status.used`` from
what exists, returning what deleted or finished objects and refused requests held). Within
this server the check-and-charge of one namespace is serialised, as upstream's evaluator
batches a namespace's admissions; across servers the CAS decides. A ``pods/resize`` update is
charged what it adds (the pod evaluator handles create and resize; a decrease is not checked).
"""

from __future__ import annotations

import asyncio
from typing import Any

from kubelite.admission import quota
from kubelite.api import errors
from kubelite.apiserver.admission import CREATE, UPDATE, Attributes
from kubelite.apiserver.registry import ListOptions, WriteOptions
from kubelite.apiserver.stores import Stores

# ResourceQuota compute resources a pod must name in every container once a quota limits them
COMPUTE = ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory", "cpu", "memory")
_CONFLICT_RETRIES = 8
FIELD_MANAGER = "kube-apiserver"


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod.get("spec") or {}
    return [c for c in (spec.get("containers") or []) + (spec.get("initContainers") or []) if isinstance(c, dict)]


def _missing_compute(hard: dict[str, Any], pod: dict[str, Any]) -> list[str]:
    missing = []
    for res in sorted(hard):
        if res not in COMPUTE:
            continue
        key = res if "." in res else f"requests.{res}"
        kind, r = key.split(".", 1)
        lacking = [c.get("name", "") for c in _containers(pod)
                   if r not in ((c.get("resources") or {}).get(kind) or {})]
        if lacking:
            missing.append(f"{res} for: {','.join(lacking)}")
    return missing


class ResourceQuotaAdmission:
    def __init__(self, stores: Stores) -> None:
        self.stores = stores
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, namespace: str) -> asyncio.Lock:
        """Held while a namespace's quotas are checked and charged (the quota controller takes it
        too while it recomputes usage, so a recount never drops a charge in flight)."""
        return self._locks.setdefault(namespace, asyncio.Lock())

    async def admit(self, a: Attributes) -> None:
        return None

    async def validate(self, a: Attributes) -> None:
        resize = (a.operation == UPDATE and a.subresource == "resize" and a.kind.group == ""
                  and a.kind.plural == "pods" and a.old is not None)
        if not resize and (a.operation != CREATE or a.subresource) or a.obj is None or not a.kind.namespaced:
            return
        qstore = self.stores.find("", "resourcequotas")
        if qstore is None:
            return
        quotas, _, _, _ = await qstore.list(a.namespace, ListOptions())
        if not quotas:  # nothing to charge: no usage to compute, no lock to wait for
            return
        async with self.lock(a.namespace):
            for _ in range(_CONFLICT_RETRIES):
                quotas, _, _, _ = await qstore.list(a.namespace, ListOptions())  # as of holding the lock
                charges = self._check(a, quotas)
                if not charges or a.dry_run:
                    return
                try:
                    for q in charges:
                        await qstore.update(a.namespace, q["metadata"]["name"], q,
                                            WriteOptions(field_manager=FIELD_MANAGER), "status")
                    return
                except errors.StatusError as exc:
                    if exc.code != 409:
                        raise
            raise errors.StatusError(409, "Conflict", "Operation cannot be fulfilled on resourcequotas: the quotas "
                                     "of the namespace changed too often; please try again",
                                     {"kind": "resourcequotas", "retryAfterSeconds": 1})

    def _check(self, a: Attributes, quotas: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The quotas to charge, with their new status.used; raises when one would be exceeded."""
        assert a.obj is not None
        requested = quota.usage(a.kind, a.obj)
        if a.operation == UPDATE and a.old is not None:
            # an update (pods/resize) is charged what it adds (SubtractWithNonNegativeResult)
            before = quota.usage(a.kind, a.old)
            requested = {r: q - before.get(r, 0) for r, q in requested.items() if q - before.get(r, 0) > 0}
            if not requested:
                return []
        name = a.name or (a.obj.get("metadata") or {}).get("name", "")
        resource = a.kind.plural
        is_pod = a.kind.group == "" and a.kind.plural == "pods"
        out = []
        for q in sorted(quotas, key=lambda q: q["metadata"]["name"]):
            hard = (q.get("spec") or {}).get("hard") or {}
            qname = q["metadata"]["name"]
            if is_pod:
                missing = _missing_compute(hard, a.obj)
                if missing:
                    raise errors.forbidden(resource, name, f"failed quota: {qname}: must specify {'; '.join(missing)}",
                                           a.kind.group)
            interesting = sorted(r for r in hard if r in requested)
            if not interesting:
                continue
            status = q.get("status") or {}
            shard, used = status.get("hard") or {}, status.get("used")
            unknown = [r for r in interesting if r not in shard or not isinstance(used, dict) or r not in used]
            if unknown:
                raise errors.forbidden(resource, name, f"status unknown for quota: {qname}, resources: "
                                                       f"{','.join(unknown)}", a.kind.group)
            assert isinstance(used, dict)
            over = [r for r in interesting if quota.qty(used[r]) + requested[r] > quota.qty(hard[r])]
            if over:
                req = ",".join(f"{r}={quota.fmt(requested[r], r)}" for r in over)
                use = ",".join(f"{r}={quota.fmt(quota.qty(used[r]), r)}" for r in over)
                lim = ",".join(f"{r}={hard[r]}" for r in over)
                raise errors.forbidden(resource, name, f"exceeded quota: {qname}, requested: {req}, used: {use}, "
                                                       f"limited: {lim}", a.kind.group)
            new_used = dict(used)
            for r in interesting:
                new_used[r] = quota.fmt(quota.qty(used[r]) + requested[r], r)
            out.append({**q, "status": {**status, "used": new_used}})
        return out


__all__ = ["COMPUTE", "ResourceQuotaAdmission"]
