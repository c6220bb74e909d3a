"""Unit tests of the agent's pure parts: back-off, $(VAR) expansion, cgroup arithmetic,
getPhase, CNI config, runAsNonRoot."""

from __future__ import annotations

import pytest

from kubelite.agent import cni
from kubelite.agent.backoff import Backoff
from kubelite.agent.cgroups import (
    milli_cpu_to_quota,
    milli_cpu_to_shares,
    pod_cgroup_name,
    pod_resource_config,
)
from kubelite.agent.crispec import ContainerConfigError, verify_run_as_non_root
from kubelite.agent.podenv import expand, make_environment
from kubelite.agent.status import get_phase


def test_backoff_doubles_caps_and_resets():
    now = [1000.0]
    b = Backoff(10, 300, clock=lambda: now[0])
    assert [b.next("k") for _ in range(7)] == [10, 20, 40, 80, 160, 300, 300]
    assert b.is_in_backoff_since("k", now[0] - 100)
    assert not b.is_in_backoff_since("k", now[0] - 301)
    now[0] += 601  # 10 minutes without a step: start over
    assert b.next("k") == 10


def test_expand_like_upstream():
    env = {"A": "x", "B": "y"}
    assert expand("$(A)-$(B)", env) == "x-y"
    assert expand("$$(A)", env) == "$(A)"
    assert expand("$(C)", env) == "$(C)"
    assert expand("$(A", env) == "$(A"
    assert expand("a$b", env) == "a$b"


async def test_environment_order_and_refs():
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "x"}},
           "spec": {"nodeName": "n1", "serviceAccountName": "default", "containers": []}}
    c = {"name": "c", "resources": {"limits": {"memory": "64Mi"}},
         "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
         "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                 {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                 {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                 {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                 {"name": "GREETING", "value": "hi $(POD) $(CM_k)"}]}

    async def fetch(kind, ns, name):
        return {"data": {"k": "v"}} if kind == "configmaps" and name == "cm" else None

    env = dict(await make_environment(pod, c, fetch, "192.0.2.2", ["10.244.0.5"]))
    assert env == {"CM_k": "v", "POD": "p", "IP": "10.244.0.5", "APP": "x", "MEM": "64", "GREETING": "hi p v"}


def test_cgroup_math():
    assert milli_cpu_to_shares(0) == 2 and milli_cpu_to_shares(1) == 2 and milli_cpu_to_shares(1000) == 1024
    assert milli_cpu_to_quota(500) == 50000 and milli_cpu_to_quota(1) == 1000
    g = {"metadata": {"uid": "u"}, "spec": {"containers": [
        {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}}]}}
    assert pod_cgroup_name(g) == "kubepods/podu"
    cfg = pod_resource_config(g)
    assert (cfg.cpu_shares, cfg.cpu_quota, cfg.memory_limit) == (1024, 100000, 1 << 30)
    b = {"metadata": {"uid": "u"}, "spec": {"containers": [
        {"name": "a", "resources": {"requests": {"cpu": "250m"}}}, {"name": "b"}]}}
    assert pod_cgroup_name(b) == "kubepods/burstable/podu"
    cfg = pod_resource_config(b)
    assert (cfg.cpu_shares, cfg.cpu_quota, cfg.memory_limit) == (256, None, None)
    be = {"metadata": {"uid": "u"}, "spec": {"containers": [{"name": "a"}]}}
    assert pod_cgroup_name(be) == "kubepods/besteffort/podu" and pod_resource_config(be).cpu_shares == 2


def _st(state, last=None):
    return {"state": state, "lastState": last or {}}


@pytest.mark.parametrize("policy,states,expect", [
    ("Always", [_st({"running": {}})], "Running"),
    ("Always", [_st({"waiting": {"reason": "ContainerCreating"}})], "Pending"),
    ("Always", [_st({"waiting": {"reason": "CrashLoopBackOff"}}, {"terminated": {"exitCode": 1}})], "Running"),
    ("Never", [_st({"terminated": {"exitCode": 0}})], "Succeeded"),
    ("Never", [_st({"terminated": {"exitCode": 2}})], "Failed"),
    ("OnFailure", [_st({"terminated": {"exitCode": 0}})], "Succeeded"),
    ("OnFailure", [_st({"terminated": {"exitCode": 1}})], "Running"),
])
def test_get_phase(policy, states, expect):
    assert get_phase({"spec": {"restartPolicy": policy}}, [], states, False) == expect


def test_conflist_and_cidr():
    cidr = cni.default_pod_cidr("node-a")
    assert cidr.startswith("10.244.") and cidr == cni.default_pod_cidr("node-a")
    conf = cni.conflist(cidr, "/d")
    bridge = conf["plugins"][0]
    assert bridge["bridge"] == "kubelite0" and bridge["isGateway"] and bridge["ipMasq"] and bridge["hairpinMode"]
    assert bridge["ipam"]["ranges"][0][0]["subnet"] == cidr and bridge["ipam"]["dataDir"] == "/d/cni/ipam"
    assert conf["plugins"][1] == {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True}


def test_run_as_non_root():
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, "spec": {}}
    c = {"name": "c", "securityContext": {"runAsNonRoot": True}}
    with pytest.raises(ContainerConfigError, match="container has runAsNonRoot and image will run as root"):
        verify_run_as_non_root(pod, c, 0, "")
    verify_run_as_non_root(pod, c, 1000, "")
    verify_run_as_non_root(pod, dict(c, securityContext={"runAsNonRoot": True, "runAsUser": 1}), 0, "")
