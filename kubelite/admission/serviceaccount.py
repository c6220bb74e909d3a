"""ServiceAccount admission (plugin/pkg/admission/serviceaccount): a pod runs as
``default`` unless it names a service account, and that account must exist. The
``default`` account is made by the namespace controller shortly after its namespace, so
a pod created right after ``kubectl create namespace`` waits for it briefly, as upstream
retries its cache lookup.

Unless ``automountServiceAccountToken: false`` (on the pod, else on the service account),
every container, init containers included, gets the ``kube-api-access-<5 random>`` projected
volume (a bound token, the ``kube-root-ca.crt`` CA and the namespace) read-only at
``/var/run/secrets/kubernetes.io/serviceaccount``, and a pod without imagePullSecrets takes
its service account's."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from kubelite.api import errors
from kubelite.apiserver.admission import CREATE, Attributes
from kubelite.apiserver.stores import Stores
from kubelite.kinds.podutil import DEFAULT_SERVICE_ACCOUNT

MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"
DEFAULT_SA = DEFAULT_SERVICE_ACCOUNT
WAIT_SECONDS = 3.0
SERVICE_ACCOUNT_VOLUME_NAME = "kube-api-access"
DEFAULT_API_TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS = 3607
PROJECTED_VOLUME_DEFAULT_MODE = 0o644  # 420
ROOT_CA_CONFIGMAP = "kube-root-ca.crt"
_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand


def _rand_suffix(n: int = 5) -> str:
    return "".join(secrets.choice(_ALPHANUMS) for _ in range(n))


def token_volume_source() -> dict[str, Any]:
    """TokenVolumeSource(): the projection every automounting pod gets."""
    return {"defaultMode": PROJECTED_VOLUME_DEFAULT_MODE, "sources": [
        {"serviceAccountToken": {"expirationSeconds": WARN_ONLY_BOUND_TOKEN_EXPIRATION_SECONDS, "path": "token"}},
        {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}


def should_automount(sa: dict[str, Any] | None, pod: dict[str, Any]) -> bool:
    spec = pod.get("spec") or {}
    if spec.get("automountServiceAccountToken") is not None:
        return bool(spec["automountServiceAccountToken"])
    if sa is not None and sa.get("automountServiceAccountToken") is not None:
        return bool(sa["automountServiceAccountToken"])
    return True


def mount_service_account_token(pod: dict[str, Any]) -> None:
    """mountServiceAccountToken: reuse a ``kube-api-access-*`` volume the pod already has,
    mount it into every container without a mount at the default path, and add the volume
    when some container needed it."""
    spec = pod.setdefault("spec", {})
    volumes = spec.get("volumes") or []
    token_volume = ""
    for v in volumes:
        if isinstance(v, dict) and str(v.get("name", "")).startswith(SERVICE_ACCOUNT_VOLUME_NAME + "-"):
            token_volume = v["name"]
            break
    has_volume = bool(token_volume)
    if not token_volume:
        token_volume = f"{SERVICE_ACCOUNT_VOLUME_NAME}-{_rand_suffix()}"
    needs_volume = False
    for key in ("initContainers", "containers"):
        for c in spec.get(key) or []:
            if not isinstance(c, dict):
                continue
            mounts = c.get("volumeMounts") or []
            if any(isinstance(m, dict) and m.get("mountPath") == DEFAULT_API_TOKEN_MOUNT_PATH for m in mounts):
                continue
            c["volumeMounts"] = [*mounts, {"name": token_volume, "readOnly": True,
                                           "mountPath": DEFAULT_API_TOKEN_MOUNT_PATH}]
            needs_volume = True
    if not has_volume and needs_volume:
        spec["volumes"] = [*volumes, {"name": token_volume, "projected": token_volume_source()}]


class ServiceAccountAdmission:
    def __init__(self, stores: Stores) -> None:
        self.stores = stores

    def _sa_store(self) -> Any:
        return self.stores.find("", "serviceaccounts")

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
        sa = await self._lookup(a, pod, spec["serviceAccountName"])
        if should_automount(sa, pod):
            mount_service_account_token(pod)
        if sa is not None and not spec.get("imagePullSecrets") and sa.get("imagePullSecrets"):
            spec["imagePullSecrets"] = [{"name": (s or {}).get("name", "")} for s in sa["imagePullSecrets"]]

    async def validate(self, a: Attributes) -> None:
        if a.operation != CREATE or a.kind.group != "" or a.kind.plural != "pods" or a.subresource or a.obj is None:
            return
        pod = a.obj
        if MIRROR_POD_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {}):
            return
        name = (pod.get("spec") or {}).get("serviceAccountName") or ""
        await self._lookup(a, pod, name)

    async def _lookup(self, a: Attributes, pod: dict[str, Any], name: str) -> dict[str, Any] | None:
        """The service account, waiting briefly for ``default``; 403 as upstream when missing."""
        store = self._sa_store()
        if not name or store is None:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (WAIT_SECONDS if name == DEFAULT_SA else 0.0)
        while True:
            try:
                return await store.get(a.namespace, name)
            except errors.StatusError as exc:
                if exc.code != 404:
                    raise
            if loop.time() >= deadline:
                break
            await asyncio.sleep(0.1)
        pod_name = (pod.get("metadata") or {}).get("name", "")
        raise errors.forbidden("pods", pod_name, f"error looking up service account {a.namespace}/{name}: "
                                                 f'serviceaccount "{name}" not found')
