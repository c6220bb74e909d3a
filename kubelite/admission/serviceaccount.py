"""ServiceAccount admission (plugin/pkg/admission/serviceaccount): a pod runs as
``default`` unless it names a service account, and that account must exist. The
``default`` account is made by the namespace controller shortly after its namespace, so
a pod created right after ``kubectl create namespace`` waits for it briefly, as upstream
retries its cache lookup."""

from __future__ import annotations

import asyncio
from typing import Any

from kubelite.api import errors
from kubelite.apiserver.admission import CREATE, Attributes

MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
DEFAULT_SA = "default"
WAIT_SECONDS = 3.0


class ServiceAccountAdmission:
    def __init__(self, server: Any) -> None:
        self.server = server

    def _sa_store(self) -> Any:
        for k, s in self.server.stores.items():
            if k.group == "" and k.plural == "serviceaccounts":
                return s
        return None

    async def admit(self, a: Attributes) -> None:
        if a.operation != CREATE or a.kind.group != "" or a.kind.plural != "pods" or a.subresource or a.obj is None:
            return
        pod = a.obj
        if MIRROR_POD_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {}):
            return
        spec = pod.setdefault("spec", {})
        if not isinstance(spec, dict):
            return
        if not spec.get("serviceAccountName"):
            spec["serviceAccountName"] = spec.get("serviceAccount") or DEFAULT_SA
        spec["serviceAccount"] = spec["serviceAccountName"]

    async def validate(self, a: Attributes) -> None:
        if a.operation != CREATE or a.kind.group != "" or a.kind.plural != "pods" or a.subresource or a.obj is None:
            return
        pod = a.obj
        if MIRROR_POD_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {}):
            return
        name = (pod.get("spec") or {}).get("serviceAccountName") or ""
        store = self._sa_store()
        if not name or store is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (WAIT_SECONDS if name == DEFAULT_SA else 0.0)
        while True:
            try:
                await store.get(a.namespace, name)
                return
            except errors.StatusError as exc:
                if exc.code != 404:
                    raise
            if loop.time() >= deadline:
                break
            await asyncio.sleep(0.1)
        pod_name = (pod.get("metadata") or {}).get("name", "")
        raise errors.forbidden("pods", pod_name, f"error looking up service account {a.namespace}/{name}: "
                                                 f'serviceaccount "{name}" not found')
