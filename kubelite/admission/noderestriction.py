"""NodeRestriction (plugin/pkg/admission/noderestriction): a node may create only mirror
pods bound to itself, delete only its own pods, update only its own pods' status, and
modify only its own Node and node Lease."""

from __future__ import annotations

from typing import Any

from kubelite.api import errors
from kubelite.apiserver.admission import CREATE, DELETE, UPDATE, Attributes
from kubelite.auth.node import NODE_LEASE_NAMESPACE, node_identity, pod_references

MIRROR_POD_ANNOTATION = "kubernetes.io/config.mirror"


def _forbidden(a: Attributes, msg: str) -> errors.StatusError:
    name = a.name or ((a.obj or {}).get("metadata") or {}).get("name", "")
    return errors.forbidden(a.kind.plural, name, msg, a.kind.group)


def _spec(obj: Any) -> dict[str, Any]:
    s = (obj or {}).get("spec")
    return s if isinstance(s, dict) else {}


class NodeRestriction:
    async def admit(self, a: Attributes) -> None:
        return None

    async def validate(self, a: Attributes) -> None:
        node, is_node = node_identity(a.user)
        if not is_node:
            return
        if not node:
            raise _forbidden(a, f'could not determine node from user "{a.user.name}"')
        gr = (a.kind.group, a.kind.plural)
        if gr == ("", "pods"):
            if a.subresource == "":
                self._pod(node, a)
            elif a.subresource == "status":
                self._pod_status(node, a)
        elif gr == ("", "nodes"):
            self._node(node, a)
        elif gr == ("coordination.k8s.io", "leases"):
            self._lease(node, a)

    def _pod(self, node: str, a: Attributes) -> None:
        if a.operation == CREATE:
            pod = a.obj or {}
            annotations = (pod.get("metadata") or {}).get("annotations") or {}
            if MIRROR_POD_ANNOTATION not in annotations:
                raise _forbidden(a, f'pod does not have "{MIRROR_POD_ANNOTATION}" annotation, node "{node}" can only '
                                    f'create mirror pods')
            spec = _spec(pod)
            if spec.get("nodeName") != node:
                raise _forbidden(a, f'node "{node}" can only create pods with spec.nodeName set to itself')
            if len((pod.get("metadata") or {}).get("ownerReferences") or []) > 1:
                raise _forbidden(a, f'node "{node}" can only create pods with a single owner reference set to itself')
            if spec.get("serviceAccountName"):
                raise _forbidden(a, f'node "{node}" can not create pods that reference a service account')
            refs = {r[0] for r in pod_references(pod)}
            if "secret" in refs:
                raise _forbidden(a, f'node "{node}" can not create pods that reference secrets')
            if "configmap" in refs:
                raise _forbidden(a, f'node "{node}" can not create pods that reference configmaps')
            if "persistentvolumeclaim" in refs:
                raise _forbidden(a, f'node "{node}" can not create pods that reference persistentvolumeclaims')
            return
        if a.operation == DELETE:
            if _spec(a.old).get("nodeName") != node:
                raise _forbidden(a, f'node "{node}" can only delete pods with spec.nodeName set to itself')
            return
        raise _forbidden(a, f'unexpected operation "{a.operation}", node "{node}" can only create and delete '
                            f'mirror pods')

    def _pod_status(self, node: str, a: Attributes) -> None:
        if a.operation != UPDATE:
            raise _forbidden(a, f'unexpected operation "{a.operation}"')
        if _spec(a.old).get("nodeName") != node:
            raise _forbidden(a, f'node "{node}" can only update pod status for pods with spec.nodeName set to itself')
        old_labels = ((a.old or {}).get("metadata") or {}).get("labels") or {}
        new_labels = ((a.obj or {}).get("metadata") or {}).get("labels") or {}
        if old_labels != new_labels:
            raise _forbidden(a, f'node "{node}" cannot update labels through pod status')

    def _node(self, node: str, a: Attributes) -> None:
        requested = a.name or ((a.obj or {}).get("metadata") or {}).get("name", "")
        if requested != node:
            raise _forbidden(a, f'node "{node}" is not allowed to modify node "{requested}"')
        if a.operation == CREATE and _spec(a.obj).get("configSource") is not None:
            raise _forbidden(a, f'node "{node}" is not allowed to create pods with a non-nil configSource')
        if a.operation == UPDATE and _spec(a.obj).get("configSource") != _spec(a.old).get("configSource"):
            raise _forbidden(a, f'node "{node}" is not allowed to update configSource to a new non-nil configSource')

    def _lease(self, node: str, a: Attributes) -> None:
        if a.namespace != NODE_LEASE_NAMESPACE:
            raise _forbidden(a, f'can only access leases in the "{NODE_LEASE_NAMESPACE}" system namespace')
        name = ((a.obj or {}).get("metadata") or {}).get("name", "") if a.operation == CREATE else a.name
        if name != node:
            raise _forbidden(a, "can only access node lease with the same name as the requesting node")
