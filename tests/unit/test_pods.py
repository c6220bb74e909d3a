"""Pods: defaulting, validation messages, update immutability, printing and QoS."""

from __future__ import annotations

import copy
from decimal import Decimal

import pytest

from kubelite.kinds._printing import parse_time
from kubelite.kinds.pods import (
    POD,
    human_duration,
    image_pull_policy,
    validate_binding,
)
from kubelite.kinds.podutil import compute_qos_class, pod_requests, qos_class

S = POD.strategy


def kuard(**spec_extra):
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kuard", "namespace": "default"},
        "spec": {
            "containers": [{
                "image": "gcr.io/kuar-demo/kuard-amd64:blue",
                "name": "kuard",
                "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
            }],
        },
    }
    pod["spec"].update(spec_extra)
    return pod


def created(pod):
    S.default(pod)
    S.prepare_for_create(pod)
    return pod


def msgs(pod):
    return [str(e) for e in S.validate(pod)]


def errors_for(mutate):
    pod = kuard()
    mutate(pod)
    return msgs(created(pod))


# ----------------------------------------------------------------------------- kind
def test_kind_declaration():
    assert POD.api_version == "v1" and POD.plural == "pods" and POD.short_names == ("po",)
    assert POD.categories == ("all",) and POD.namespaced
    assert POD.subresource("status") is not None and POD.subresource("binding") is not None
    assert POD.name_validator is not None and POD.name_validator("Bad_Name", False)


# ----------------------------------------------------------------------------- defaulting
def test_kuard_defaults_match_kubernetes():
    pod = created(kuard())
    spec = pod["spec"]
    c = spec["containers"][0]
    assert c["imagePullPolicy"] == "IfNotPresent"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert c["resources"] == {}
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["restartPolicy"] == "Always"
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["securityContext"] == {}
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["enableServiceLinks"] is True
    assert spec["serviceAccountName"] == "default" and spec["serviceAccount"] == "default"
    assert spec["priority"] == 0 and spec["preemptionPolicy"] == "PreemptLowerPriority"
    assert spec["tolerations"] == [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300},
    ]
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert msgs(pod) == []


def test_defaulting_is_idempotent():
    pod = created(kuard())
    again = copy.deepcopy(pod)
    S.default(again)
    S.prepare_for_create(again)
    assert again == pod


def test_update_without_defaults_from_admission():
    def m(p):
        del p["spec"]["serviceAccountName"]
        del p["spec"]["serviceAccount"]
    out = updated(m)
    assert len(out) == 1 and out[0].startswith(UPDATE_PREFIX)


def test_existing_toleration_suppresses_default():
    pod = created(kuard(tolerations=[{"operator": "Exists"}]))
    assert pod["spec"]["tolerations"] == [{"operator": "Exists"}]
    pod = created(kuard(tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                      "effect": "NoExecute", "tolerationSeconds": 10}]))
    keys = [t["key"] for t in pod["spec"]["tolerations"]]
    assert keys == ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]
    assert pod["spec"]["tolerations"][0]["tolerationSeconds"] == 10


@pytest.mark.parametrize("image,policy", [
    ("nginx", "Always"),
    ("nginx:latest", "Always"),
    ("nginx:1.25", "IfNotPresent"),
    ("localhost:5000/nginx", "Always"),
    ("localhost:5000/nginx:v1", "IfNotPresent"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
    ("nginx:latest@sha256:" + "a" * 64, "Always"),
    ("Nginx", "IfNotPresent"),  # not a valid reference
    ("", "IfNotPresent"),
])
def test_image_pull_policy(image, policy):
    assert image_pull_policy(image) == policy


def test_resource_defaults_and_canonical_quantities():
    pod = kuard()
    pod["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "0.5", "memory": "1024Mi"},
                                                 "requests": {"cpu": "250m"}}
    created(pod)
    res = pod["spec"]["containers"][0]["resources"]
    assert res == {"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": "250m", "memory": "1Gi"}}
    assert pod["status"]["qosClass"] == "Burstable"


def test_bad_quantity_is_a_decode_error():
    from kubelite.api.errors import StatusError

    pod = kuard()
    pod["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "abc"}}
    with pytest.raises(StatusError) as ei:
        S.default(pod)
    assert ei.value.code == 400
    assert ei.value.message == (
        'Pod in version "v1" cannot be handled as a Pod: quantities must match the regular expression '
        "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")


def test_probe_volume_and_env_defaults():
    pod = kuard(volumes=[{"name": "a"}, {"name": "b", "hostPath": {"path": "/tmp"}},
                         {"name": "c", "configMap": {"name": "cm"}},
                         {"name": "d", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}],
                hostNetwork=True)
    c = pod["spec"]["containers"][0]
    c["readinessProbe"] = {"httpGet": {"port": 8080}}
    c["livenessProbe"] = {"grpc": {"port": 9090}}
    c["env"] = [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    created(pod)
    assert c["readinessProbe"] == {"httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
                                   "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3}
    assert c["livenessProbe"]["grpc"] == {"port": 9090, "service": ""}
    assert c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"] == "v1"
    assert c["ports"][0]["hostPort"] == 8080
    vols = pod["spec"]["volumes"]
    assert vols[0]["emptyDir"] == {}
    assert vols[1]["hostPath"] == {"path": "/tmp", "type": ""}
    assert vols[2]["configMap"]["defaultMode"] == 420
    assert vols[3]["projected"]["defaultMode"] == 420
    assert vols[3]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] == 3600
    assert msgs(pod) == []


# ----------------------------------------------------------------------------- validation
def test_containers_required():
    pod = kuard()
    pod["spec"]["containers"] = []
    assert msgs(created(pod)) == ["spec.containers: Required value"]


def test_image_required_and_name():
    def m(p):
        p["spec"]["containers"][0]["image"] = ""
        p["spec"]["containers"][0]["name"] = "Bad_Name"
    out = errors_for(m)
    assert 'spec.containers[0].name: Invalid value: "Bad_Name": a lowercase RFC 1123 label must consist of ' \
           "lower case alphanumeric characters or '-', and must start and end with an alphanumeric character " \
           "(e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')" in out
    assert "spec.containers[0].image: Required value" in out


def test_duplicate_container_names():
    def m(p):
        p["spec"]["containers"].append(dict(p["spec"]["containers"][0], ports=[]))
    assert errors_for(m) == ['spec.containers[1].name: Duplicate value: "kuard"']


def test_ports():
    def m(p):
        p["spec"]["containers"][0]["ports"] = [
            {"containerPort": 70000, "name": "http", "protocol": "TCP"},
            {"containerPort": 80, "name": "http", "protocol": "XTP"},
            {"containerPort": 81, "name": "toolongportname1"},
        ]
    out = errors_for(m)
    assert out == [
        "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
        'spec.containers[0].ports[1].name: Duplicate value: "http"',
        'spec.containers[0].ports[1].protocol: Unsupported value: "XTP": supported values: "SCTP", "TCP", "UDP"',
        'spec.containers[0].ports[2].name: Invalid value: "toolongportname1": must be no more than 15 characters',
    ]


def test_host_port_conflict():
    def m(p):
        p["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 80},
                                               {"containerPort": 81, "hostPort": 80}]
    assert errors_for(m) == ['spec.containers[0].ports[1].hostPort: Duplicate value: "TCP//80"']


def test_env():
    def m(p):
        p["spec"]["containers"][0]["env"] = [{"name": "1BAD", "value": "x"}, {"name": "", "value": "y"},
                                             {"name": "A", "valueFrom": {}}]
    out = errors_for(m)
    assert out[0].startswith('spec.containers[0].env[0].name: Invalid value: "1BAD": a valid environment '
                             "variable name must consist")
    assert "spec.containers[0].env[1].name: Required value" in out
    assert 'spec.containers[0].env[2].valueFrom: Invalid value: "": must specify one of: `fieldRef`, ' \
           "`resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`" in out


def test_env_from_requires_source():
    def m(p):
        p["spec"]["containers"][0]["envFrom"] = [{"prefix": "X_"}]
    assert errors_for(m) == ['spec.containers[0].envFrom: Invalid value: "": must specify one of: '
                             "`configMapRef` or `secretRef`"]


def test_requests_above_limits():
    def m(p):
        p["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1"}, "requests": {"cpu": "2"}}
    assert errors_for(m) == ['spec.containers[0].resources.requests: Invalid value: "2": '
                             "must be less than or equal to cpu limit of 1"]


def test_resource_names_and_negative():
    def m(p):
        p["spec"]["containers"][0]["resources"] = {"limits": {"foo": "1", "memory": "-1"}}
    out = errors_for(m)
    assert 'spec.containers[0].resources.limits[foo]: Invalid value: "foo": must be a standard resource type ' \
           "or fully qualified" in out
    assert 'spec.containers[0].resources.limits[foo]: Invalid value: "foo": must be a standard resource for ' \
           "containers" in out
    assert 'spec.containers[0].resources.limits[memory]: Invalid value: "-1": must be greater than or equal to 0' \
        in out


def test_extended_resource_must_have_equal_limit():
    def m(p):
        p["spec"]["containers"][0]["resources"] = {"requests": {"example.com/gpu": "1"}}
    out = errors_for(m)
    # limits are copied to requests, not the other way round
    assert out == ["spec.containers[0].resources.limits: Required value: Limit must be set for non "
                   "overcommitable resources"]


def test_probes():
    def m(p):
        c = p["spec"]["containers"][0]
        c["livenessProbe"] = {"periodSeconds": -1}
        c["readinessProbe"] = {"exec": {"command": ["true"]}, "tcpSocket": {"port": 0}}
        c["startupProbe"] = {"tcpSocket": {"port": 8080}, "successThreshold": 2}
    out = errors_for(m)
    assert out == [
        "spec.containers[0].livenessProbe: Required value: must specify a handler type",
        "spec.containers[0].livenessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0",
        "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
        "spec.containers[0].startupProbe.successThreshold: Invalid value: 2: must be 1",
    ]


def test_probe_port_range():
    def m(p):
        p["spec"]["containers"][0]["livenessProbe"] = {"httpGet": {"port": 0}}
    assert errors_for(m) == [
        "spec.containers[0].livenessProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive"]


def test_volumes_and_mounts():
    def m(p):
        p["spec"]["volumes"] = [{"name": "data", "emptyDir": {}}, {"name": "data", "emptyDir": {}},
                                {"name": "hp", "hostPath": {"path": ""}},
                                {"name": "two", "emptyDir": {}, "secret": {"secretName": "s"}}]
        p["spec"]["containers"][0]["volumeMounts"] = [{"name": "x", "mountPath": "/a"},
                                                      {"name": "data", "mountPath": "/a"},
                                                      {"name": "data", "mountPath": ""}]
    out = errors_for(m)
    assert out == [
        'spec.volumes[1].name: Duplicate value: "data"',
        "spec.volumes[2].hostPath.path: Required value",
        "spec.volumes[3].secret: Forbidden: may not specify more than 1 volume type",
        'spec.containers[0].volumeMounts[0].name: Not found: "x"',
        'spec.containers[0].volumeMounts[1].mountPath: Invalid value: "/a": must be unique',
        "spec.containers[0].volumeMounts[2].mountPath: Required value",
    ]


def test_pod_level_fields():
    def m(p):
        s = p["spec"]
        s["restartPolicy"] = "Sometimes"
        s["dnsPolicy"] = "Weird"
        s["terminationGracePeriodSeconds"] = 30
        s["activeDeadlineSeconds"] = 0
        s["hostname"] = "Host"
        s["nodeSelector"] = {"disk": "ssd!"}
        s["serviceAccountName"] = "Bad_SA"
    out = errors_for(m)
    assert 'spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", ' \
           '"Never"' in out
    assert 'spec.dnsPolicy: Unsupported value: "Weird": supported values: "ClusterFirstWithHostNet", ' \
           '"ClusterFirst", "Default", "None"' in out
    assert "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive" in out
    assert any(o.startswith('spec.hostname: Invalid value: "Host": a lowercase RFC 1123 label') for o in out)
    assert any(o.startswith('spec.nodeSelector: Invalid value: "ssd!": a valid label must be') for o in out)
    assert any(o.startswith('spec.serviceAccountName: Invalid value: "Bad_SA": a lowercase RFC 1123 subdomain')
               for o in out)


def test_tolerations_validation():
    def m(p):
        p["spec"]["tolerations"] = [{"key": "", "operator": "Equal", "value": "x"},
                                    {"key": "k", "operator": "Exists", "value": "v"},
                                    {"key": "k", "operator": "Exists", "effect": "NoSchedule",
                                     "tolerationSeconds": 5},
                                    {"key": "k", "operator": "Maybe"}]
    out = errors_for(m)
    assert out == [
        'spec.tolerations[0].operator: Invalid value: "Equal": operator must be Exists when `key` is empty, '
        'which means "match all values and all keys"',
        "spec.tolerations[1].operator: Invalid value: \"v\": value must be empty when `operator` is 'Exists'",
        "spec.tolerations[2].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when "
        "`tolerationSeconds` is set",
        'spec.tolerations[3].operator: Unsupported value: "Maybe": supported values: "Equal", "Exists"',
    ]


def test_init_containers_and_sidecars():
    def m(p):
        p["spec"]["initContainers"] = [
            {"name": "init", "image": "busybox", "livenessProbe": {"exec": {"command": ["true"]}}},
            {"name": "side", "image": "busybox", "restartPolicy": "Always",
             "readinessProbe": {"exec": {"command": ["true"]}}},
            {"name": "kuard", "image": "busybox", "restartPolicy": "Sometimes"},
            {"name": "retry", "image": "busybox", "restartPolicy": "OnFailure"},  # ContainerRestartRules
        ]
    out = errors_for(m)
    assert out == [
        "spec.initContainers[0].livenessProbe: Forbidden: may not be set for init containers without "
        "restartPolicy=Always",
        'spec.initContainers[2].restartPolicy: Unsupported value: "Sometimes": supported values: "Always", '
        '"OnFailure", "Never"',
        'spec.initContainers[2].name: Duplicate value: "kuard"',
    ]


def test_container_restart_policy_and_rules():
    """ContainerRestartRules (beta, on by default since 1.35): app containers may set their
    own restartPolicy, and restartPolicyRules need one."""
    rule = {"action": "Restart", "exitCodes": {"operator": "In", "values": [42]}}

    def m(p):
        c = p["spec"]["containers"][0]
        c["restartPolicy"] = "Never"
        c["restartPolicyRules"] = [rule]
        p["spec"]["containers"].append({"name": "b", "image": "busybox", "restartPolicyRules": [
            {"action": "RestartAllContainers", "exitCodes": {"operator": "Is", "values": [1, 1]}}, {"action": "Restart"}]})
        p["spec"]["initContainers"] = [{"name": "side", "image": "busybox", "restartPolicy": "Always",
                                        "restartPolicyRules": [rule]}]
    assert errors_for(m) == [
        "spec.containers[1].restartPolicy: Required value: must specify restartPolicy when restart rules are used",
        'spec.containers[1].restartPolicyRules[0].action: Unsupported value: "RestartAllContainers": supported '
        'values: "Restart"',
        'spec.containers[1].restartPolicyRules[0].exitCodes.operator: Unsupported value: "Is": supported values: '
        '"In", "NotIn"',
        "spec.containers[1].restartPolicyRules[0].exitCodes.values[1]: Duplicate value: 1",
        "spec.containers[1].restartPolicyRules[1].exitCodes: Required value: must be specified",
        "spec.initContainers[0].restartPolicyRules: Forbidden: restartPolicyRules are not allowed for init "
        "containers with restart policy Always",
    ]


def test_fields_of_alpha_gates_are_dropped():
    """dropDisabledFields: evictionResponders (EvictionRequestAPI) and schedulingGroup
    (GenericWorkload) are alpha in 1.37, off by default: the API server drops them."""
    pod = created(kuard(evictionResponders=[{"name": "acme.io/drain", "priority": 10000}],
                        schedulingGroup={"podGroupName": "g"}))
    assert "evictionResponders" not in pod["spec"] and "schedulingGroup" not in pod["spec"]
    new = copy.deepcopy(pod)
    new["spec"]["schedulingGroup"] = {"podGroupName": "g"}
    S.prepare_for_update(new, pod)
    assert "schedulingGroup" not in new["spec"]


def test_pull_policy_and_termination_message_policy():
    def m(p):
        p["spec"]["containers"][0]["imagePullPolicy"] = "Sometimes"
        p["spec"]["containers"][0]["terminationMessagePolicy"] = "Logs"
    out = errors_for(m)
    assert out == [
        'spec.containers[0].terminationMessagePolicy: Unsupported value: "Logs": supported values: "File", '
        '"FallbackToLogsOnError"',
        'spec.containers[0].imagePullPolicy: Unsupported value: "Sometimes": supported values: "Always", '
        '"IfNotPresent", "Never"',
    ]


def test_negative_grace_period_and_ephemeral_on_create():
    def m(p):
        p["spec"]["ephemeralContainers"] = [{"name": "debug", "image": "busybox"}]
    assert errors_for(m) == ["spec.ephemeralContainers: Forbidden: cannot be set on create"]


# ----------------------------------------------------------------------------- update
UPDATE_PREFIX = ("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
                 "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions "
                 "to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                 "previously negative)\n")


def updated(mutate):
    old = created(kuard())
    new = copy.deepcopy(old)
    mutate(new)
    S.default(new)
    S.prepare_for_update(new, old)
    return [str(e) for e in S.validate_update(new, old)]


def test_image_update_allowed():
    def m(p):
        p["spec"]["containers"][0]["image"] = "gcr.io/kuar-demo/kuard-amd64:green"
    assert updated(m) == []


def test_spec_change_forbidden():
    def m(p):
        p["spec"]["containers"][0]["ports"][0]["containerPort"] = 9090
    out = updated(m)
    assert len(out) == 1 and out[0].startswith(UPDATE_PREFIX)
    assert "core.PodSpec{" in out[0]


def test_add_remove_containers():
    def m(p):
        p["spec"]["containers"].append({"name": "b", "image": "busybox"})
    assert updated(m) == ["spec.containers: Forbidden: pod updates may not add or remove containers"]


def test_active_deadline_and_tolerations_updates():
    def m(p):
        p["spec"]["activeDeadlineSeconds"] = 100
        p["spec"]["tolerations"].append({"key": "a", "operator": "Exists"})
    assert updated(m) == []

    old = created(kuard(activeDeadlineSeconds=10))
    new = copy.deepcopy(old)
    new["spec"]["activeDeadlineSeconds"] = 20
    assert [str(e) for e in S.validate_update(new, old)] == [
        "spec.activeDeadlineSeconds: Invalid value: 20: must be less than or equal to previous value"]

    def drop(p):
        p["spec"]["tolerations"] = [p["spec"]["tolerations"][0]]
    # admission defaults run on create only
    assert updated(drop) == ["spec.tolerations: Forbidden: existing toleration can not be modified except its "
                             "tolerationSeconds"]

    def change(p):
        p["spec"]["tolerations"][0]["effect"] = "NoSchedule"
    out = updated(change)
    assert ("spec.tolerations: Forbidden: existing toleration can not be modified except its "
            "tolerationSeconds") in out


def test_update_keeps_status():
    old = created(kuard())
    old["status"]["phase"] = "Running"
    new = copy.deepcopy(old)
    new["status"] = {"phase": "Failed"}
    S.prepare_for_update(new, old)
    assert new["status"]["phase"] == "Running"


def test_status_update():
    old = created(kuard())
    new = copy.deepcopy(old)
    new["spec"]["nodeName"] = "sneaky"
    new["status"] = {"phase": "Running", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                     "conditions": [{"type": "bad type!", "status": "True"}]}
    S.status_prepare_for_update(new, old)
    assert "nodeName" not in new["spec"]
    assert new["status"]["qosClass"] == "BestEffort"
    out = [str(e) for e in S.validate_status_update(new, old)]
    assert any(o.startswith('metadata.conditions[0].Type: Invalid value: "bad type!"') for o in out)
    assert any(o.startswith("status.podIPs: Invalid value:") and o.endswith(
        "may specify no more than one IP for each IP family") for o in out)


# ----------------------------------------------------------------------------- delete, fields, binding
def test_grace_period():
    pod = created(kuard())
    assert S.grace_period(pod, None) == 0  # not scheduled
    pod["spec"]["nodeName"] = "n1"
    assert S.grace_period(pod, None) == 30
    assert S.grace_period(pod, 5) == 5
    assert S.grace_period(pod, -3) == 1
    pod["status"]["phase"] = "Succeeded"
    assert S.grace_period(pod, 5) == 0


def test_field_labels():
    pod = created(kuard())
    pod["status"]["podIPs"] = [{"ip": "10.1.2.3"}]
    assert S.field_labels(pod) == {
        "spec.nodeName": "", "spec.restartPolicy": "Always", "spec.schedulerName": "default-scheduler",
        "spec.serviceAccountName": "default", "spec.hostNetwork": "false", "status.phase": "Pending",
        "status.podIP": "10.1.2.3", "status.nominatedNodeName": "",
    }


def test_binding_validation():
    assert validate_binding({"target": {"kind": "Node", "name": "n1"}}) == []
    assert [str(e) for e in validate_binding({"target": {"kind": "Pod"}})] == [
        'target.kind: Unsupported value: "Pod": supported values: "Node", "<empty>"',
        "target.name: Required value",
    ]


# ----------------------------------------------------------------------------- qos and requests
def _res(**kw):
    return {"resources": kw}


@pytest.mark.parametrize("containers,expected", [
    ([{}], "BestEffort"),
    ([_res(requests={"cpu": "100m"})], "Burstable"),
    ([_res(limits={"cpu": "1", "memory": "1Gi"}, requests={"cpu": "1", "memory": "1Gi"})], "Guaranteed"),
    ([_res(limits={"cpu": "1", "memory": "1Gi"}, requests={"cpu": "500m", "memory": "1Gi"})], "Burstable"),
    ([_res(limits={"cpu": "1", "memory": "1Gi"}, requests={"cpu": "1", "memory": "1Gi"}), {}], "Burstable"),
    ([_res(requests={"example.com/gpu": "1"}, limits={"example.com/gpu": "1"})], "BestEffort"),
])
def test_qos(containers, expected):
    pod = {"spec": {"containers": containers}}
    assert compute_qos_class(pod) == expected
    assert qos_class(pod) == expected
    assert qos_class({"spec": {}, "status": {"qosClass": "Guaranteed"}}) == "Guaranteed"


def test_pod_requests():
    pod = {"spec": {
        "containers": [_res(requests={"cpu": "100m", "memory": "64Mi"}), _res(requests={"cpu": "200m"})],
        "initContainers": [_res(requests={"cpu": "1"}), {"restartPolicy": "Always", **_res(requests={"cpu": "50m"})}],
        "overhead": {"cpu": "10m"},
    }}
    r = pod_requests(pod)
    assert r["cpu"] == Decimal("1.01")
    assert r["memory"] == Decimal(64 * 1024 * 1024)


# ----------------------------------------------------------------------------- printing
NOW = parse_time("2024-01-01T12:00:00Z")


def status_pod(status, spec_extra=None, meta_extra=None):
    pod = created(kuard(**(spec_extra or {})))
    pod["metadata"]["creationTimestamp"] = "2024-01-01T11:00:00Z"
    pod["metadata"].update(meta_extra or {})
    pod["status"] = status
    return pod


def cells(pod):
    from kubelite.kinds._pod_printing import pod_row

    return pod_row(pod, now=NOW)


def running(name="kuard", ready=True, restarts=0, last_finished=None):
    cs = {"name": name, "ready": ready, "restartCount": restarts, "state": {"running": {}}}
    if last_finished:
        cs["lastState"] = {"terminated": {"exitCode": 1, "finishedAt": last_finished}}
    return cs


def test_columns():
    cols = S.columns
    assert [c.name for c in cols] == ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node",
                                      "Nominated Node", "Readiness Gates"]
    assert [c.priority for c in cols] == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert cols[0].format == "name" and cols[1].description.startswith("The aggregate readiness state")


def test_row_pending():
    pod = status_pod({"phase": "Pending"})
    assert cells(pod) == ["kuard", "0/1", "Pending", "0", "60m", "<none>", "<none>", "<none>", "<none>"]


def test_row_running_with_restarts():
    pod = status_pod({"phase": "Running", "podIPs": [{"ip": "10.1.0.5"}], "conditions": [
        {"type": "Ready", "status": "True"}], "containerStatuses": [
        running(restarts=3, last_finished="2024-01-01T11:55:00Z")]}, {"nodeName": "node-1"})
    assert cells(pod) == ["kuard", "1/1", "Running", "3 (5m ago)", "60m", "10.1.0.5", "node-1", "<none>",
                          "<none>"]


@pytest.mark.parametrize("state,reason", [
    ({"waiting": {"reason": "CrashLoopBackOff"}}, "CrashLoopBackOff"),
    ({"waiting": {"reason": "ErrImagePull"}}, "ErrImagePull"),
    ({"terminated": {"reason": "Completed", "exitCode": 0}}, "Completed"),
    ({"terminated": {"exitCode": 2}}, "ExitCode:2"),
    ({"terminated": {"exitCode": 137, "signal": 9}}, "Signal:9"),
    ({"terminated": {"reason": "OOMKilled", "exitCode": 137}}, "OOMKilled"),
])
def test_row_container_states(state, reason):
    pod = status_pod({"phase": "Running", "containerStatuses": [
        {"name": "kuard", "ready": False, "restartCount": 0, "state": state}]})
    assert cells(pod)[2] == reason


def test_row_completed_but_running_is_not_ready():
    spec = {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "x"}]}
    pod = status_pod({"phase": "Running", "containerStatuses": [
        running("a"), {"name": "b", "ready": False, "state": {"terminated": {"reason": "Completed"}}}]}, spec)
    assert cells(pod)[1:3] == ["1/2", "NotReady"]
    pod["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert cells(pod)[2] == "Running"


def test_row_init_containers():
    spec = {"initContainers": [{"name": "i1", "image": "x"}, {"name": "i2", "image": "x"}]}
    pod = status_pod({"phase": "Pending", "initContainerStatuses": [
        {"name": "i1", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
        {"name": "i2", "state": {"running": {}}}]}, spec)
    assert cells(pod)[2] == "Init:1/2"
    pod["status"]["initContainerStatuses"][1] = {"name": "i2", "restartCount": 4,
                                                  "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                                                  "lastState": {"terminated": {"finishedAt": "2024-01-01T11:59:00Z"}}}
    assert cells(pod)[2:4] == ["Init:CrashLoopBackOff", "4 (60s ago)"]
    pod["status"]["initContainerStatuses"][1] = {"name": "i2", "state": {"terminated": {"exitCode": 3}}}
    assert cells(pod)[2] == "Init:ExitCode:3"
    pod["status"]["initContainerStatuses"][1] = {"name": "i2", "state": {"waiting": {"reason": "PodInitializing"}}}
    assert cells(pod)[2] == "Init:1/2"


def test_row_sidecar_counts_as_container():
    spec = {"initContainers": [{"name": "side", "image": "x", "restartPolicy": "Always"}]}
    pod = status_pod({"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                      "initContainerStatuses": [{"name": "side", "started": True, "ready": True,
                                                 "state": {"running": {}}}],
                      "containerStatuses": [running()]}, spec)
    assert cells(pod)[1:3] == ["2/2", "Running"]


def test_row_terminating_and_unknown():
    pod = status_pod({"phase": "Running", "containerStatuses": [running()]},
                     meta_extra={"deletionTimestamp": "2024-01-01T11:59:00Z"})
    assert cells(pod)[2] == "Terminating"
    pod["status"]["reason"] = "NodeLost"
    assert cells(pod)[2] == "Unknown"
    pod["status"] = {"phase": "Succeeded", "reason": ""}
    assert cells(pod)[2] == "Succeeded"


def test_row_status_reason_and_gates():
    pod = status_pod({"phase": "Failed", "reason": "Evicted", "conditions": [{"type": "g1", "status": "True"}]},
                     {"readinessGates": [{"conditionType": "g1"}, {"conditionType": "g2"}]})
    assert cells(pod)[2] == "Evicted"
    assert cells(pod)[8] == "1/2"
    pod["status"]["conditions"].append({"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"})
    pod["status"]["phase"], pod["status"]["reason"] = "Pending", ""
    assert cells(pod)[2] == "SchedulingGated"


@pytest.mark.parametrize("secs,out", [(-5, "<invalid>"), (-1, "0s"), (0, "0s"), (119, "119s"), (120, "2m"),
                                      (150, "2m30s"), (600, "10m"), (3 * 3600, "3h"), (3 * 3600 + 60, "3h1m"),
                                      (10 * 3600, "10h"), (50 * 3600, "2d2h"), (9 * 86400, "9d"),
                                      (800 * 86400, "2y70d"), (10 * 365 * 86400, "10y")])
def test_human_duration(secs, out):
    assert human_duration(secs) == out


def test_resource_claims_cannot_be_had_without_dra():
    """No resource.k8s.io kinds are served: the scheduler's DynamicResources PreEnqueue and
    the kubelet's PrepareResources refuse a pod with claims, with upstream's errors."""
    from kubelite.kinds.podutil import resource_claim_error
    pod = kuard(resourceClaims=[{"name": "gpu", "resourceClaimName": "gpu-claim"}])
    assert resource_claim_error(kuard()) is None
    assert resource_claim_error(pod) == 'resourceclaim.resource.k8s.io "gpu-claim" not found'
    assert resource_claim_error(pod, kubelet=True) == (
        'failed to fetch ResourceClaim gpu-claim referenced by pod kuard: resourceclaims.resource.k8s.io '
        '"gpu-claim" not found')
    tpl = kuard(resourceClaims=[{"name": "gpu", "resourceClaimTemplateName": "t"}])
    assert resource_claim_error(tpl) == 'pod "default/kuard": ResourceClaim not created yet'
    assert resource_claim_error(tpl, kubelet=True) == (
        'prepare resource claim: pod "default/kuard": ResourceClaim not created yet')


def test_scheduling_gates_set_the_scheduling_gated_condition():
    pod = created(kuard(schedulingGates=[{"name": "example.com/wait"}]))
    (cond,) = pod["status"]["conditions"]
    assert {k: cond[k] for k in ("type", "status", "reason", "message")} == {
        "type": "PodScheduled", "status": "False", "reason": "SchedulingGated",
        "message": "Scheduling is blocked due to non-empty scheduling gates"}
    assert "conditions" not in created(kuard())["status"]
