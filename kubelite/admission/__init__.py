"""Admission plugins, chained in upstream's order for every ResourceStore.

``build_chain(stores, quota, authorizer, resolver)`` builds one chain that the launcher gives to
every store; plugins filter by kind themselves."""

from __future__ import annotations

from typing import Any

from kubelite.admission.certificates import CertificatesAdmission
from kubelite.admission.limitranger import LimitRanger
from kubelite.admission.namespace_lifecycle import NamespaceLifecycle
from kubelite.admission.noderestriction import NodeRestriction
from kubelite.admission.podsecurity import PodSecurity
from kubelite.admission.priority import PriorityAdmission
from kubelite.admission.rbac_escalation import RBACEscalation
from kubelite.admission.resourcequota import ResourceQuotaAdmission
from kubelite.admission.runtimeclass import RuntimeClassAdmission
from kubelite.admission.serviceaccount import ServiceAccountAdmission
from kubelite.admission.storage import (
    DefaultStorageClass,
    PersistentVolumeClaimResize,
    StorageObjectInUseProtection,
)
from kubelite.apiserver.admission import Chain
from kubelite.apiserver.stores import Stores


def build_chain(stores: Stores, quota: ResourceQuotaAdmission | None = None, authorizer: Any = None,
                resolver: Any = None, informers: dict[str, Any] | None = None) -> Chain:
    """``informers`` (by plural: ``limitranges``, ``priorityclasses``, ``runtimeclasses``), when given and run by
    the caller, let those plugins read from memory instead of listing the store per pod."""
    informers = informers or {}
    chain = Chain()
    chain.add(NamespaceLifecycle(stores.get("", "namespaces")))
    chain.add(LimitRanger(stores, informers.get("limitranges")))
    chain.add(ServiceAccountAdmission(stores))
    chain.add(PriorityAdmission(stores, informers.get("priorityclasses")))
    chain.add(RuntimeClassAdmission(stores, informers.get("runtimeclasses")))
    chain.add(NodeRestriction())
    chain.add(PodSecurity(stores))
    chain.add(DefaultStorageClass(stores, informers.get("storageclasses")))
    chain.add(PersistentVolumeClaimResize(stores))
    chain.add(StorageObjectInUseProtection())
    chain.add(quota or ResourceQuotaAdmission(stores))
    if authorizer is not None and resolver is not None:
        chain.add(RBACEscalation(authorizer, resolver))
    if authorizer is not None:
        chain.add(CertificatesAdmission(authorizer))
    return chain


__all__ = ["build_chain"]
