"""What a kind contributes to the generic machinery (see STYLE.md: a strategy per kind).

A kind module declares one :class:`Kind` with a :class:`Strategy`. The API server,
discovery, OpenAPI and Table printing are generated from these declarations and know
nothing about any particular kind.

Objects are plain dicts (decoded JSON). Hooks mutate in place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from kubelite.api.field import FieldError

if TYPE_CHECKING:
    from kubelite.apiserver.rest import RESTContext

Obj = dict[str, Any]

# A subresource's HTTP handler: (api handler, request, target) -> response. Typed loosely here so
# that kinds/ does not import the HTTP layer; kubelite.apiserver.rest has the precise types.
SubresourceHandler = Callable[[Any, Any, Any], Awaitable[Any]]
RESTFactory = Callable[["RESTContext"], SubresourceHandler]

# The authenticated user (kubelite.apiserver.auth.UserInfo; None for in-process writers) while
# the registry runs Strategy.prepare_for_create, for kinds that record their requestor
# (CertificateSigningRequest spec.username/groups/uid, like upstream's genericapirequest.UserFrom).
REQUESTING_USER: ContextVar[Any] = ContextVar("kubelite_requesting_user", default=None)


@dataclass(frozen=True)
class Column:
    """A meta.k8s.io/v1 TableColumnDefinition."""

    name: str
    type: str = "string"  # string | integer | number | boolean | date
    format: str = ""  # e.g. "name"
    description: str = ""
    priority: int = 0  # 0 = always shown, 1 = only with -o wide


class Strategy:
    """Per-kind hooks, called by the generic registry. Defaults suit a simple kind."""

    # --- create ---------------------------------------------------------------
    def default(self, obj: Obj) -> None:
        """Fill in defaults, as the apiserver's defaulting does on every decoded write."""

    def prepare_for_create(self, obj: Obj) -> None:
        """Reset what a client may not set on create (e.g. status for kinds with a status subresource)."""

    def validate(self, obj: Obj) -> list[FieldError]:
        """Validate a new object. Object metadata (name, labels, …) is validated generically."""
        return []

    def warnings_on_create(self, obj: Obj) -> list[str]:
        return []

    # --- update ---------------------------------------------------------------
    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        """Main-resource update: e.g. keep old status when the kind has a status subresource."""

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return self.validate(new)

    def warnings_on_update(self, new: Obj, old: Obj) -> list[str]:
        return []

    allow_create_on_update: bool = False
    allow_unconditional_update: bool = True
    # metadata.generation is set on create and bumped when anything but metadata/status changes
    tracks_generation: bool = False
    # DELETE answers with the object (pods, namespaces) rather than a Success Status
    return_deleted_object: bool = False
    # DefaultGarbageCollectionPolicy: what a DELETE without propagationPolicy does to dependents
    # ("Background", or "Orphan" as batch/v1 Jobs and CronJobs keep for compatibility)
    default_gc_policy: str = "Background"

    # --- status subresource ---------------------------------------------------
    def status_prepare_for_update(self, new: Obj, old: Obj) -> None:
        """Status update: everything but status comes from old."""
        for k in list(new.keys()):
            if k not in ("status", "metadata", "apiVersion", "kind"):
                del new[k]
        for k, v in old.items():
            if k not in ("status", "metadata", "apiVersion", "kind"):
                new[k] = v

    def validate_status_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return []

    # metadata fields a status write may change (the rest is kept from the stored object), as
    # kinds' status strategies allow: a Deployment's controller records its revision annotation
    status_metadata: tuple[str, ...] = ()

    def prepare_for_subresource_update(self, subresource: str, new: Obj, old: Obj) -> None:
        """Other writable subresources (e.g. namespaces/finalize): keep what it may not change."""
        self.prepare_for_update(new, old)

    def validate_subresource_update(self, subresource: str, new: Obj, old: Obj) -> list[FieldError]:
        return self.validate_update(new, old)

    # --- delete ---------------------------------------------------------------
    def grace_period(self, obj: Obj, requested: int | None) -> int:
        """Seconds of graceful deletion for this object; 0 deletes at once."""
        return 0

    def has_pending_finalizers(self, obj: Obj) -> bool:
        """Whether deletion must wait (metadata.finalizers; namespaces also spec.finalizers)."""
        return bool((obj.get("metadata") or {}).get("finalizers"))

    def mark_terminating(self, obj: Obj) -> None:
        """Called when deletion of ``obj`` begins but must wait (e.g. namespace phase Terminating)."""

    # --- quota ----------------------------------------------------------------
    def usage(self, obj: Obj) -> dict[str, Decimal]:
        """What one object counts against a ResourceQuota besides ``count/<resource>`` (which is
        generic): e.g. a pod's ``pods``, ``requests.cpu``… (upstream's per-kind quota evaluators).
        An empty result for objects that count nothing (a terminal pod)."""
        return {}

    # --- reading --------------------------------------------------------------
    def field_labels(self, obj: Obj) -> dict[str, str]:
        """Values for field selectors (metadata.name and metadata.namespace are added generically)."""
        return {}

    columns: tuple[Column, ...] = ()

    def row(self, obj: Obj) -> list[Any]:
        """Cells for :attr:`columns` (NAME is the first column, added generically is NOT assumed)."""
        return []


@dataclass(frozen=True)
class Subresource:
    """One subresource of a kind, as discovery, OpenAPI and routing see it.

    ``rest`` builds the handler from the API server's :class:`~kubelite.apiserver.rest.RESTContext`
    (once, at start-up); without it the subresource is the parent object read and written
    through the strategy (``status``, ``finalize``, ``approval``, ``ephemeralcontainers``: GET
    returns the object, PUT/PATCH call the strategy's subresource hooks)."""

    name: str
    verbs: tuple[str, ...] = ("get", "patch", "update")
    kind: str = ""  # request/response kind; "" = the parent's
    group: str | None = None  # None = the parent's
    version: str | None = None
    # a connect subresource (exec, attach, portforward, proxy): the HTTP methods it takes
    connect: tuple[str, ...] = ()
    text: bool = False  # GET answers text/plain (pods/log)
    rest: RESTFactory | None = None
    # the URL may go on after the subresource (nodes/NAME/proxy/metrics)
    takes_path: bool = False


STATUS = Subresource("status")
SCALE = Subresource("scale", group="autoscaling", version="v1", kind="Scale")


@dataclass(frozen=True)
class StoredAs:
    """A kind served in one version and stored as another kind's objects (events.k8s.io/v1
    Event is stored as core/v1 Event), converted on the way in and out."""

    group: str
    version: str
    kind: str
    to_storage: Callable[[Obj], Obj]
    from_storage: Callable[[Obj], Obj]


@dataclass(frozen=True)
class ScaleSpec:
    """Where a kind keeps what its ``/scale`` subresource (autoscaling/v1 Scale) shows."""

    spec_replicas: tuple[str, ...] = ("spec", "replicas")
    status_replicas: tuple[str, ...] = ("status", "replicas")
    selector: tuple[str, ...] = ("spec", "selector")  # a LabelSelector object
    selector_is_map: bool = False  # a label map instead (core/v1 ReplicationController)


@dataclass(frozen=True, eq=False)  # identity: a Kind is declared once and used as a key
class Kind:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    strategy: Strategy
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[Subresource, ...] = ()
    verbs: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
    # name of the _definitions entry for the schema, e.g. "io.k8s.api.core.v1.Pod"
    schema_ref: str = ""
    # names a client may not pick (e.g. namespaces must be DNS labels): validator for metadata.name
    name_validator: Callable[[str, bool], list[str]] | None = None
    # served in this version, stored as another kind (see StoredAs)
    stored_as: StoredAs | None = None
    # create-only kinds that are never stored (access reviews): the API server asks this
    # factory for the object that answers their POST instead of a store
    virtual: Callable[[RESTContext, Kind], Any] | None = None
    # the /scale subresource reads and writes these fields
    scale: ScaleSpec | None = None
    # the kind's own store, a kubelite.apiserver.registry.ResourceStore subclass built as
    # ``store(kind, backend, storage_kind)``, for kinds whose writes hold more than the object
    # (upstream's per-kind REST storage: a Service's ClusterIP and NodePort allocation)
    store: Callable[[Kind, Any, Kind | None], Any] | None = None
    # field selectors the API server's watch cache keeps an index for (upstream indexes pods
    # by spec.nodeName: every node agent lists and watches its own pods)
    indexed_fields: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [s.name for s in self.subresources]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.plural}: duplicate subresources {names}")
        if self.scale is not None and "scale" not in names:
            raise ValueError(f"{self.plural}: a ScaleSpec needs the scale subresource")

    def subresource(self, name: str) -> Subresource | None:
        for s in self.subresources:
            if s.name == name:
                return s
        return None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    def key(self, namespace: str | None, name: str = "") -> str:
        """Storage key: /registry/<group>/<plural>/<namespace>/<name> (namespace omitted for cluster kinds)."""
        g = self.group or "core"
        if self.namespaced:
            base = f"/registry/{g}/{self.plural}/"
            if namespace is None:
                return base
            return f"{base}{namespace}/{name}"
        return f"/registry/{g}/{self.plural}/{name}"
