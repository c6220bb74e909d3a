"""The set of served kinds, with lookups by resource and by kind."""

from __future__ import annotations

from kubelite.kinds.base import Kind


class Registry:
    """An ordered collection of :class:`Kind`; the order is discovery's (core kinds first)."""

    def __init__(self, kinds: list[Kind] | None = None) -> None:
        self._kinds: list[Kind] = []
        self._by_resource: dict[tuple[str, str, str], Kind] = {}
        self._by_kind: dict[tuple[str, str, str], Kind] = {}
        for k in kinds or ():
            self.add(k)

    def add(self, kind: Kind) -> None:
        rkey = (kind.group, kind.version, kind.plural)
        if rkey in self._by_resource:
            raise ValueError(f"duplicate resource {kind.plural} in {kind.api_version}")
        self._kinds.append(kind)
        self._by_resource[rkey] = kind
        self._by_kind.setdefault((kind.group, kind.version, kind.kind), kind)

    def by_resource(self, group: str, version: str, plural: str) -> Kind | None:
        return self._by_resource.get((group, version, plural))

    def by_kind(self, group: str, version: str, kind: str) -> Kind | None:
        return self._by_kind.get((group, version, kind))

    def by_api_version(self, api_version: str, kind: str) -> Kind | None:
        """Lookup by an object's ``apiVersion`` ("v1", "coordination.k8s.io/v1") and ``kind``."""
        group, _, version = api_version.rpartition("/")
        return self.by_kind(group, version, kind)

    def all(self) -> list[Kind]:
        return list(self._kinds)

    def groups(self) -> dict[str, list[str]]:
        """Group name ("" for core) -> its versions, in registration order."""
        out: dict[str, list[str]] = {}
        for k in self._kinds:
            versions = out.setdefault(k.group, [])
            if k.version not in versions:
                versions.append(k.version)
        return out

    def resources(self, group: str, version: str) -> list[Kind]:
        return [k for k in self._kinds if k.group == group and k.version == version]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)


def default_registry() -> Registry:
    """Every kind kubelite serves, core/v1 first (discovery's order). Adding a kind: its module,
    and one line here."""
    from kubelite.kinds import (
        apps,
        authorization,
        batch,
        certificates,
        configmaps,
        daemonsets,
        endpoints,
        events,
        leases,
        limitrange,
        metrics,
        namespaces,
        nodes,
        pods,
        policy,
        priorityclasses,
        rbac,
        replicationcontrollers,
        resourcequota,
        runtimeclasses,
        secrets,
        serviceaccounts,
        services,
        statefulsets,
        storage,
    )

    return Registry([
        namespaces.NAMESPACE,
        nodes.NODE,
        pods.POD,
        services.SERVICE,
        endpoints.ENDPOINTS,
        replicationcontrollers.REPLICATIONCONTROLLER,
        configmaps.CONFIGMAP,
        storage.PERSISTENTVOLUMECLAIM,
        storage.PERSISTENTVOLUME,
        secrets.SECRET,
        serviceaccounts.SERVICEACCOUNT,
        events.EVENT,
        leases.LEASE,
        events.EVENT_V1,
        limitrange.LIMITRANGE,
        resourcequota.RESOURCEQUOTA,
        rbac.CLUSTERROLEBINDING,
        rbac.CLUSTERROLE,
        rbac.ROLEBINDING,
        rbac.ROLE,
        authorization.LOCALSUBJECTACCESSREVIEW,
        authorization.SELFSUBJECTACCESSREVIEW,
        authorization.SELFSUBJECTRULESREVIEW,
        authorization.SUBJECTACCESSREVIEW,
        authorization.SELFSUBJECTREVIEW,
        authorization.TOKENREVIEW,
        certificates.CSR,
        priorityclasses.PRIORITYCLASS,
        runtimeclasses.RUNTIMECLASS,
        apps.DEPLOYMENT,
        apps.REPLICASET,
        batch.JOB,
        batch.CRONJOB,
        statefulsets.STATEFULSET,
        daemonsets.DAEMONSET,
        daemonsets.CONTROLLERREVISION,
        policy.PODDISRUPTIONBUDGET,
        endpoints.ENDPOINTSLICE,
        storage.STORAGECLASS,
        metrics.NODEMETRICS,
        metrics.PODMETRICS,
    ])
