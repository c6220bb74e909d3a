"""Admission plugins, chained in upstream's order for every ResourceStore.

``install_admission(server, authorizer, resolver)`` builds one chain and gives it to every
store of ``server.stores``; plugins filter by kind themselves."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from kubelite.apiserver.admission import Chain

log = logging.getLogger(__name__)


def _store(server: Any, group: str, plural: str) -> Any:
    for k, s in server.stores.items():
        if k.group == group and k.plural == plural and k.version == "v1":
            return s
    return None


def build_chain(server: Any, authorizer: Any = None, resolver: Any = None) -> Chain:
    from kubelite.admission.namespace_lifecycle import NamespaceLifecycle
    from kubelite.admission.noderestriction import NodeRestriction

    chain = Chain()
    chain.add(NamespaceLifecycle(_store(server, "", "namespaces")))
    optional = [("kubelite.admission.limitranger", "LimitRanger"),
                ("kubelite.admission.serviceaccount", "ServiceAccountAdmission")]
    for module, name in optional:
        try:
            chain.add(getattr(importlib.import_module(module), name)(server))
        except (ImportError, AttributeError) as exc:
            log.warning("admission plugin %s unavailable: %s", name, exc)
    chain.add(NodeRestriction())
    for module, name in [("kubelite.admission.podsecurity", "PodSecurity"),
                         ("kubelite.admission.resourcequota", "ResourceQuotaAdmission")]:
        try:
            chain.add(getattr(importlib.import_module(module), name)(server))
        except (ImportError, AttributeError) as exc:
            log.warning("admission plugin %s unavailable: %s", name, exc)
    if authorizer is not None and resolver is not None:
        from kubelite.admission.rbac_escalation import RBACEscalation

        chain.add(RBACEscalation(authorizer, resolver))
    if authorizer is not None:
        from kubelite.admission.certificates import CertificatesAdmission

        chain.add(CertificatesAdmission(authorizer))
    return chain


def install_admission(server: Any, authorizer: Any = None, resolver: Any = None) -> Chain:
    chain = build_chain(server, authorizer, resolver)
    for store in server.stores.values():
        if hasattr(store, "namespace_check"):
            store.namespace_check = None  # NamespaceLifecycle is now the first plugin of the chain
        store.admission = chain
    return chain


__all__ = ["build_chain", "install_admission"]
