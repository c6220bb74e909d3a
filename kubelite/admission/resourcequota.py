"""ResourceQuota admission (plugin/pkg/admission/resourcequota): a pod that would take a
namespace over a quota's ``spec.hard`` is refused::

    exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kubelite.admission._resources import containers, fmt, pod_usage, qty, terminal
from kubelite.api import errors
from kubelite.apiserver.admission import CREATE, Attributes
from kubelite.apiserver.registry import ListOptions

COMPUTE = ("requests.cpu", "requests.memory", "limits.cpu", "limits.memory", "cpu", "memory")


def _store(server: Any, plural: str) -> Any:
    for k, s in server.stores.items():
        if k.group == "" and k.plural == plural:
            return s
    return None


async def namespace_usage(server: Any, namespace: str) -> dict[str, Decimal]:
    used: dict[str, Decimal] = {}
    pods, _, _, _ = await _store(server, "pods").list(namespace, ListOptions())
    for pod in pods:
        if terminal(pod):
            continue
        for k, v in pod_usage(pod).items():
            used[k] = used.get(k, Decimal(0)) + v
    return used


class ResourceQuotaAdmission:
    def __init__(self, server: Any) -> None:
        self.server = server

    async def admit(self, a: Attributes) -> None:
        return None

    async def validate(self, a: Attributes) -> None:
        if a.operation != CREATE or a.kind.group != "" or a.kind.plural != "pods" or a.subresource or a.obj is None:
            return
        qstore = _store(self.server, "resourcequotas")
        if qstore is None:
            return
        quotas, _, _, _ = await qstore.list(a.namespace, ListOptions())
        if not quotas:
            return
        used = await namespace_usage(self.server, a.namespace)
        requested = pod_usage(a.obj)
        name = a.name or (a.obj.get("metadata") or {}).get("name", "")
        for quota in sorted(quotas, key=lambda q: q["metadata"]["name"]):
            hard = (quota.get("spec") or {}).get("hard") or {}
            qname = quota["metadata"]["name"]
            missing = []
            for res in sorted(hard):
                if res in COMPUTE:
                    key = res if "." in res else f"requests.{res}"
                    kind, r = key.split(".", 1)
                    lacking = [c.get("name", "") for c in containers(a.obj)
                               if r not in ((c.get("resources") or {}).get(kind) or {})]
                    if lacking:
                        missing.append(f"{res} for: {','.join(lacking)}")
            if missing:
                raise errors.forbidden("pods", name, f"failed quota: {qname}: must specify {'; '.join(missing)}")
            over = [res for res in sorted(hard)
                    if res in requested and used.get(res, Decimal(0)) + requested[res] > qty(hard[res])]
            if over:
                req = ",".join(f"{r}={fmt(requested[r], r)}" for r in over)
                use = ",".join(f"{r}={fmt(used.get(r, Decimal(0)), r)}" for r in over)
                lim = ",".join(f"{r}={hard[r]}" for r in over)
                raise errors.forbidden("pods", name, f"exceeded quota: {qname}, requested: {req}, used: {use}, "
                                                     f"limited: {lim}")
