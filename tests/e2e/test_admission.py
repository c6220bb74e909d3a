"""Admission with the real kubectl: ServiceAccount, PodSecurity, ResourceQuota, LimitRange."""

from __future__ import annotations

import json

import pytest

from tests.e2e.harness import ServerProcess, wait_until


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = ServerProcess(tmp_path_factory.mktemp("admission") / "data").start()
    yield s
    s.stop()


def test_run_right_after_create_namespace(srv):
    srv.kubectl("create", "namespace", "fresh")
    srv.kubectl("-n", "fresh", "run", "p", "--image=busybox")
    pod = json.loads(srv.kubectl("-n", "fresh", "get", "pod", "p", "-o", "json").stdout)
    assert pod["spec"]["serviceAccountName"] == "default"


def test_missing_service_account(srv):
    r = srv.kubectl("run", "nosa", "--image=busybox", "--overrides",
                    '{"spec":{"serviceAccountName":"ghost"}}', check=False)
    assert 'pods "nosa" is forbidden: error looking up service account default/ghost: serviceaccount "ghost" not found' \
        in r.stderr


def test_restricted_namespace_refuses_privileged_pod(srv):
    srv.kubectl("create", "namespace", "locked")
    srv.kubectl("label", "namespace", "locked", "pod-security.kubernetes.io/enforce=restricted")
    r = srv.kubectl("-n", "locked", "apply", "-f", "-", check=False, input="""
apiVersion: v1
kind: Pod
metadata: {name: priv}
spec:
  containers:
  - name: c
    image: busybox
    securityContext: {privileged: true}
""")
    assert ('pods "priv" is forbidden: violates PodSecurity "restricted:latest": privileged (container "c" must not '
            'set securityContext.privileged=true), allowPrivilegeEscalation != false (container "c" must set '
            'securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "c" must set '
            'securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "c" must set '
            'securityContext.runAsNonRoot=true), seccompProfile (pod or container "c" must set '
            'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")') in r.stderr
    ok = srv.kubectl("-n", "locked", "apply", "-f", "-", check=False, input="""
apiVersion: v1
kind: Pod
metadata: {name: fine}
spec:
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: c
    image: busybox
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
""")
    assert ok.returncode == 0, ok.stderr


def _quota_counted(srv, ns: str, name: str) -> bool:
    """The quota controller has computed the quota's status (until then admission refuses with
    "status unknown for quota", as upstream)."""
    p = srv.kubectl("-n", ns, "get", "quota", name, "-o", "json", check=False)
    return p.returncode == 0 and "used" in (json.loads(p.stdout).get("status") or {})


def test_resource_quota_refuses_pod_over_quota(srv):
    srv.kubectl("create", "namespace", "q")
    srv.kubectl("-n", "q", "create", "quota", "q", "--hard=pods=2")
    wait_until(lambda: _quota_counted(srv, "q", "q"), 10, 0.1, "quota status")
    srv.kubectl("-n", "q", "run", "a", "--image=busybox")
    srv.kubectl("-n", "q", "run", "b", "--image=busybox")
    r = srv.kubectl("-n", "q", "run", "c", "--image=busybox", check=False)
    assert 'pods "c" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2' in r.stderr
    wait_until(lambda: "pods: 2/2" in srv.kubectl("-n", "q", "get", "quota", "q").stdout, 10, 0.2, "quota status")


def test_concurrent_creates_cannot_exceed_a_quota(srv):
    """20 pods created at once against pods=10: admission charges the quota with a
    compare-and-swap, so exactly 10 get in; the rest hear upstream's 403."""
    import asyncio

    from kubelite.api import errors
    from kubelite.client.api import Client

    srv.kubectl("create", "namespace", "race")
    srv.kubectl("-n", "race", "create", "quota", "ten", "--hard=pods=10,count/configmaps=100")
    wait_until(lambda: _quota_counted(srv, "race", "ten"), 10, 0.1, "quota status")

    async def go() -> list[object]:
        async with Client.from_kubeconfig(srv.kubeconfig, limit=40) as c:
            async def one(i: int) -> object:
                pod = {"metadata": {"name": f"p{i}"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
                try:
                    return await c.create("v1", "pods", pod, namespace="race")
                except errors.StatusError as exc:
                    return exc
            return await asyncio.gather(*(one(i) for i in range(20)))

    results = asyncio.run(go())
    refused = [r for r in results if isinstance(r, errors.StatusError)]
    assert len(results) - len(refused) == 10
    assert all(r.code == 403 and "exceeded quota: ten, requested: pods=1, used: pods=10, limited: pods=10"
               in r.message for r in refused), [r.message for r in refused]
    pods = json.loads(srv.kubectl("-n", "race", "get", "pods", "-o", "json").stdout)["items"]
    assert len(pods) == 10
    wait_until(lambda: "pods: 10/10" in srv.kubectl("-n", "race", "get", "quota", "ten").stdout, 10, 0.2,
               "quota status recounted")


def test_limit_range_fills_defaults(srv):
    srv.kubectl("create", "namespace", "lr")
    srv.kubectl("-n", "lr", "apply", "-f", "-", input="""
apiVersion: v1
kind: LimitRange
metadata: {name: defaults}
spec:
  limits:
  - type: Container
    default: {cpu: 500m, memory: 128Mi}
    defaultRequest: {cpu: 100m, memory: 64Mi}
    max: {cpu: "1"}
""")
    srv.kubectl("-n", "lr", "run", "p", "--image=busybox")
    pod = json.loads(srv.kubectl("-n", "lr", "get", "pod", "p", "-o", "json").stdout)
    res = pod["spec"]["containers"][0]["resources"]
    assert res == {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}}
    assert pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == \
        "LimitRanger plugin set: cpu, memory request for container p; cpu, memory limit for container p"
    r = srv.kubectl("-n", "lr", "run", "big", "--image=busybox", "--overrides",
                    '{"spec":{"containers":[{"name":"big","image":"busybox","resources":{"limits":{"cpu":"2"}}}]}}',
                    check=False)
    assert 'pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2' in r.stderr


def test_priority_classes(srv):
    rows = srv.kubectl("get", "priorityclasses").stdout.splitlines()
    assert rows[0].split() == ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
    names = {r.split()[0]: r.split()[1] for r in rows[1:]}
    assert names == {"system-cluster-critical": "2000000000", "system-node-critical": "2000001000"}
    srv.kubectl("create", "namespace", "prio")
    srv.kubectl("-n", "prio", "run", "crit", "--image=busybox", "--overrides",
                '{"spec":{"priorityClassName":"system-node-critical"}}')
    pod = json.loads(srv.kubectl("-n", "prio", "get", "pod", "crit", "-o", "json").stdout)
    assert pod["spec"]["priority"] == 2000001000 and pod["spec"]["preemptionPolicy"] == "PreemptLowerPriority"
    r = srv.kubectl("-n", "prio", "run", "ghost", "--image=busybox", "--overrides",
                    '{"spec":{"priorityClassName":"no-such-class"}}', check=False)
    assert 'pods "ghost" is forbidden: no PriorityClass with name no-such-class was found' in r.stderr
    srv.kubectl("create", "priorityclass", "batch-low", "--value=10", "--global-default=true",
                "--preemption-policy=Never")
    srv.kubectl("-n", "prio", "run", "plain", "--image=busybox")
    pod = json.loads(srv.kubectl("-n", "prio", "get", "pod", "plain", "-o", "json").stdout)
    assert (pod["spec"]["priorityClassName"], pod["spec"]["priority"], pod["spec"]["preemptionPolicy"]) == \
        ("batch-low", 10, "Never")
    two = srv.kubectl("create", "priorityclass", "another", "--value=20", "--global-default=true", check=False)
    assert "PriorityClass batch-low is already marked as default. Only one default can exist" in two.stderr
    sys_bad = srv.kubectl("create", "priorityclass", "system-mine", "--value=5", check=False)
    assert "priority class names with 'system-' prefix are reserved for system use only" in sys_bad.stderr
    srv.kubectl("delete", "priorityclass", "batch-low")
