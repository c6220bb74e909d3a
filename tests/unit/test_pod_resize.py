"""In-place resize: the pods/resize strategy and validation (ValidatePodResize), and the agent's
allocation decisions (Infeasible / Deferred messages, actual resources from the cgroup, the
checkpoint, which changes need a restart)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from kubelite.agent import allocation as al
from kubelite.agent.cgroups import ResourceConfig
from kubelite.kinds.pods import POD
from kubelite.kinds.podutil import compute_qos_class, pod_requests


def _pod(res: dict | None = None, **spec: Any) -> dict:
    c: dict[str, Any] = {"name": "c", "image": "busybox", "terminationMessagePath": "/dev/termination-log",
                         "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}
    if res is not None:
        c["resources"] = res
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "generation": 1, "resourceVersion": "5"},
           "spec": {"containers": [c], "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                    "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler", **spec},
           "status": {"phase": "Running", "qosClass": "Burstable"}}
    pod["status"]["qosClass"] = compute_qos_class(pod)
    return pod


BURST = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}}


def _resize(old: dict, new: dict) -> tuple[dict, list[str]]:
    new = copy.deepcopy(new)
    st = POD.strategy
    st.prepare_for_subresource_update("resize", new, old)
    return new, [str(e) for e in st.validate_subresource_update("resize", new, old)]


def test_only_resources_are_taken_and_generation_moves():
    old = _pod(BURST)
    req = copy.deepcopy(old)
    c = req["spec"]["containers"][0]
    c["resources"]["limits"]["cpu"] = "400m"
    c["image"] = "other"  # not a resize: dropped
    req["metadata"]["labels"] = {"x": "y"}
    new, errs = _resize(old, req)
    assert errs == []
    assert new["spec"]["containers"][0]["image"] == "busybox"
    assert new["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "400m"
    assert "labels" not in new["metadata"] and new["metadata"]["generation"] == 2
    same, errs = _resize(old, old)
    assert errs == [] and same["metadata"]["generation"] == 1


def test_resize_validation_messages():
    old = _pod(BURST)

    def with_res(res: dict) -> dict:
        p = copy.deepcopy(old)
        p["spec"]["containers"][0]["resources"] = res
        return p

    _, errs = _resize(old, with_res({"requests": {"cpu": "200m", "memory": "64Mi"},
                                     "limits": {"cpu": "200m", "memory": "64Mi"}}))
    assert errs == ['spec: Invalid value: "Burstable": Pod QOS Class may not change as a result of resizing']
    _, errs = _resize(old, with_res({"requests": {"cpu": "100m"}, "limits": {"cpu": "200m", "memory": "64Mi"}}))
    assert errs == ["spec.containers[0].resources.requests: Forbidden: resource requests cannot be removed"]
    _, errs = _resize(old, with_res({"requests": {"cpu": "100m", "memory": "64Mi"},
                                     "limits": {"cpu": "200m", "memory": "64Mi", "ephemeral-storage": "1Gi"}}))
    assert errs == ["spec: Forbidden: only cpu and memory resources are mutable"]
    _, errs = _resize(old, with_res({"requests": {"cpu": "300m", "memory": "64Mi"},
                                     "limits": {"cpu": "200m", "memory": "64Mi"}}))
    assert errs == ['spec.containers[0].resources.requests: Invalid value: "300m": must be less than or equal to '
                    'cpu limit of 200m']
    # memory limit decreases are allowed since 1.34
    _, errs = _resize(old, with_res({"requests": {"cpu": "100m", "memory": "32Mi"},
                                     "limits": {"cpu": "200m", "memory": "32Mi"}}))
    assert errs == []
    pl = _pod(BURST, resources={"limits": {"cpu": "1"}})
    _, errs = _resize(pl, pl)
    assert errs == ["Forbidden: pods with pod-level resources cannot be resized"]
    running = _pod(BURST)
    running["status"]["containerStatuses"] = [{"name": "c", "state": {"running": {}}}]
    _, errs = _resize(running, running)
    assert errs == ["spec: Forbidden: Pod running on node without support for resize"]


def test_init_containers_only_sidecars_resize():
    old = _pod(BURST, initContainers=[
        {"name": "side", "image": "b", "restartPolicy": "Always", "resources": {"requests": {"cpu": "10m"}},
         "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
         "imagePullPolicy": "IfNotPresent"},
        {"name": "init", "image": "b", "resources": {"requests": {"cpu": "10m"}},
         "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
         "imagePullPolicy": "IfNotPresent"}])
    req = copy.deepcopy(old)
    req["spec"]["initContainers"][0]["resources"]["requests"]["cpu"] = "20m"
    req["spec"]["initContainers"][1]["resources"]["requests"]["cpu"] = "20m"
    new, errs = _resize(old, req)
    assert errs == []
    assert new["spec"]["initContainers"][0]["resources"]["requests"]["cpu"] == "20m"
    assert new["spec"]["initContainers"][1]["resources"]["requests"]["cpu"] == "10m"  # not a sidecar: dropped


def test_check_resize_infeasible_and_deferred():
    cap = {"cpu": "2", "memory": "4Gi"}
    big = _pod({"requests": {"cpu": "3"}})
    assert al.check_resize(big, [], cap) == (
        "Infeasible", "Node didn't have enough capacity: cpu, requested: 3000, capacity: 2000")
    mem = _pod({"requests": {"cpu": "3", "memory": "5Gi"}})
    assert al.check_resize(mem, [], cap)[1] == (
        "Node didn't have enough capacity: memory, requested: 5368709120, capacity: 4294967296")
    other = _pod({"requests": {"cpu": "1500m"}})
    want = _pod({"requests": {"cpu": "1"}})
    assert al.check_resize(want, [other], cap) == (
        "Deferred", "Node didn't have enough resource: cpu, requested: 1000, used: 1500, capacity: 2000")
    assert al.check_resize(_pod({"requests": {"cpu": "500m"}}), [other], cap) == ("", "")


def test_actual_resources_from_the_cgroup():
    alloc = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}}
    cfg = ResourceConfig(cpu_shares=409, cpu_quota=40000, cpu_period=100000, memory_limit=96 * 1024 * 1024)
    assert al.actual_resources(alloc, cfg) == {"requests": {"cpu": "400m", "memory": "64Mi"},
                                               "limits": {"cpu": "400m", "memory": "96Mi"}}
    one = ResourceConfig(cpu_shares=1024, cpu_quota=-1, cpu_period=100000, memory_limit=-1)
    assert al.actual_resources({"requests": {"cpu": "1"}}, one) == {"requests": {"cpu": "1"}}
    assert al.actual_resources({}, one) == {}


def test_restart_policy_per_changed_resource():
    c = {"name": "c", "resizePolicy": [{"resourceName": "memory", "restartPolicy": "RestartContainer"}]}
    old = {"requests": {"cpu": "100m", "memory": "64Mi"}}
    assert al.changed_resources(old, {"requests": {"cpu": "0.1", "memory": "64Mi"}}) == []
    assert not al.needs_restart(c, old, {"requests": {"cpu": "200m", "memory": "64Mi"}})
    assert al.needs_restart(c, old, {"requests": {"cpu": "200m", "memory": "96Mi"}})
    assert al.needs_restart(c, old, {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "1Gi"}})


def test_allocation_checkpoint_and_allocated_pod(tmp_path: Path):
    path = tmp_path / al.STATE_FILE
    m = al.AllocationManager(path)
    pod = _pod(BURST)
    m.set_allocated(pod)
    m.acknowledge("cid", al.resources_of(pod["spec"]["containers"][0]))
    resized = copy.deepcopy(pod)
    resized["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "400m"
    again = al.AllocationManager(path)  # a restarted agent
    assert again.resize_pending(resized) and not again.resize_pending(pod)
    assert again.allocated_pod(resized)["spec"]["containers"][0]["resources"]["limits"]["cpu"] == "200m"
    assert again.acknowledged("cid") == BURST
    again.retain(set(), set())
    assert not al.AllocationManager(path).is_allocated("u1")


def test_resize_event_message_and_scheduler_counts_the_largest():
    pod = _pod(BURST)
    assert al.resize_message("Pod resize started", pod, 2) == (
        'Pod resize started: {"containers":[{"name":"c","resources":{"limits":{"cpu":"200m","memory":"64Mi"},'
        '"requests":{"cpu":"100m","memory":"64Mi"}}}],"generation":2}')
    pod["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "50m"  # a resize down, not yet done
    pod["status"]["containerStatuses"] = [{"name": "c", "allocatedResources": {"cpu": "100m"},
                                           "resources": {"requests": {"cpu": "100m"}}}]
    assert pod_requests(pod, use_status=True)["cpu"] * 1000 == 100
    assert pod_requests(pod)["cpu"] * 1000 == 50


def test_a_resize_is_not_a_new_container_definition():
    from kubelite.agent import crispec

    c = {"name": "c", "image": "busybox", "resources": {"limits": {"cpu": "200m"}}}
    resized = {**c, "resources": {"limits": {"cpu": "400m"}}}
    assert crispec.container_hash(c) == crispec.container_hash(resized)
    assert crispec.same_definition(crispec.container_hash(c), resized)
    assert not crispec.same_definition(crispec.container_hash(c), {**c, "image": "other"})
    # containers started before in-place resize carry the old hash: still the same definition
    assert crispec.same_definition(crispec.legacy_container_hash(c), c)
