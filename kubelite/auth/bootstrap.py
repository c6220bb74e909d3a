"""The default ClusterRoles and ClusterRoleBindings (bootstrappolicy/policy.go), written
at every start the way kube-apiserver's RBAC post-start hook reconciles them: missing
objects are created, and objects annotated ``rbac.authorization.kubernetes.io/autoupdate:
"true"`` get missing permissions, labels and subjects added back."""

from __future__ import annotations

import copy
import logging
from typing import Any

from kubelite.api import errors
from kubelite.apiserver.registry import WriteOptions

log = logging.getLogger(__name__)

GROUP = "rbac.authorization.k8s.io"
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
BOOTSTRAP_LABEL = {"kubernetes.io/bootstrapping": "rbac-defaults"}

READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]
READ_WRITE = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
EVENT_WRITE = ["create", "patch", "update"]


def rule(groups: list[str], resources: list[str], verbs: list[str], names: list[str] | None = None) -> dict[str, Any]:
    r: dict[str, Any] = {"apiGroups": groups, "resources": resources, "verbs": verbs}
    if names:
        r["resourceNames"] = names
    return r


def url_rule(urls: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"nonResourceURLs": urls, "verbs": verbs}


def _agg(label: str) -> dict[str, Any]:
    return {"clusterRoleSelectors": [{"matchLabels": {f"rbac.authorization.k8s.io/aggregate-to-{label}": "true"}}]}


AGGREGATE_TO_VIEW = [
    rule([""], ["configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
                "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
                "services/status"], READ),
    rule([""], ["bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
                "replicationcontrollers/status", "resourcequotas", "resourcequotas/status"], READ),
    rule([""], ["namespaces"], READ),
    rule(["discovery.k8s.io"], ["endpointslices"], READ),
    rule(["apps"], ["controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                    "deployments/status", "replicasets", "replicasets/scale", "replicasets/status", "statefulsets",
                    "statefulsets/scale", "statefulsets/status"], READ),
    rule(["autoscaling"], ["horizontalpodautoscalers", "horizontalpodautoscalers/status"], READ),
    rule(["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"], READ),
    rule(["extensions"], ["daemonsets", "daemonsets/status", "deployments", "deployments/scale",
                          "deployments/status", "ingresses", "ingresses/status", "networkpolicies", "replicasets",
                          "replicasets/scale", "replicasets/status", "replicationcontrollers/scale"], READ),
    rule(["policy"], ["poddisruptionbudgets", "poddisruptionbudgets/status"], READ),
    rule(["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"], READ),
]

AGGREGATE_TO_EDIT = [
    rule([""], ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"], READ),
    rule([""], ["serviceaccounts"], ["impersonate"]),
    rule([""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], WRITE),
    rule([""], ["pods/eviction"], ["create"]),
    rule([""], ["configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
                "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy"], WRITE),
    rule([""], ["serviceaccounts/token"], ["create"]),
    rule(["apps"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
                    "replicasets/scale", "statefulsets", "statefulsets/scale"], WRITE),
    rule(["autoscaling"], ["horizontalpodautoscalers"], WRITE),
    rule(["batch"], ["cronjobs", "jobs"], WRITE),
    rule(["extensions"], ["daemonsets", "deployments", "deployments/rollback", "deployments/scale", "ingresses",
                          "networkpolicies", "replicasets", "replicasets/scale", "replicationcontrollers/scale"],
         WRITE),
    rule(["policy"], ["poddisruptionbudgets"], WRITE),
    rule(["networking.k8s.io"], ["ingresses", "networkpolicies"], WRITE),
    rule(["coordination.k8s.io"], ["leases"], READ_WRITE),
]

AGGREGATE_TO_ADMIN = [
    rule(["authorization.k8s.io"], ["localsubjectaccessreviews"], ["create"]),
    rule([GROUP], ["rolebindings", "roles"], READ_WRITE),
]

NODE_RULES = [
    rule(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
    rule(["authorization.k8s.io"], ["localsubjectaccessreviews", "subjectaccessreviews"], ["create"]),
    rule([""], ["services"], READ),
    rule([""], ["nodes"], ["create", "get", "list", "watch"]),
    rule([""], ["nodes/status"], ["patch", "update"]),
    rule([""], ["nodes"], ["patch", "update"]),
    rule([""], ["events"], EVENT_WRITE),
    rule([""], ["pods"], READ),
    rule([""], ["pods"], ["create", "delete"]),
    rule([""], ["pods/status"], ["patch", "update"]),
    rule([""], ["pods/eviction"], ["create"]),
    rule([""], ["configmaps", "secrets"], READ),
    rule([""], ["persistentvolumeclaims", "persistentvolumes"], ["get"]),
    rule([""], ["endpoints"], ["get"]),
    rule(["certificates.k8s.io"], ["certificatesigningrequests"], ["create", "get", "list", "watch"]),
    rule(["coordination.k8s.io"], ["leases"], ["create", "delete", "get", "patch", "update"]),
    rule(["storage.k8s.io"], ["volumeattachments"], ["get"]),
    rule([""], ["serviceaccounts/token"], ["create"]),
    rule([""], ["persistentvolumeclaims/status"], ["get", "patch", "update"]),
    rule(["storage.k8s.io"], ["csidrivers"], READ),
    rule(["storage.k8s.io"], ["csinodes"], ["create", "delete", "get", "patch", "update"]),
    rule(["node.k8s.io"], ["runtimeclasses"], READ),
]

_LEADER = [rule(["", "events.k8s.io"], ["events"], EVENT_WRITE), rule(["coordination.k8s.io"], ["leases"], ["create"])]

CLUSTER_ROLES: dict[str, dict[str, Any]] = {
    "cluster-admin": {"rules": [rule(["*"], ["*"], ["*"]), url_rule(["*"], ["*"])]},
    "admin": {"aggregationRule": _agg("admin")},
    "edit": {"aggregationRule": _agg("edit"), "labels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}},
    "view": {"aggregationRule": _agg("view"), "labels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}},
    "system:aggregate-to-admin": {"rules": AGGREGATE_TO_ADMIN,
                                  "labels": {"rbac.authorization.k8s.io/aggregate-to-admin": "true"}},
    "system:aggregate-to-edit": {"rules": AGGREGATE_TO_EDIT,
                                 "labels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}},
    "system:aggregate-to-view": {"rules": AGGREGATE_TO_VIEW,
                                 "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
    "system:auth-delegator": {"rules": [rule(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
                                        rule(["authorization.k8s.io"], ["subjectaccessreviews"], ["create"])]},
    "system:basic-user": {"rules": [
        rule(["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], ["create"]),
        rule(["authentication.k8s.io"], ["selfsubjectreviews"], ["create"])]},
    "system:discovery": {"rules": [url_rule(["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
                                             "/openapi/*", "/readyz", "/version", "/version/"], ["get"])]},
    "system:public-info-viewer": {"rules": [url_rule(["/healthz", "/livez", "/readyz", "/version", "/version/"],
                                                     ["get"])]},
    "system:monitoring": {"rules": [url_rule(["/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics",
                                              "/metrics/slis", "/readyz", "/readyz/*"], ["get"])]},
    "system:service-account-issuer-discovery": {"rules": [
        url_rule(["/.well-known/openid-configuration", "/openid/v1/jwks"], ["get"])]},
    "system:node": {"rules": NODE_RULES},
    "system:node-bootstrapper": {"rules": [
        rule(["certificates.k8s.io"], ["certificatesigningrequests"], ["create", "get", "list", "watch"])]},
    # certificate signing requests (kubelet TLS bootstrap and rotation) and the signers' approvers
    "system:certificates.k8s.io:certificatesigningrequests:nodeclient": {"rules": [
        rule(["certificates.k8s.io"], ["certificatesigningrequests/nodeclient"], ["create"])]},
    "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient": {"rules": [
        rule(["certificates.k8s.io"], ["certificatesigningrequests/selfnodeclient"], ["create"])]},
    "system:certificates.k8s.io:kube-apiserver-client-approver": {"rules": [
        rule(["certificates.k8s.io"], ["signers"], ["approve"], ["kubernetes.io/kube-apiserver-client"])]},
    "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver": {"rules": [
        rule(["certificates.k8s.io"], ["signers"], ["approve"], ["kubernetes.io/kube-apiserver-client-kubelet"])]},
    "system:certificates.k8s.io:kubelet-serving-approver": {"rules": [
        rule(["certificates.k8s.io"], ["signers"], ["approve"], ["kubernetes.io/kubelet-serving"])]},
    "system:certificates.k8s.io:legacy-unknown-approver": {"rules": [
        rule(["certificates.k8s.io"], ["signers"], ["approve"], ["kubernetes.io/legacy-unknown"])]},
    "system:node-problem-detector": {"rules": [rule([""], ["nodes"], ["get"]), rule([""], ["nodes/status"], ["patch"]),
                                               rule(["", "events.k8s.io"], ["events"], EVENT_WRITE)]},
    "system:node-proxier": {"rules": [rule([""], ["endpoints", "services"], ["list", "watch"]),
                                      rule([""], ["nodes"], READ),
                                      rule(["", "events.k8s.io"], ["events"], EVENT_WRITE),
                                      rule(["discovery.k8s.io"], ["endpointslices"], ["list", "watch"])]},
    "system:kubelet-api-admin": {"rules": [rule([""], ["nodes"], READ), rule([""], ["nodes"], ["proxy"]),
                                           rule([""], ["nodes/log", "nodes/metrics", "nodes/proxy", "nodes/stats"],
                                                ["*"])]},
    "system:kube-dns": {"rules": [rule([""], ["endpoints", "services"], ["list", "watch"])]},
    # k3s's coredns manifest (its ClusterRole system:coredns), plus reading the server's own Node
    # (kubelite's DNS runs beside that node's agent and listens on its pod-network gateway)
    "system:coredns": {"rules": [rule([""], ["endpoints", "services", "pods", "namespaces"], ["list", "watch"]),
                                 rule(["discovery.k8s.io"], ["endpointslices"], ["list", "watch"]),
                                 rule([""], ["nodes"], ["get"])]},
    "system:kube-scheduler": {"rules": _LEADER + [
        rule(["coordination.k8s.io"], ["leases"], ["get", "update"], ["kube-scheduler"]),
        rule([""], ["nodes"], READ),
        rule([""], ["pods"], ["delete", "get", "list", "watch"]),
        rule([""], ["bindings", "pods/binding"], ["create"]),
        rule([""], ["pods/status"], ["patch", "update"]),
        rule([""], ["replicationcontrollers", "services"], READ),
        rule(["apps", "extensions"], ["replicasets"], READ),
        rule(["apps"], ["statefulsets"], READ),
        rule(["policy"], ["poddisruptionbudgets"], READ),
        rule([""], ["persistentvolumeclaims", "persistentvolumes"], READ),
        rule(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
        rule(["authorization.k8s.io"], ["subjectaccessreviews"], ["create"]),
        rule(["storage.k8s.io"], ["csinodes"], READ),
        rule([""], ["namespaces"], READ),
        rule(["storage.k8s.io"], ["csidrivers"], READ),
        rule(["storage.k8s.io"], ["csistoragecapacities"], READ),
    ]},
    "system:kube-controller-manager": {"rules": _LEADER + [
        rule(["coordination.k8s.io"], ["leases"], ["get", "update"], ["kube-controller-manager"]),
        rule([""], ["secrets", "serviceaccounts"], ["create"]),
        rule([""], ["secrets"], ["delete"]),
        rule([""], ["configmaps", "namespaces", "secrets", "serviceaccounts"], ["get"]),
        rule([""], ["secrets", "serviceaccounts"], ["update"]),
        rule(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
        rule(["authorization.k8s.io"], ["subjectaccessreviews"], ["create"]),
        rule(["*"], ["*"], ["list", "watch"]),
        rule([""], ["serviceaccounts/token"], ["create"]),
    ]},
    # metrics-server's manifest: view, edit and admin may read metrics.k8s.io
    "system:aggregated-metrics-reader": {
        "rules": [rule(["metrics.k8s.io"], ["pods", "nodes"], READ)],
        "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true",
                   "rbac.authorization.k8s.io/aggregate-to-edit": "true",
                   "rbac.authorization.k8s.io/aggregate-to-admin": "true"}},
    "system:volume-scheduler": {"rules": [
        rule([""], ["persistentvolumes"], ["get", "list", "patch", "update", "watch"]),
        rule(["storage.k8s.io"], ["storageclasses"], READ),
        rule([""], ["persistentvolumeclaims"], ["get", "list", "patch", "update", "watch"])]},
}


def _user(name: str) -> dict[str, str]:
    return {"apiGroup": GROUP, "kind": "User", "name": name}


def _group(name: str) -> dict[str, str]:
    return {"apiGroup": GROUP, "kind": "Group", "name": name}


CLUSTER_ROLE_BINDINGS: dict[str, list[dict[str, str]]] = {
    "cluster-admin": [_group("system:masters")],
    "system:basic-user": [_group("system:authenticated")],
    "system:discovery": [_group("system:authenticated")],
    "system:public-info-viewer": [_group("system:authenticated"), _group("system:unauthenticated")],
    "system:monitoring": [_group("system:monitoring")],
    "system:service-account-issuer-discovery": [_group("system:serviceaccounts")],
    "system:kube-controller-manager": [_user("system:kube-controller-manager")],
    "system:kube-scheduler": [_user("system:kube-scheduler")],
    "system:volume-scheduler": [_user("system:kube-scheduler")],
    "system:kube-dns": [{"kind": "ServiceAccount", "name": "kube-dns", "namespace": "kube-system"}],
    "system:coredns": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"},
                       _user("system:coredns")],
    "system:node-proxier": [_user("system:kube-proxy")],
    "system:node": [],
    # kubelet TLS bootstrap, with kubeadm's binding names: bootstrap-token users may create CSRs
    # and get node client certificates auto-approved, nodes may renew their own
    "kubeadm:kubelet-bootstrap": [_group("system:bootstrappers")],
    "kubeadm:node-autoapprove-bootstrap": [_group("system:bootstrappers")],
    "kubeadm:node-autoapprove-certificate-rotation": [_group("system:nodes")],
}

# bindings whose ClusterRole is not named like the binding
BINDING_ROLES: dict[str, str] = {
    "kubeadm:kubelet-bootstrap": "system:node-bootstrapper",
    "kubeadm:node-autoapprove-bootstrap": "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
    "kubeadm:node-autoapprove-certificate-rotation":
        "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
}


def _metadata(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": name, "labels": {**BOOTSTRAP_LABEL, **(labels or {})}, "annotations": {AUTOUPDATE: "true"}}


def default_cluster_roles() -> list[dict[str, Any]]:
    out = []
    for name, spec in CLUSTER_ROLES.items():
        obj: dict[str, Any] = {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRole",
                               "metadata": _metadata(name, spec.get("labels"))}
        if "aggregationRule" in spec:
            obj["aggregationRule"] = copy.deepcopy(spec["aggregationRule"])
            obj["rules"] = []
        else:
            obj["rules"] = copy.deepcopy(spec["rules"])
        out.append(obj)
    return out


def default_cluster_role_bindings() -> list[dict[str, Any]]:
    out = []
    for name, subjects in CLUSTER_ROLE_BINDINGS.items():
        obj: dict[str, Any] = {"apiVersion": f"{GROUP}/v1", "kind": "ClusterRoleBinding",
                               "metadata": _metadata(name),
                               "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": BINDING_ROLES.get(name, name)}}
        if subjects:
            obj["subjects"] = copy.deepcopy(subjects)
        out.append(obj)
    return out


async def _reconcile(store: Any, want: dict[str, Any], merge: Any) -> None:
    name = want["metadata"]["name"]
    try:
        cur = await store.get("", name)
    except errors.StatusError as exc:
        if exc.code != 404:
            raise
        try:
            await store.create("", copy.deepcopy(want), WriteOptions(field_manager="kube-apiserver"))
        except errors.StatusError as exc2:
            if exc2.code != 409:
                raise
        return
    if ((cur["metadata"].get("annotations") or {}).get(AUTOUPDATE)) != "true":
        return
    new = merge(copy.deepcopy(cur), want)
    if new != cur:
        await store.update("", name, new, WriteOptions(field_manager="kube-apiserver"))


def _merge_labels(cur: dict[str, Any], want: dict[str, Any]) -> None:
    labels = cur["metadata"].setdefault("labels", {}) or {}
    for k, v in (want["metadata"].get("labels") or {}).items():
        labels.setdefault(k, v)
    cur["metadata"]["labels"] = labels


def _merge_role(cur: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
    _merge_labels(cur, want)
    if "aggregationRule" in want:
        if not cur.get("aggregationRule"):
            cur["aggregationRule"] = want["aggregationRule"]
        return cur
    rules = cur.get("rules") or []
    for r in want.get("rules") or []:
        if r not in rules:
            rules.append(r)
    cur["rules"] = rules
    return cur


def _merge_binding(cur: dict[str, Any], want: dict[str, Any]) -> dict[str, Any]:
    _merge_labels(cur, want)
    subjects = cur.get("subjects") or []
    for s in want.get("subjects") or []:
        if s not in subjects:
            subjects.append(s)
    if subjects:
        cur["subjects"] = subjects
    return cur


async def bootstrap_policy(cluster_roles: Any, cluster_role_bindings: Any) -> None:
    """Create or auto-update the default roles and bindings (ResourceStores of the two kinds)."""
    for role in default_cluster_roles():
        await _reconcile(cluster_roles, role, _merge_role)
    for binding in default_cluster_role_bindings():
        await _reconcile(cluster_role_bindings, binding, _merge_binding)
    log.info("RBAC: default cluster roles and bindings in place")


__all__ = ["CLUSTER_ROLES", "CLUSTER_ROLE_BINDINGS", "NODE_RULES", "bootstrap_policy", "default_cluster_role_bindings",
           "default_cluster_roles"]
