"""The Node authorizer (plugin/pkg/auth/authorizer/node): a kubelet's credential
(user ``system:node:<name>``, group ``system:nodes``) may read the pods bound to its
node and the secrets, configmaps, PVCs and service accounts those pods reference, its
own Lease, and whatever the static ``system:node`` rules grant.

The graph is a per-node index of what its pods reference, kept by a pods informer."""

from __future__ import annotations

from collections import Counter
from typing import Any

from kubelite.apiserver.authorizer import ALLOW, NO_OPINION, Attributes, Rules
from kubelite.auth.bootstrap import NODE_RULES
from kubelite.auth.rbac import rules_allow

NODES_GROUP = "system:nodes"
NODE_USER_PREFIX = "system:node:"
NODE_LEASE_NAMESPACE = "kube-node-lease"

Ref = tuple[str, str, str]  # (type, namespace, name)


def node_identity(user: Any) -> tuple[str, bool]:
    """nodeidentifier: (node name, is a node). A node user outside system:nodes is not a node."""
    if user is None:
        return "", False
    name = getattr(user, "name", "")
    if not name.startswith(NODE_USER_PREFIX):
        return "", False
    if NODES_GROUP not in (getattr(user, "groups", ()) or ()):
        return "", False
    return name[len(NODE_USER_PREFIX):], True


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def pod_references(pod: dict[str, Any]) -> set[Ref]:
    """Everything a pod makes its node able to read (graph_populator's edges)."""
    meta = _d(pod.get("metadata"))
    ns = meta.get("namespace", "")
    spec = _d(pod.get("spec"))
    refs: set[Ref] = {("pod", ns, meta.get("name", ""))}
    sa = spec.get("serviceAccountName") or spec.get("serviceAccount")
    if sa:
        refs.add(("serviceaccount", ns, sa))
    for s in _l(spec.get("imagePullSecrets")):
        if _d(s).get("name"):
            refs.add(("secret", ns, s["name"]))
    containers = _l(spec.get("initContainers")) + _l(spec.get("containers")) + _l(spec.get("ephemeralContainers"))
    for c in containers:
        c = _d(c)
        for ef in _l(c.get("envFrom")):
            ef = _d(ef)
            if _d(ef.get("secretRef")).get("name"):
                refs.add(("secret", ns, ef["secretRef"]["name"]))
            if _d(ef.get("configMapRef")).get("name"):
                refs.add(("configmap", ns, ef["configMapRef"]["name"]))
        for e in _l(c.get("env")):
            vf = _d(_d(e).get("valueFrom"))
            if _d(vf.get("secretKeyRef")).get("name"):
                refs.add(("secret", ns, vf["secretKeyRef"]["name"]))
            if _d(vf.get("configMapKeyRef")).get("name"):
                refs.add(("configmap", ns, vf["configMapKeyRef"]["name"]))
    for v in _l(spec.get("volumes")):
        v = _d(v)
        if _d(v.get("secret")).get("secretName"):
            refs.add(("secret", ns, v["secret"]["secretName"]))
        if _d(v.get("configMap")).get("name"):
            refs.add(("configmap", ns, v["configMap"]["name"]))
        if _d(v.get("persistentVolumeClaim")).get("claimName"):
            refs.add(("persistentvolumeclaim", ns, v["persistentVolumeClaim"]["claimName"]))
        if v.get("ephemeral") is not None and v.get("name"):
            refs.add(("persistentvolumeclaim", ns, f"{meta.get('name', '')}-{v['name']}"))
        for src in _l(_d(v.get("projected")).get("sources")):
            src = _d(src)
            if _d(src.get("secret")).get("name"):
                refs.add(("secret", ns, src["secret"]["name"]))
            if _d(src.get("configMap")).get("name"):
                refs.add(("configmap", ns, src["configMap"]["name"]))
        for key in ("azureFile", "cephfs", "cinder", "flexVolume", "iscsi", "rbd", "scaleIO", "storageos", "csi"):
            ref = _d(_d(v.get(key)).get("secretRef")).get("name") or _d(v.get(key)).get("secretName")
            if ref:
                refs.add(("secret", ns, ref))
    return refs


class NodeGraph:
    """node name -> Counter of references, fed by a pods informer's change handler."""

    def __init__(self) -> None:
        self.by_node: dict[str, Counter[Ref]] = {}
        self._pod_refs: dict[tuple[str, str], tuple[str, set[Ref]]] = {}

    def on_pod(self, etype: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        obj = new or old
        if obj is None:
            return
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        prev = self._pod_refs.pop(key, None)
        if prev is not None:
            node, refs = prev
            c = self.by_node.get(node)
            if c is not None:
                c.subtract(refs)
                for r in refs:
                    if c[r] <= 0:
                        del c[r]
        if new is None:
            return
        node = _d(new.get("spec")).get("nodeName") or ""
        if not node:
            return
        refs = pod_references(new)
        self._pod_refs[key] = (node, refs)
        self.by_node.setdefault(node, Counter()).update(refs)

    def has_path(self, node: str, vtype: str, namespace: str, name: str) -> bool:
        return self.by_node.get(node, Counter()).get((vtype, namespace, name), 0) > 0


def _field_requires(selector: str, field: str) -> str:
    for term in selector.split(","):
        key, sep, value = term.partition("==") if "==" in term else term.partition("=")
        if sep and "!" not in key and key.strip() == field:
            return value.strip()
    return ""


class NodeAuthorizer:
    def __init__(self, graph: NodeGraph, pods_informer: Any) -> None:
        self.graph = graph
        self.pods = pods_informer

    async def rules_for(self, user: Any, namespace: str) -> Rules:
        _, is_node = node_identity(user)
        if not is_node:
            return Rules()
        return Rules([r for r in NODE_RULES], [], incomplete=True)

    async def authorize(self, a: Attributes) -> tuple[str, str]:
        node, is_node = node_identity(a.user)
        if not is_node:
            return NO_OPINION, ""
        if not node:
            return NO_OPINION, f'unknown node for user "{a.user.name}"'
        if a.resource_request:
            gr = (a.api_group, a.resource)
            if gr == ("", "secrets"):
                return await self._read_namespaced(node, "secret", a)
            if gr == ("", "configmaps"):
                return await self._read_namespaced(node, "configmap", a)
            if gr == ("", "persistentvolumeclaims"):
                if a.subresource == "status":
                    if a.verb not in ("update", "patch"):
                        return NO_OPINION, "can only get/update/patch this type"
                    return await self._related(node, "persistentvolumeclaim", a)
                return await self._get(node, "persistentvolumeclaim", a)
            if gr == ("", "serviceaccounts"):
                if a.verb != "create" or not a.name:
                    return NO_OPINION, "can only create tokens for individual service accounts"
                if a.subresource != "token":
                    return NO_OPINION, "can only create token subresource of serviceaccount"
                return await self._related(node, "serviceaccount", a)
            if gr == ("coordination.k8s.io", "leases"):
                return self._lease(node, a)
            if gr == ("", "pods") and not a.subresource and a.verb in ("get", "list", "watch"):
                return await self._pod_read(node, a)
        if rules_allow(a, NODE_RULES):
            return ALLOW, ""
        return NO_OPINION, ""

    async def _read_namespaced(self, node: str, vtype: str, a: Attributes) -> tuple[str, str]:
        if a.verb not in ("get", "list", "watch"):
            return NO_OPINION, "can only read resources of this type"
        if a.subresource:
            return NO_OPINION, "cannot read subresource"
        if not a.namespace:
            return NO_OPINION, "can only read namespaced object of this type"
        return await self._related(node, vtype, a)

    async def _get(self, node: str, vtype: str, a: Attributes) -> tuple[str, str]:
        if a.verb != "get":
            return NO_OPINION, "can only get individual resources of this type"
        if a.subresource:
            return NO_OPINION, "cannot get subresource"
        return await self._related(node, vtype, a)

    async def _related(self, node: str, vtype: str, a: Attributes) -> tuple[str, str]:
        if not a.name:
            return NO_OPINION, "No Object name found"
        await self.pods.wait_synced()
        if not self.graph.has_path(node, vtype, a.namespace, a.name):
            return NO_OPINION, f"no relationship found between node '{node}' and this object"
        return ALLOW, ""

    async def _pod_read(self, node: str, a: Attributes) -> tuple[str, str]:
        if a.verb == "get":
            return await self._related(node, "pod", a)
        if _field_requires(a.field_selector, "spec.nodeName") == node:
            return ALLOW, ""
        if a.name:
            return await self._related(node, "pod", a)
        return NO_OPINION, "can only list/watch pods with spec.nodeName field selector"

    def _lease(self, node: str, a: Attributes) -> tuple[str, str]:
        if a.verb not in ("get", "create", "update", "patch", "delete"):
            return NO_OPINION, "can only get, create, update, patch, or delete a node lease"
        if a.namespace != NODE_LEASE_NAMESPACE:
            return NO_OPINION, f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace'
        if a.verb != "create" and a.name != node:
            return NO_OPINION, "can only access node lease with the same name as the requesting node"
        return ALLOW, ""


__all__ = ["NodeAuthorizer", "NodeGraph", "node_identity", "pod_references"]
