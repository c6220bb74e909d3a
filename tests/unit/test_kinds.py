"""Kinds: defaulting, validation messages, Table rows, event conversion and registry lookups."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest

from kubelite.api.field import aggregate_message
from kubelite.kinds import events as ev
from kubelite.kinds._printing import age, human_duration
from kubelite.kinds.configmaps import CONFIGMAP
from kubelite.kinds.leases import LEASE
from kubelite.kinds.namespaces import NAMESPACE
from kubelite.kinds.nodes import NODE
from kubelite.kinds.registry import Registry, default_registry
from kubelite.kinds.secrets import SECRET
from kubelite.kinds.serviceaccounts import SERVICEACCOUNT


def msgs(errs) -> list[str]:
    return [str(e) for e in errs]


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def ts(seconds_ago: float) -> str:
    return datetime.fromtimestamp(time.time() - seconds_ago, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- printing helpers ------------------------------------------------------------------------


@pytest.mark.parametrize(("secs", "want"), [
    (-5, "<invalid>"), (-1, "0s"), (0, "0s"), (119, "119s"), (120, "2m"), (125, "2m5s"),
    (600, "10m"), (3 * 3600 - 1, "179m"), (3 * 3600, "3h"), (3 * 3600 + 60, "3h1m"), (8 * 3600, "8h"),
    (47 * 3600, "47h"), (48 * 3600, "2d"), (50 * 3600, "2d2h"), (8 * 86400, "8d"),
    (2 * 365 * 86400, "2y"), (2 * 365 * 86400 + 86400, "2y1d"), (8 * 365 * 86400, "8y"),
])
def test_human_duration(secs, want):
    assert human_duration(secs) == want


def test_age():
    assert age(None) == "<unknown>"
    assert age("") == "<unknown>"
    assert age(ts(30)) in ("30s", "31s")


def test_every_kind_but_event_starts_with_name_column():
    for kind in (NAMESPACE, NODE, CONFIGMAP, SECRET, SERVICEACCOUNT, LEASE):
        c = kind.strategy.columns[0]
        assert (c.name, c.type, c.format) == ("Name", "string", "name")
        assert c.description.startswith("Name must be unique within a namespace.")
        assert kind.strategy.columns[-1].name == "Age" or kind is NODE


# --- namespaces ----------------------------------------------------------------------------


def test_namespace_defaults_and_create():
    ns = {"metadata": {"name": "team-a"}}
    s = NAMESPACE.strategy
    s.default(ns)
    s.prepare_for_create(ns)
    assert ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == "team-a"
    assert ns["spec"]["finalizers"] == ["kubernetes"]
    assert ns["status"] == {"phase": "Active"}
    assert s.validate(ns) == []
    ns2 = {"metadata": {"name": "b"}, "spec": {"finalizers": ["example.com/x"]}}
    s.prepare_for_create(ns2)
    assert ns2["spec"]["finalizers"] == ["example.com/x", "kubernetes"]


def test_namespace_finalizer_validation():
    ns = {"metadata": {"name": "a"}, "spec": {"finalizers": ["foo"]}}
    assert msgs(NAMESPACE.strategy.validate(ns)) == [
        'spec.finalizers: Invalid value: "foo": name is neither a standard finalizer name nor is it fully qualified']
    new = {"metadata": {"name": "a"}, "spec": {"finalizers": ["kubernetes", "bad"]}}
    assert msgs(NAMESPACE.strategy.validate_update(new, new)) == [
        'spec.finalizers[1]: Invalid value: "bad": name is neither a standard finalizer name nor is it fully qualified']


def test_namespace_update_keeps_finalizers_and_status():
    old = {"metadata": {"name": "a"}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
    new = {"metadata": {"name": "a", "labels": {"x": "y"}}, "spec": {"finalizers": []},
           "status": {"phase": "Terminating"}}
    NAMESPACE.strategy.prepare_for_update(new, old)
    assert new["spec"]["finalizers"] == ["kubernetes"]
    assert new["status"] == {"phase": "Active"}
    assert new["metadata"]["labels"] == {"x": "y", "kubernetes.io/metadata.name": "a"}


def test_namespace_status_and_finalize():
    s = NAMESPACE.strategy
    old = {"metadata": {"name": "a"}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
    new = {"metadata": {"name": "a"}, "spec": {}, "status": {"phase": "Terminating"}}
    s.status_prepare_for_update(new, old)
    assert new["spec"] == {"finalizers": ["kubernetes"]}
    assert msgs(s.validate_status_update(new, old)) == [
        "status.Phase: Invalid value: \"Terminating\": may only be 'Active' if `deletionTimestamp` is empty"]
    fin = {"metadata": {"name": "a"}, "spec": {"finalizers": []}, "status": {"phase": "X"}}
    s.prepare_for_subresource_update("finalize", fin, old)
    assert fin["spec"]["finalizers"] == [] and fin["status"] == {"phase": "Active"}
    assert s.has_pending_finalizers(old) and not s.has_pending_finalizers(fin)
    s.mark_terminating(old)
    assert old["status"]["phase"] == "Terminating"


def test_namespace_table_and_fields():
    ns = {"metadata": {"name": "a", "creationTimestamp": ts(200)}, "status": {"phase": "Active"}}
    assert [c.name for c in NAMESPACE.strategy.columns] == ["Name", "Status", "Age"]
    assert NAMESPACE.strategy.row(ns) == ["a", "Active", "3m20s"]
    assert NAMESPACE.strategy.field_labels(ns) == {"status.phase": "Active"}
    assert NAMESPACE.name_validator("Bad_Name", False)
    assert "deletecollection" not in NAMESPACE.verbs


# --- nodes ---------------------------------------------------------------------------------


def _node(**kw):
    n = {"metadata": {"name": "n1", "creationTimestamp": ts(90), "labels": {}}, "spec": {},
         "status": {"conditions": [{"type": "Ready", "status": "True"}],
                    "nodeInfo": {"kubeletVersion": "v1.37.0"}}}
    n.update(kw)
    return n


def test_node_row():
    n = _node()
    n["metadata"]["labels"] = {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "worker",
                               "node-role.kubernetes.io/": "x"}
    n["status"]["addresses"] = [{"type": "InternalIP", "address": "10.0.0.1"}]
    assert NODE.strategy.row(n) == ["n1", "Ready", "control-plane,worker", "90s", "v1.37.0",
                                    "10.0.0.1", "<none>", "<unknown>", "<unknown>", "<unknown>"]
    n = _node(spec={"unschedulable": True})
    n["status"]["conditions"] = [{"type": "Ready", "status": "Unknown"}]
    row = NODE.strategy.row(n)
    assert row[1:3] == ["NotReady,SchedulingDisabled", "<none>"]
    n["status"] = {}
    assert NODE.strategy.row(n)[1] == "Unknown,SchedulingDisabled"
    assert NODE.strategy.field_labels(n) == {"spec.unschedulable": "true"}
    names = [c.name for c in NODE.strategy.columns]
    assert names == ["Name", "Status", "Roles", "Age", "Version", "Internal-IP", "External-IP", "OS-Image",
                     "Kernel-Version", "Container-Runtime"]
    assert [c.priority for c in NODE.strategy.columns] == [0] * 5 + [1] * 5


def test_node_validation():
    n = _node(spec={"podCIDRs": ["10.0.0.0/24", "10.1.0.0/24"],
                    "taints": [{"key": "a", "effect": "NoSchedule"}, {"key": "a", "effect": "NoSchedule"},
                               {"key": "b", "effect": "Sometimes"}, {"key": "c"}]})
    assert msgs(NODE.strategy.validate(n)) == [
        'metadata.taints[1]: Duplicate value: {"key":"a","effect":"NoSchedule"}: '
        "taints must be unique by key and effect pair",
        'metadata.taints[2].effect: Unsupported value: "Sometimes": supported values: '
        '"NoSchedule", "PreferNoSchedule", "NoExecute"',
        "metadata.taints[3].effect: Required value",
        'spec.podCIDRs: Invalid value: ["10.0.0.0/24","10.1.0.0/24"]: '
        "may specify no more than one CIDR for each IP family",
    ]
    errs = msgs(NODE.strategy.validate(_node(spec={"podCIDR": "10.0.0.1/24"})))
    assert errs == []  # podCIDR alone is not synced until default()
    n = _node(spec={"podCIDR": "10.0.0.1/24"})
    NODE.strategy.default(n)
    assert n["spec"]["podCIDRs"] == ["10.0.0.1/24"]
    assert msgs(NODE.strategy.validate(n)) == [
        'spec.podCIDRs[0]: Invalid value: "10.0.0.1/24": must not have bits set beyond the prefix length']
    assert msgs(NODE.strategy.validate(_node(spec={"podCIDRs": ["nope"]}))) == [
        'spec.podCIDRs[0]: Invalid value: "nope": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)']
    assert NODE.strategy.validate(_node(spec={"podCIDRs": ["10.0.0.0/24", "fd00::/64"]})) == []


def test_node_taint_duplicate_message():
    n = _node(spec={"taints": [{"key": "a", "effect": "NoSchedule"}, {"key": "a", "effect": "NoSchedule"}]})
    assert msgs(NODE.strategy.validate(n)) == [
        'metadata.taints[1]: Duplicate value: {"key":"a","effect":"NoSchedule"}: '
        "taints must be unique by key and effect pair"]


def test_node_update():
    old = _node(spec={"podCIDRs": ["10.0.0.0/24"], "providerID": "p1"})
    new = _node(spec={"podCIDRs": ["10.0.1.0/24"], "providerID": "p2"}, status={"phase": "x"})
    NODE.strategy.prepare_for_update(new, old)
    assert new["status"] == old["status"]
    assert msgs(NODE.strategy.validate_update(new, old)) == [
        'spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid',
        'spec.providerID: Forbidden: node updates may not change providerID except from "" to valid']
    fresh = _node()
    assigned = _node(spec={"podCIDRs": ["10.0.0.0/24"]})
    assert NODE.strategy.validate_update(assigned, fresh) == []


# --- events --------------------------------------------------------------------------------


def _event(**kw):
    e = {"apiVersion": "v1", "kind": "Event",
         "metadata": {"name": "p.1", "namespace": "default", "creationTimestamp": ts(10)},
         "involvedObject": {"kind": "Pod", "namespace": "default", "name": "p", "uid": "u1",
                            "apiVersion": "v1", "fieldPath": "spec.containers{c}"},
         "reason": "Pulled", "message": " pulled image \n", "source": {"component": "kubelet", "host": "n1"},
         "firstTimestamp": ts(300), "lastTimestamp": ts(65), "count": 3, "type": "Normal"}
    e.update(kw)
    return e


def test_event_columns_and_row():
    names = [c.name for c in ev.EVENT.strategy.columns]
    assert names == ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message", "First Seen",
                     "Count", "Name"]
    assert [c.priority for c in ev.EVENT.strategy.columns] == [0, 0, 0, 0, 1, 1, 0, 1, 1, 1]
    row = ev.EVENT.strategy.row(_event())
    assert row == [row[0], "Normal", "Pulled", "pod/p", "spec.containers{c}", "kubelet, n1", "pulled image",
                   "5m", 3, "p.1"]
    assert row[0] in ("65s", "66s")
    e = _event(lastTimestamp=None, count=0, source={}, reportingComponent="ctrl", involvedObject={"kind": "Node"})
    row = ev.EVENT.strategy.row(e)
    assert row[0] == "5m" and row[3] == "node" and row[5] == "ctrl" and row[8] == 1
    e = _event(series={"count": 7, "lastObservedTime": ts(3)})
    assert ev.EVENT.strategy.row(e)[8] == 7
    # the events.k8s.io/v1 shape prints the same
    assert ev.EVENT_V1.strategy.row(ev.core_to_events_v1(_event()))[1:] == ev.EVENT.strategy.row(_event())[1:]


def test_event_field_labels():
    fl = ev.EVENT.strategy.field_labels(_event())
    assert fl["involvedObject.kind"] == "Pod" and fl["source"] == "kubelet" and fl["type"] == "Normal"
    assert fl["reportingComponent"] == "" and fl["involvedObject.fieldPath"] == "spec.containers{c}"
    assert set(fl) == {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                       "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                       "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"}
    v1 = ev.EVENT_V1.strategy.field_labels(ev.core_to_events_v1(_event(reportingComponent="kubelet")))
    assert v1["regarding.name"] == "p" and v1["reportingController"] == "kubelet"
    assert "source" not in v1


def test_event_conversion_round_trip():
    core = _event(eventTime="2026-01-01T00:00:00.000000Z", series={"count": 2, "lastObservedTime": "x"},
                  reportingComponent="kubelet", reportingInstance="n1", action="Pull",
                  related={"kind": "Node", "name": "n1"})
    v1 = ev.core_to_events_v1(core)
    assert v1["apiVersion"] == "events.k8s.io/v1"
    assert v1["regarding"] == core["involvedObject"]
    assert v1["note"] == core["message"]
    assert v1["deprecatedCount"] == 3
    assert v1["deprecatedSource"] == {"component": "kubelet", "host": "n1"}
    assert v1["deprecatedFirstTimestamp"] == core["firstTimestamp"]
    assert v1["deprecatedLastTimestamp"] == core["lastTimestamp"]
    assert v1["reportingController"] == "kubelet" and v1["reportingInstance"] == "n1"
    assert v1["series"] == core["series"] and v1["action"] == "Pull" and v1["related"] == core["related"]
    assert "involvedObject" not in v1 and "message" not in v1
    assert ev.events_v1_to_core(v1) == core
    assert ev.is_events_v1(v1) and not ev.is_events_v1(core)


def test_event_legacy_validation():
    s = ev.EVENT.strategy
    assert s.validate(_event()) == []
    e = _event(involvedObject={"kind": "Pod", "namespace": "other", "name": "p"})
    assert msgs(s.validate(e)) == ['involvedObject.namespace: Invalid value: "other": does not match event.namespace']
    # cluster-scoped involved object: event must be in "" or "default"
    e = _event(involvedObject={"kind": "Node", "name": "n"})
    e["metadata"]["namespace"] = "kube-system"
    assert msgs(s.validate(e)) == ['involvedObject.namespace: Invalid value: "": does not match event.namespace']
    e = _event(eventTime="2026-01-01T00:00:00.000000Z", reason="")
    got = msgs(s.validate(e))
    assert got[0] == "reportingController: Required value"
    # upstream also runs IsQualifiedName on the empty value
    assert got[1] == 'reportingController: Invalid value: "": name part must be non-empty'
    assert got[-3:] == ["reportingInstance: Required value", "action: Required value", "reason: Required value"]
    assert ev.EVENT.strategy.allow_create_on_update


def test_events_v1_strict_validation():
    s = ev.EVENT_V1.strategy
    v1 = ev.core_to_events_v1(_event(type="Odd"))
    assert msgs(s.validate(v1)) == [
        "eventTime: Required value",
        'type: Invalid value: "": has invalid value: Odd',
        'firstTimestamp: Invalid value: "": needs to be unset',
        'lastTimestamp: Invalid value: "": needs to be unset',
        'count: Invalid value: "": needs to be unset',
        'source: Invalid value: "": needs to be unset',
    ]
    good = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": "default"},
            "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "example.com/ctrl",
            "reportingInstance": "ctrl-1", "action": "Sync", "reason": "Done", "type": "Normal",
            "regarding": {"kind": "Pod", "namespace": "default", "name": "p"}, "note": "ok",
            "series": {"count": 1, "lastObservedTime": "2026-01-01T00:00:00.000000Z"}}
    assert msgs(s.validate(good)) == ['series.count: Invalid value: "": should be at least 2']
    changed = dict(good, note="changed", reason="Other")
    errs = msgs(s.validate_update(changed, good))
    assert errs == ['reason: Invalid value: "Other": field is immutable',
                    'message: Invalid value: "changed": field is immutable',
                    'reason: Invalid value: "Other": field is immutable']


def test_make_event_and_dedup():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "prod", "uid": "u",
                                                              "resourceVersion": "7"}}
    e = ev.make_event(pod, "Warning", "BackOff", "Back-off restarting", "kubelet", "node-1", now=1.5e9)
    assert e["metadata"] == {"name": f"web.{int(1.5e18):x}", "namespace": "prod"}
    assert e["involvedObject"] == {"kind": "Pod", "namespace": "prod", "name": "web", "uid": "u",
                                   "apiVersion": "v1", "resourceVersion": "7"}
    assert e["source"] == {"component": "kubelet", "host": "node-1"}
    assert e["count"] == 1 and e["firstTimestamp"] == e["lastTimestamp"] == "2017-07-14T02:40:00Z"
    assert ev.EVENT.strategy.validate(e) == []
    now = ev.make_event(pod, "Warning", "BackOff", "Back-off restarting", "kubelet", "node-1")
    assert len(now["metadata"]["name"].split(".")[1]) == 16
    node = ev.make_event({"kind": "Node", "name": "n1"}, "Normal", "Starting", "", "kubelet")
    assert node["metadata"]["namespace"] == "default" and "host" not in node["source"]
    assert ev.event_key(e) == ev.event_key(now)
    assert ev.event_key(e) != ev.event_key(dict(e, message="other"))
    bumped = ev.observe(e, now)
    assert bumped["count"] == 2 and bumped["lastTimestamp"] == now["lastTimestamp"]
    assert bumped["metadata"] == e["metadata"] and bumped["firstTimestamp"] == e["firstTimestamp"]
    assert ev.observe_patch(bumped, now)["count"] == 3


# --- configmaps ----------------------------------------------------------------------------


def test_configmap_validation():
    s = CONFIGMAP.strategy
    cm = {"metadata": {"name": "c"}, "data": {"ok.key": "v", "bad key": "v", "dup": "x"},
          "binaryData": {"dup": b64("x"), "..x": b64("y")}}
    assert msgs(s.validate(cm)) == [
        "data[bad key]: Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, "
        "'-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
        "'[-._a-zA-Z0-9]+')",
        'data[dup]: Invalid value: "dup": duplicate of key present in binaryData',
        "binaryData[..x]: Invalid value: \"..x\": must not start with '..'",
    ]
    big = {"metadata": {"name": "c"}, "data": {"a": "x" * (1024 * 1024), "b": "y"}}
    assert msgs(s.validate(big)) == ["[]: Too long: may not be more than 1048576 bytes"]
    assert aggregate_message(s.validate(big)) == "[]: Too long: may not be more than 1048576 bytes"


def test_configmap_immutable():
    s = CONFIGMAP.strategy
    old = {"metadata": {"name": "c"}, "data": {"a": "1"}, "immutable": True}
    assert s.validate_update(dict(old), old) == []
    new = {"metadata": {"name": "c"}, "data": {"a": "2"}, "binaryData": {"b": b64("z")}}
    assert msgs(s.validate_update(new, old)) == [
        "immutable: Forbidden: field is immutable when `immutable` is set",
        "data: Forbidden: field is immutable when `immutable` is set",
        "binaryData: Forbidden: field is immutable when `immutable` is set",
    ]
    mutable = {"metadata": {"name": "c"}, "data": {"a": "1"}}
    assert s.validate_update(dict(mutable, data={"a": "9"}), mutable) == []


def test_configmap_row():
    cm = {"metadata": {"name": "c", "creationTimestamp": ts(5)}, "data": {"a": "1"}, "binaryData": {"b": ""}}
    assert CONFIGMAP.strategy.row(cm)[:2] == ["c", 2]
    assert [c.name for c in CONFIGMAP.strategy.columns] == ["Name", "Data", "Age"]
    assert CONFIGMAP.short_names == ("cm",)


# --- secrets -------------------------------------------------------------------------------


def test_secret_defaults_merge_string_data():
    s = SECRET.strategy
    sec = {"metadata": {"name": "s"}, "data": {"a": b64("old"), "b": b64("keep")}, "stringData": {"a": "new"}}
    s.default(sec)
    assert sec == {"metadata": {"name": "s"}, "data": {"a": b64("new"), "b": b64("keep")}, "type": "Opaque"}
    sec = {"metadata": {"name": "s"}, "stringData": {"x": "y"}}
    s.default(sec)
    assert sec["data"] == {"x": b64("y")} and "stringData" not in sec


@pytest.mark.parametrize(("typ", "data", "ann", "want"), [
    ("kubernetes.io/dockerconfigjson", {}, None, ["data[.dockerconfigjson]: Required value"]),
    ("kubernetes.io/dockerconfigjson", {".dockerconfigjson": b64("{nope")}, None,
     ['data[.dockerconfigjson]: Invalid value: "<secret contents redacted>": '
      "invalid character 'n' looking for beginning of object key string"]),
    ("kubernetes.io/dockerconfigjson", {".dockerconfigjson": b64('{"auths": {}}')}, None, []),
    ("kubernetes.io/dockercfg", {".dockercfg": b64("")}, None,
     ['data[.dockercfg]: Invalid value: "<secret contents redacted>": unexpected end of JSON input']),
    ("kubernetes.io/service-account-token", {}, None,
     ["metadata.annotations[kubernetes.io/service-account.name]: Required value"]),
    ("kubernetes.io/service-account-token", {}, {"kubernetes.io/service-account.name": "default"}, []),
    ("kubernetes.io/tls", {"tls.crt": b64("c")}, None, ["data[tls.key]: Required value"]),
    ("kubernetes.io/basic-auth", {}, None, ["data[username]: Required value", "data[password]: Required value"]),
    ("kubernetes.io/basic-auth", {"password": ""}, None, []),
    ("kubernetes.io/ssh-auth", {"ssh-privatekey": ""}, None, ["data[ssh-privatekey]: Required value"]),
    ("example.com/custom", {}, None, []),
])
def test_secret_type_validation(typ, data, ann, want):
    sec = {"metadata": {"name": "s", **({"annotations": ann} if ann else {})}, "type": typ, "data": data}
    assert msgs(SECRET.strategy.validate(sec)) == want


def test_secret_keys_size_and_update():
    s = SECRET.strategy
    sec = {"metadata": {"name": "s"}, "type": "Opaque", "data": {"k/1": b64("v")}}
    assert msgs(s.validate(sec))[0].startswith('data[k/1]: Invalid value: "k/1": a valid config key')
    big = {"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": b64("x" * (1024 * 1024 + 1))}}
    assert msgs(s.validate(big)) == ["data: Too long: may not be more than 1048576 bytes"]
    old = {"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": b64("1")}, "immutable": True}
    new = {"metadata": {"name": "s"}, "type": "kubernetes.io/basic-auth", "data": {"a": b64("2")}}
    assert msgs(s.validate_update(new, old)) == [
        'type: Invalid value: "kubernetes.io/basic-auth": field is immutable',
        "immutable: Forbidden: field is immutable when `immutable` is set",
        "data: Forbidden: field is immutable when `immutable` is set",
        "data[username]: Required value",
        "data[password]: Required value",
    ]


def test_secret_row_and_fields():
    sec = {"metadata": {"name": "s", "creationTimestamp": ts(1)}, "type": "Opaque", "data": {"a": "", "b": ""}}
    assert SECRET.strategy.row(sec)[:3] == ["s", "Opaque", 2]
    assert [c.name for c in SECRET.strategy.columns] == ["Name", "Type", "Data", "Age"]
    assert SECRET.strategy.field_labels(sec) == {"type": "Opaque"}


# --- service accounts and leases --------------------------------------------------------------


def test_serviceaccount():
    sa = {"metadata": {"name": "default", "creationTimestamp": ts(1)}, "secrets": [{"name": "x"}]}
    assert SERVICEACCOUNT.strategy.row(sa)[:2] == ["default", 1]
    assert [c.name for c in SERVICEACCOUNT.strategy.columns] == ["Name", "Secrets", "Age"]
    assert [s.name for s in SERVICEACCOUNT.subresources] == ["token"] and SERVICEACCOUNT.short_names == ("sa",)


def test_lease():
    s = LEASE.strategy
    assert LEASE.api_version == "coordination.k8s.io/v1"
    assert s.allow_create_on_update and not s.allow_unconditional_update
    bad = {"metadata": {"name": "l"}, "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1,
                                                "preferredHolder": "x"}}
    assert msgs(s.validate(bad)) == [
        "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
        "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
        "spec.preferredHolder: Forbidden: may only be specified if `strategy` is defined",
    ]
    odd = {"metadata": {"name": "l"}, "spec": {"strategy": "Newest"}}
    assert msgs(s.validate(odd)) == [
        'spec.strategy.strategy: Unsupported value: "Newest": supported values: "OldestEmulationVersion"']
    good = {"metadata": {"name": "l", "creationTimestamp": ts(1)}, "spec": {"holderIdentity": "me",
                                                                          "leaseDurationSeconds": 15}}
    assert s.validate(good) == []
    assert s.row(good)[:2] == ["l", "me"]
    assert s.row({"metadata": {"name": "l"}, "spec": {}})[1:] == ["", "<unknown>"]


# --- registry ------------------------------------------------------------------------------


def test_registry_lookups():
    reg = default_registry()
    assert reg.by_resource("", "v1", "namespaces") is NAMESPACE
    assert reg.by_resource("coordination.k8s.io", "v1", "leases") is LEASE
    assert reg.by_resource("events.k8s.io", "v1", "events") is ev.EVENT_V1
    assert reg.by_resource("", "v1", "events") is ev.EVENT
    assert reg.by_kind("", "v1", "Secret") is SECRET
    assert reg.by_api_version("events.k8s.io/v1", "Event") is ev.EVENT_V1
    assert reg.by_resource("", "v1", "nothing") is None
    groups = reg.groups()
    assert list(groups)[0] == "" and groups["coordination.k8s.io"] == ["v1"] and groups["events.k8s.io"] == ["v1"]
    assert all(k.group == "" for k in reg.all()[:5])
    with pytest.raises(ValueError):
        Registry([SECRET, SECRET])
