"""Events: core v1 Event and events.k8s.io/v1 Event, one stored object served in both.

Upstream keeps one internal Event; core/v1 and events.k8s.io/v1 are two encodings of it
(pkg/apis/events/v1/conversion.go). Here the stored form is core v1; the events.k8s.io/v1
form is made with :func:`core_to_events_v1` and read back with :func:`events_v1_to_core`.

Validation is pkg/apis/core/validation/events.go: requests through core/v1 only get the
legacy checks, requests through events.k8s.io/v1 also get the strict ones.

The recording helpers (:func:`make_event`, :func:`event_key`, :func:`observe`) mirror
client-go's tools/record recorder and EventCorrelator de-duplication.
"""

from __future__ import annotations

import copy
import time
from datetime import UTC, datetime
from typing import Any

from kubelite.api import field as f
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import is_dns1123_subdomain, is_qualified_name, name_is_dns_subdomain
from kubelite.kinds._printing import GoJSON, age, doc, meta, name_column, parse_time
from kubelite.kinds.base import Column, Kind, Obj, StoredAs, Strategy

EVENT_TYPE_NORMAL = "Normal"
EVENT_TYPE_WARNING = "Warning"
REPORTING_INSTANCE_LENGTH_LIMIT = 128
ACTION_LENGTH_LIMIT = 128
REASON_LENGTH_LIMIT = 128
NOTE_LENGTH_LIMIT = 1024
NAMESPACE_DEFAULT = "default"
NAMESPACE_SYSTEM = "kube-system"
IMMUTABLE = "field is immutable"

_OBJREF_ORDER = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _s(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _zero_time(v: Any) -> bool:
    return not v


# --- conversion ---------------------------------------------------------------------------

# core/v1 field -> events.k8s.io/v1 field (the rest keep their names)
_CORE_TO_V1 = {
    "involvedObject": "regarding",
    "message": "note",
    "source": "deprecatedSource",
    "firstTimestamp": "deprecatedFirstTimestamp",
    "lastTimestamp": "deprecatedLastTimestamp",
    "count": "deprecatedCount",
    "reportingComponent": "reportingController",
}
_V1_TO_CORE = {v: k for k, v in _CORE_TO_V1.items()}
_SHARED = ("metadata", "eventTime", "series", "reportingInstance", "action", "reason", "related", "type")


def is_events_v1(obj: Obj) -> bool:
    """Whether ``obj`` is in the events.k8s.io/v1 shape."""
    av = obj.get("apiVersion")
    if isinstance(av, str) and av.startswith("events.k8s.io/"):
        return True
    if av == "v1":
        return False
    return any(k in obj for k in _V1_TO_CORE)


def core_to_events_v1(obj: Obj) -> Obj:
    """Convert_core_Event_To_v1_Event: a core/v1 Event as events.k8s.io/v1 (a new dict)."""
    out: Obj = {"apiVersion": "events.k8s.io/v1", "kind": "Event"}
    for k in _SHARED:
        if k in obj:
            out[k] = copy.deepcopy(obj[k])
    for src, dst in _CORE_TO_V1.items():
        if src in obj:
            out[dst] = copy.deepcopy(obj[src])
    return out


def events_v1_to_core(obj: Obj) -> Obj:
    """Convert_v1_Event_To_core_Event: an events.k8s.io/v1 Event as core/v1 (a new dict)."""
    out: Obj = {"apiVersion": "v1", "kind": "Event"}
    for k in _SHARED:
        if k in obj:
            out[k] = copy.deepcopy(obj[k])
    for src, dst in _V1_TO_CORE.items():
        if src in obj:
            out[dst] = copy.deepcopy(obj[src])
    return out


def as_core(obj: Obj) -> Obj:
    return events_v1_to_core(obj) if is_events_v1(obj) else obj


# --- validation ---------------------------------------------------------------------------


def legacy_validate_event(ev: Obj) -> list[FieldError]:
    """legacyValidateEvent: the checks every Event write passes, whatever the API version."""
    errs: list[FieldError] = []
    ns = _s(meta(ev).get("namespace"))
    inv = _dict(ev.get("involvedObject"))
    inv_ns = _s(inv.get("namespace"))
    ns_path = Path("involvedObject", "namespace")
    if _zero_time(ev.get("eventTime")):
        if not inv_ns:
            # event.namespace must also be empty (or "default", for compatibility with old clients)
            if ns not in ("", NAMESPACE_DEFAULT):
                errs.append(f.invalid(ns_path, inv_ns, "does not match event.namespace"))
        elif ns != inv_ns:
            errs.append(f.invalid(ns_path, inv_ns, "does not match event.namespace"))
    else:
        if not inv_ns and ns not in (NAMESPACE_DEFAULT, NAMESPACE_SYSTEM):
            errs.append(f.invalid(ns_path, inv_ns, "does not match event.namespace"))
        rc = _s(ev.get("reportingComponent"))
        if not rc:
            errs.append(f.required("reportingController"))
        errs.extend(f.invalid("reportingController", rc, msg) for msg in is_qualified_name(rc))
        ri = _s(ev.get("reportingInstance"))
        if not ri:
            errs.append(f.required("reportingInstance"))
        if len(ri) > REPORTING_INSTANCE_LENGTH_LIMIT:
            errs.append(f.invalid("reportingInstance", "",
                                  f"can have at most {REPORTING_INSTANCE_LENGTH_LIMIT} characters"))
        action = _s(ev.get("action"))
        if not action:
            errs.append(f.required("action"))
        if len(action) > ACTION_LENGTH_LIMIT:
            errs.append(f.invalid("action", "", f"can have at most {ACTION_LENGTH_LIMIT} characters"))
        reason = _s(ev.get("reason"))
        if not reason:
            errs.append(f.required("reason"))
        if len(reason) > REASON_LENGTH_LIMIT:
            errs.append(f.invalid("reason", "", f"can have at most {REASON_LENGTH_LIMIT} characters"))
        if len(_s(ev.get("message"))) > NOTE_LENGTH_LIMIT:
            errs.append(f.invalid("message", "", f"can have at most {NOTE_LENGTH_LIMIT} characters"))
    errs.extend(f.invalid("namespace", ns, msg) for msg in is_dns1123_subdomain(ns))
    return errs


def _validate_series(ev: Obj) -> list[FieldError]:
    series = ev.get("series")
    if not isinstance(series, dict):
        return []
    errs: list[FieldError] = []
    count = series.get("count")
    if not isinstance(count, int) or count < 2:
        errs.append(f.invalid("series.count", "", "should be at least 2"))
    if _zero_time(series.get("lastObservedTime")):
        errs.append(f.required("series.lastObservedTime"))
    return errs


def validate_event_create_strict(ev: Obj) -> list[FieldError]:
    """The extra checks of ValidateEventCreate for events.k8s.io/v1 requests (core-shaped ``ev``)."""
    errs = _validate_series(ev)
    if _zero_time(ev.get("eventTime")):
        errs.append(f.required("eventTime"))
    typ = _s(ev.get("type"))
    if typ not in (EVENT_TYPE_NORMAL, EVENT_TYPE_WARNING):
        errs.append(f.invalid("type", "", f"has invalid value: {typ}"))
    if not _zero_time(ev.get("firstTimestamp")):
        errs.append(f.invalid("firstTimestamp", "", "needs to be unset"))
    if not _zero_time(ev.get("lastTimestamp")):
        errs.append(f.invalid("lastTimestamp", "", "needs to be unset"))
    if ev.get("count"):
        errs.append(f.invalid("count", "", "needs to be unset"))
    src = _dict(ev.get("source"))
    if src.get("component") or src.get("host"):
        errs.append(f.invalid("source", "", "needs to be unset"))
    return errs


def _objref(v: Any) -> dict[str, Any]:
    d = _dict(v)
    return {k: d[k] for k in _OBJREF_ORDER if d.get(k)}


def _source(v: Any) -> dict[str, Any]:
    d = _dict(v)
    return {k: d[k] for k in ("component", "host") if d.get(k)}


def _render(name: str, v: Any) -> Any:
    """The bad value ValidateImmutableField shows for a field of the new Event."""
    if name in ("involvedObject",):
        return GoJSON(_objref(v))
    if name == "source":
        return GoJSON(_source(v))
    if name == "related":
        return GoJSON(_objref(v) if isinstance(v, dict) else None)
    if name in ("firstTimestamp", "lastTimestamp", "eventTime"):
        return GoJSON(v or None)
    if name == "count":
        return v if isinstance(v, int) else 0
    return _s(v)


def _norm(name: str, v: Any) -> Any:
    if name in ("involvedObject",):
        return _objref(v)
    if name == "related":
        return _objref(v) if isinstance(v, dict) else None
    if name == "source":
        return _source(v)
    if name in ("firstTimestamp", "lastTimestamp", "eventTime"):
        t = parse_time(v) if v else None
        return t if t is not None else (v or None)
    if name == "count":
        return v if isinstance(v, int) else 0
    return _s(v)


# Field order of ValidateEventUpdate ("reason" is checked twice upstream).
_IMMUTABLE_FIELDS = (
    "involvedObject", "reason", "message", "source", "firstTimestamp", "lastTimestamp", "count",
    "reason", "type", "eventTime", "action", "related", "reportingComponent", "reportingInstance",
)
_IMMUTABLE_PATH = {"reportingComponent": "reportingController"}


def validate_event_update_strict(new: Obj, old: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    if new.get("series") != old.get("series"):
        errs.extend(_validate_series(new))
    for name in _IMMUTABLE_FIELDS:
        if _norm(name, new.get(name)) != _norm(name, old.get(name)):
            errs.append(f.invalid(_IMMUTABLE_PATH.get(name, name), _render(name, new.get(name)), IMMUTABLE))
    return errs


# --- printing -------------------------------------------------------------------------------


def _format_source(ev: Obj) -> str:
    src = _dict(ev.get("source"))
    component = _s(src.get("component")) or _s(ev.get("reportingComponent"))
    instance = _s(src.get("host")) or _s(ev.get("reportingInstance"))
    return component if not instance else f"{component}, {instance}"


def event_row(obj: Obj, now: float | None = None) -> list[Any]:
    ev = as_core(obj)
    first = age(ev.get("firstTimestamp"), now)
    if _zero_time(ev.get("firstTimestamp")):
        first = age(ev.get("eventTime"), now)
    last = age(ev.get("lastTimestamp"), now)
    if _zero_time(ev.get("lastTimestamp")):
        last = first
    count = ev.get("count") if isinstance(ev.get("count"), int) else 0
    series = ev.get("series")
    if isinstance(series, dict):
        last = age(series.get("lastObservedTime"), now)
        count = series.get("count") if isinstance(series.get("count"), int) else 0
    elif count == 0:
        count = 1  # singleton events don't have a count set in the new API
    inv = _dict(ev.get("involvedObject"))
    kind = _s(inv.get("kind")).lower()
    target = f"{kind}/{inv['name']}" if _s(inv.get("name")) else kind
    return [
        last,
        _s(ev.get("type")),
        _s(ev.get("reason")),
        target,
        _s(inv.get("fieldPath")),
        _format_source(ev),
        _s(ev.get("message")).strip(),
        first,
        count,
        meta(ev).get("name", ""),
    ]


_EV = "io.k8s.api.core.v1.Event"
EVENT_COLUMNS = (
    Column("Last Seen", "string", "", doc(_EV, "lastTimestamp")),
    Column("Type", "string", "", doc(_EV, "type")),
    Column("Reason", "string", "", doc(_EV, "reason")),
    Column("Object", "string", "", doc(_EV, "involvedObject")),
    Column("Subobject", "string", "", doc("io.k8s.api.core.v1.ObjectReference", "fieldPath"), 1),
    Column("Source", "string", "", doc(_EV, "source"), 1),
    Column("Message", "string", "", doc(_EV, "message")),
    Column("First Seen", "string", "", doc(_EV, "firstTimestamp"), 1),
    Column("Count", "string", "", doc(_EV, "count"), 1),
    name_column(priority=1),
)


def event_field_labels(obj: Obj) -> dict[str, str]:
    """event.ToSelectableFields (core/v1 names; metadata.* are added generically)."""
    ev = as_core(obj)
    inv = _dict(ev.get("involvedObject"))
    source = _s(_dict(ev.get("source")).get("component")) or _s(ev.get("reportingComponent"))
    return {
        "involvedObject.kind": _s(inv.get("kind")),
        "involvedObject.namespace": _s(inv.get("namespace")),
        "involvedObject.name": _s(inv.get("name")),
        "involvedObject.uid": _s(inv.get("uid")),
        "involvedObject.apiVersion": _s(inv.get("apiVersion")),
        "involvedObject.resourceVersion": _s(inv.get("resourceVersion")),
        "involvedObject.fieldPath": _s(inv.get("fieldPath")),
        "reason": _s(ev.get("reason")),
        "reportingComponent": _s(ev.get("reportingComponent")),
        "source": source,
        "type": _s(ev.get("type")),
    }


# AddFieldLabelConversionsForEvent (events.k8s.io/v1): label -> core/v1 label
EVENTS_V1_FIELD_LABELS = {
    "reason": "reason",
    "regarding.kind": "involvedObject.kind",
    "regarding.namespace": "involvedObject.namespace",
    "regarding.name": "involvedObject.name",
    "regarding.uid": "involvedObject.uid",
    "regarding.apiVersion": "involvedObject.apiVersion",
    "regarding.resourceVersion": "involvedObject.resourceVersion",
    "regarding.fieldPath": "involvedObject.fieldPath",
    "reportingController": "reportingComponent",
    "type": "type",
}


class EventStrategy(Strategy):
    """core/v1 Event: legacy validation only, create-on-update allowed."""

    allow_create_on_update = True

    def validate(self, obj: Obj) -> list[FieldError]:
        return legacy_validate_event(as_core(obj))

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        return legacy_validate_event(as_core(new))

    def field_labels(self, obj: Obj) -> dict[str, str]:
        return event_field_labels(obj)

    columns = EVENT_COLUMNS

    def row(self, obj: Obj) -> list[Any]:
        return event_row(obj)


class EventsV1Strategy(EventStrategy):
    """events.k8s.io/v1 Event: legacy plus strict validation. Hooks accept either shape."""

    def validate(self, obj: Obj) -> list[FieldError]:
        ev = as_core(obj)
        return legacy_validate_event(ev) + validate_event_create_strict(ev)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        n, o = as_core(new), as_core(old)
        return legacy_validate_event(n) + validate_event_update_strict(n, o)

    def field_labels(self, obj: Obj) -> dict[str, str]:
        core = event_field_labels(obj)
        return {label: core[c] for label, c in EVENTS_V1_FIELD_LABELS.items()}


EVENT = Kind(
    group="",
    version="v1",
    kind="Event",
    plural="events",
    namespaced=True,
    strategy=EventStrategy(),
    short_names=("ev",),
    schema_ref="io.k8s.api.core.v1.Event",
    name_validator=name_is_dns_subdomain,
)

EVENT_V1 = Kind(
    group="events.k8s.io",
    version="v1",
    kind="Event",
    plural="events",
    namespaced=True,
    strategy=EventsV1Strategy(),
    short_names=("ev",),
    schema_ref="io.k8s.api.events.v1.Event",
    name_validator=name_is_dns_subdomain,
    stored_as=StoredAs("", "v1", "Event", events_v1_to_core, core_to_events_v1),
)


# --- recording (client-go tools/record) -----------------------------------------------------


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def object_reference(obj: Obj) -> dict[str, Any]:
    """reference.GetReference: an ObjectReference for a full object (an ObjectReference is kept)."""
    if "metadata" not in obj:
        return {k: obj[k] for k in _OBJREF_ORDER if obj.get(k)}
    m = meta(obj)
    ref = {
        "kind": obj.get("kind", ""),
        "namespace": m.get("namespace", ""),
        "name": m.get("name", ""),
        "uid": m.get("uid", ""),
        "apiVersion": obj.get("apiVersion", ""),
        "resourceVersion": m.get("resourceVersion", ""),
    }
    return {k: v for k, v in ref.items() if v}


def make_event(involved: dict[str, Any], type_: str, reason: str, message: str, component: str,
               host: str = "", *, now: float | None = None, related: dict[str, Any] | None = None,
               action: str = "") -> Obj:
    """recorderImpl.makeEvent + generateEvent: a new core/v1 Event about ``involved``.

    ``involved`` is an ObjectReference or a whole object. The name is
    ``<involvedName>.<unix nanoseconds in hex>``; the namespace that of the object or "default".
    ``related`` and ``action`` are what an events.k8s.io recorder's Eventf(regarding, related,
    type, reason, action, note) adds (the scheduler's ``Preempted`` event).
    """
    t_ns = time.time_ns() if now is None else int(now * 1_000_000_000)
    ref = object_reference(involved)
    ts = _rfc3339(t_ns / 1e9)
    source: dict[str, Any] = {"component": component} if component else {}
    if host:
        source["host"] = host
    ev: Obj = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{ref.get('name', '')}.{t_ns:x}",
            "namespace": ref.get("namespace") or NAMESPACE_DEFAULT,
        },
        "involvedObject": ref,
        "reason": reason,
        "message": message,
        "source": source,
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "count": 1,
        "type": type_,
        "eventTime": None,
        "reportingComponent": "",
        "reportingInstance": "",
    }
    if related is not None:
        ev["related"] = object_reference(related)
    if action:
        ev["action"] = action
    return ev


def event_key(ev: Obj) -> tuple[str, ...]:
    """EventCorrelator's getEventKey: events equal on this are one event seen again."""
    src = _dict(ev.get("source"))
    inv = _dict(ev.get("involvedObject"))
    return (
        _s(src.get("component")),
        _s(src.get("host")),
        _s(inv.get("kind")),
        _s(inv.get("namespace")),
        _s(inv.get("name")),
        _s(inv.get("fieldPath")),
        _s(inv.get("uid")),
        _s(inv.get("apiVersion")),
        _s(ev.get("type")),
        _s(ev.get("reason")),
        _s(ev.get("message")),
    )


def observe(existing: Obj, new: Obj) -> Obj:
    """eventLogger.eventObserve for a repeat: ``existing`` with count+1 and the new lastTimestamp.

    Returns a new dict (the caller updates or patches the stored Event with it); name,
    namespace, resourceVersion and firstTimestamp stay those of ``existing``.
    """
    out = copy.deepcopy(existing)
    count: int = existing["count"] if isinstance(existing.get("count"), int) else 1
    out["count"] = max(count, 1) + 1
    out["lastTimestamp"] = new.get("lastTimestamp") or _rfc3339(time.time())
    out["message"] = new.get("message", existing.get("message", ""))
    return out


def observe_patch(existing: Obj, new: Obj) -> dict[str, Any]:
    """The strategic-merge patch client-go sends for a repeat: count, lastTimestamp, message."""
    o = observe(existing, new)
    return {"count": o["count"], "lastTimestamp": o["lastTimestamp"], "message": o["message"]}
