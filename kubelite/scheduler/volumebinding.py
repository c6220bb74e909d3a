"""Claim-to-volume matching, shared by the PV controller and the scheduler's VolumeBinding
plugin (pkg/controller/volume/persistentvolume/util FindMatchingVolume, CheckNodeAffinity;
pkg/scheduler/framework/plugins/volumebinding). Pure functions over plain objects."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from decimal import Decimal
from typing import Any

from kubelite.api import quantity
from kubelite.api.selectors import label_selector_from_object
from kubelite.kinds.storage import claim_class, claim_request, volume_class
from kubelite.scheduler.plugins import node_selector_term_matches

Obj = dict[str, Any]

ANN_BIND_COMPLETED = "pv.kubernetes.io/bind-completed"
ANN_BOUND_BY_CONTROLLER = "pv.kubernetes.io/bound-by-controller"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"

ERR_UNBOUND_IMMEDIATE = "pod has unbound immediate PersistentVolumeClaims"
ERR_NODE_CONFLICT = "node(s) had volume node affinity conflict"
ERR_BIND_CONFLICT = "node(s) didn't find available persistent volumes to bind"


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _size(v: Any) -> Decimal:
    try:
        return quantity.parse_quantity(v) if v is not None else Decimal(0)
    except (ValueError, TypeError, ArithmeticError):
        return Decimal(0)


def volume_capacity(pv: Obj) -> Decimal:
    return _size(_d(_d(pv.get("spec")).get("capacity")).get("storage"))


def volume_node_affinity_ok(pv: Obj, node: Obj) -> bool:
    """CheckNodeAffinity: a PV without node affinity fits every node."""
    required = _d(_d(_d(pv.get("spec")).get("nodeAffinity")).get("required"))
    terms = _l(required.get("nodeSelectorTerms"))
    if not _d(_d(pv.get("spec")).get("nodeAffinity")).get("required"):
        return True
    m = _d(node.get("metadata"))
    labels = {str(k): str(v) for k, v in _d(m.get("labels")).items()}
    return any(node_selector_term_matches(_d(t), labels, m.get("name", "")) for t in terms)


def is_bound_to_claim(pv: Obj, claim: Obj) -> bool:
    """IsVolumeBoundToClaim: the PV's claimRef names the claim (and its uid, once known)."""
    ref = _d(_d(pv.get("spec")).get("claimRef"))
    cm = _d(claim.get("metadata"))
    if not ref or ref.get("name") != cm.get("name") or ref.get("namespace") != cm.get("namespace"):
        return False
    return not ref.get("uid") or ref.get("uid") == cm.get("uid")


def _mode(obj: Obj) -> str:
    return str(_d(obj.get("spec")).get("volumeMode") or "Filesystem")


def access_modes_ok(claim: Obj, pv: Obj) -> bool:
    """CheckAccessModes: the PV offers every mode the claim asks for."""
    have = set(_l(_d(pv.get("spec")).get("accessModes")))
    return all(m in have for m in _l(_d(claim.get("spec")).get("accessModes")))


def find_matching_volume(claim: Obj, volumes: list[Obj], node: Obj | None = None, excluded: set[str] | None = None,
                         delay_binding: bool = False) -> Obj | None:
    """FindMatchingVolume: the volume pre-bound to the claim, else the smallest Available volume
    of the claim's class, size, access modes, volume mode and selector (and the node's topology
    when one is given). A delayed-binding claim without a node matches only a pre-bound volume:
    the scheduler binds the others once it picked a node."""
    request = claim_request(claim)
    want_class = claim_class(claim)
    sel_obj = _d(claim.get("spec")).get("selector")
    selector = label_selector_from_object(sel_obj) if isinstance(sel_obj, dict) else None
    best: Obj | None = None
    best_size = Decimal(0)
    for pv in volumes:
        name = _d(pv.get("metadata")).get("name", "")
        if excluded and name in excluded:
            continue
        size = volume_capacity(pv)
        if size < request:
            continue
        if _mode(pv) != _mode(claim):
            continue
        if _d(pv.get("metadata")).get("deletionTimestamp"):
            continue
        if node is not None and not volume_node_affinity_ok(pv, node):
            continue
        if is_bound_to_claim(pv, claim):
            return pv
        if node is None and delay_binding:
            continue
        if _d(pv.get("spec")).get("claimRef"):
            continue
        if _d(pv.get("status")).get("phase") != "Available":
            continue
        labels = {str(k): str(v) for k, v in _d(_d(pv.get("metadata")).get("labels")).items()}
        if selector is not None and not selector.matches(labels):
            continue
        if volume_class(pv) != want_class:
            continue
        if not access_modes_ok(claim, pv):
            continue
        if best is None or size < best_size:
            best, best_size = pv, size
    return best


__all__ = ["ANN_BIND_COMPLETED", "ANN_BOUND_BY_CONTROLLER", "ANN_PROVISIONED_BY", "ANN_SELECTED_NODE",
           "ANN_STORAGE_PROVISIONER", "ERR_BIND_CONFLICT", "ERR_NODE_CONFLICT", "ERR_UNBOUND_IMMEDIATE",
           "access_modes_ok", "claim_request", "find_matching_volume", "is_bound_to_claim",
           "volume_capacity", "volume_node_affinity_ok"]


# ------------------------------------------------------------------------------ the plugin
ERR_CLAIM_NOT_FOUND = 'persistentvolumeclaim "{}" not found'
ERR_CLAIM_DELETING = 'persistentvolumeclaim "{}" is being deleted'
ERR_PV_NOT_FOUND = 'persistentvolume "{}" not found'
NO_PROVISIONER = "kubernetes.io/no-provisioner"


def is_fully_bound(claim: Obj) -> bool:
    """isPVCFullyBound: the claim names its volume and the binding completed."""
    return bool(_d(claim.get("spec")).get("volumeName")) and \
        ANN_BIND_COMPLETED in _d(_d(claim.get("metadata")).get("annotations"))


def pod_claim_names(pod: Obj) -> list[str]:
    out = []
    m = _d(pod.get("metadata"))
    for v in _l(_d(pod.get("spec")).get("volumes")):
        v = _d(v)
        if _d(v.get("persistentVolumeClaim")).get("claimName"):
            out.append(str(v["persistentVolumeClaim"]["claimName"]))
        elif v.get("ephemeral") is not None:
            out.append(f"{m.get('name', '')}-{v.get('name', '')}")
    return out


class PodVolumes:
    """PreFilter's result for one pod: the volumes of its bound claims and its unbound claims
    of WaitForFirstConsumer classes (those the scheduler binds or has provisioned)."""

    def __init__(self, bound: list[Obj], delayed: list[Obj], volumes: list[Obj], classes: dict[str, Obj]) -> None:
        self.bound = bound
        self.delayed = delayed
        self.volumes = volumes
        self.classes = classes

    def decide(self, node: Obj) -> tuple[str | None, list[tuple[Obj, Obj]], list[Obj]]:
        """Filter for one node: (the reason it does not fit or None, the (claim, volume) pairs
        to bind, the claims to provision there)."""
        name = _d(node.get("metadata")).get("name", "")
        for pv in self.bound:
            if not volume_node_affinity_ok(pv, node):
                return ERR_NODE_CONFLICT, [], []
        binds: list[tuple[Obj, Obj]] = []
        provisions: list[Obj] = []
        chosen: set[str] = set()
        for claim in self.delayed:
            selected = _d(_d(claim.get("metadata")).get("annotations")).get(ANN_SELECTED_NODE)
            if selected and selected != name:
                return ERR_BIND_CONFLICT, [], []
            match = find_matching_volume(claim, self.volumes, node, chosen, delay_binding=True)
            if match is not None:
                chosen.add(_d(match.get("metadata")).get("name", ""))
                binds.append((claim, match))
                continue
            if not self._provisionable(claim, node):
                return ERR_BIND_CONFLICT, [], []
            provisions.append(claim)
        return None, binds, provisions

    def _provisionable(self, claim: Obj, node: Obj) -> bool:
        sc = self.classes.get(claim_class(claim))
        if sc is None or sc.get("provisioner") in (None, "", NO_PROVISIONER):
            return False
        terms = _l(sc.get("allowedTopologies"))
        if not terms:
            return True
        labels = {str(k): str(v) for k, v in _d(_d(node.get("metadata")).get("labels")).items()}
        return any(all(labels.get(str(_d(e).get("key"))) in [str(x) for x in _l(_d(e).get("values"))]
                       for e in _l(_d(t).get("matchLabelExpressions"))) for t in terms)


def pre_filter(pod: Obj, claims: dict[tuple[str, str], Obj], volumes: dict[str, Obj],
               classes: dict[str, Obj]) -> tuple[PodVolumes | None, str]:
    """VolumeBinding PreFilter: (state, "") or (None, the reason no node can fit)."""
    names = pod_claim_names(pod)
    if not names:
        return None, ""
    ns = _d(pod.get("metadata")).get("namespace", "")
    bound: list[Obj] = []
    delayed: list[Obj] = []
    immediate = False
    for n in names:
        claim = claims.get((ns, n))
        if claim is None:
            return None, ERR_CLAIM_NOT_FOUND.format(n)
        if _d(claim.get("metadata")).get("deletionTimestamp"):
            return None, ERR_CLAIM_DELETING.format(n)
        if is_fully_bound(claim):
            pv = volumes.get(str(claim["spec"]["volumeName"]))
            if pv is None:
                return None, ERR_PV_NOT_FOUND.format(claim["spec"]["volumeName"])
            bound.append(pv)
            continue
        sc = classes.get(claim_class(claim))
        if sc is not None and sc.get("volumeBindingMode") == "WaitForFirstConsumer":
            delayed.append(claim)
        else:
            immediate = True
    if immediate:
        return None, ERR_UNBOUND_IMMEDIATE
    return PodVolumes(bound, delayed, list(volumes.values()), classes), ""


ERR_RWOP_CONFLICT = "node has pod using PersistentVolumeClaim with the same name and ReadWriteOncePod access mode"


def read_write_once_pod_conflict(pod: Obj, claims: dict[tuple[str, str], Obj], others: Iterable[Obj],
                                 assumed: Collection[str] = ()) -> bool:
    """VolumeRestrictions: another pod that has not finished, scheduled (or assumed on a node),
    already uses one of the pod's ReadWriteOncePod claims."""
    m = _d(pod.get("metadata"))
    ns = m.get("namespace", "")
    rwop = {n for n in pod_claim_names(pod)
            if "ReadWriteOncePod" in _l(_d(_d(claims.get((ns, n))).get("spec")).get("accessModes"))}
    if not rwop:
        return False
    for other in others:
        om = _d(other.get("metadata"))
        if om.get("uid") == m.get("uid") or om.get("namespace", "") != ns:
            continue
        if _d(other.get("status")).get("phase") in ("Succeeded", "Failed"):
            continue
        if not _d(other.get("spec")).get("nodeName") and om.get("uid") not in assumed:
            continue
        if rwop & set(pod_claim_names(other)):
            return True
    return False
