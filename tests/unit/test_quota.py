"""Quota arithmetic and admission decisions (plugin/pkg/admission/resourcequota) over fake quotas."""

from __future__ import annotations

from decimal import Decimal

import pytest

from kubelite.admission import quota
from kubelite.admission.resourcequota import ResourceQuotaAdmission
from kubelite.api import errors
from kubelite.apiserver.admission import CREATE, Attributes
from kubelite.kinds.configmaps import CONFIGMAP
from kubelite.kinds.pods import POD


def pod(name: str = "p", **res) -> dict:
    return {"metadata": {"name": name, "namespace": "ns"},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": res}],
                     "initContainers": [{"name": "side", "image": "i", "restartPolicy": "Always",
                                         "resources": {"requests": {"cpu": "100m"}}}],
                     "overhead": {"cpu": "50m"}}}


def q(hard: dict, used: dict | None = None, name: str = "q") -> dict:
    out = {"metadata": {"name": name, "namespace": "ns", "resourceVersion": "7"}, "spec": {"hard": hard}}
    if used is not None:
        out["status"] = {"hard": hard, "used": used}
    return out


def check(obj: dict, quotas: list[dict], kind=POD) -> list[dict]:
    adm = ResourceQuotaAdmission(stores=None)  # type: ignore[arg-type]
    return adm._check(Attributes(CREATE, kind, "ns", obj["metadata"]["name"], obj, None), quotas)


def test_pod_usage_counts_sidecars_and_overhead_like_the_scheduler():
    u = quota.usage(POD, pod(requests={"cpu": "200m", "memory": "64Mi"}, limits={"memory": "128Mi"}))
    assert u["pods"] == 1 and u["count/pods"] == 1
    assert u["requests.cpu"] == u["cpu"] == Decimal("0.35")  # 200m + 100m sidecar + 50m overhead
    assert u["requests.memory"] == 64 * 2**20 and u["limits.memory"] == 128 * 2**20
    done = pod()
    done["status"] = {"phase": "Succeeded"}
    assert quota.usage(POD, done) == {"count/pods": 1}  # a finished pod keeps only its object count


def test_status_unknown_is_refused():
    with pytest.raises(errors.StatusError) as ei:
        check(pod(), [q({"pods": "2"})])
    assert ei.value.code == 403
    assert ei.value.message == 'pods "p" is forbidden: status unknown for quota: q, resources: pods'


def test_exceeded_and_charged():
    charges = check(pod(), [q({"pods": "2"}, {"pods": "1"})])
    assert charges[0]["status"]["used"] == {"pods": "2"} and charges[0]["metadata"]["resourceVersion"] == "7"
    with pytest.raises(errors.StatusError) as ei:
        check(pod(), [q({"pods": "2"}, {"pods": "2"})])
    assert ei.value.message == ('pods "p" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, '
                                'limited: pods=2')


def test_compute_resources_must_be_named():
    with pytest.raises(errors.StatusError) as ei:
        check(pod(), [q({"limits.memory": "1Gi"}, {"limits.memory": "0"})])
    assert "failed quota: q: must specify limits.memory for: c,side" in ei.value.message


def test_object_counts_of_other_kinds():
    cm = {"metadata": {"name": "cm", "namespace": "ns"}}
    assert check(cm, [q({"pods": "1"}, {"pods": "0"})], CONFIGMAP) == []  # nothing it counts is limited
    charges = check(cm, [q({"count/configmaps": "3", "configmaps": "3"},
                           {"count/configmaps": "1", "configmaps": "1"})], CONFIGMAP)
    assert charges[0]["status"]["used"] == {"count/configmaps": "2", "configmaps": "2"}


def test_a_resize_is_charged_what_it_adds():
    from kubelite.apiserver.admission import UPDATE

    adm = ResourceQuotaAdmission(stores=None)  # type: ignore[arg-type]
    old = pod(requests={"cpu": "200m"}, limits={"cpu": "400m"})
    new = pod(requests={"cpu": "300m"}, limits={"cpu": "400m"})
    quotas = [q({"requests.cpu": "1", "pods": "1"}, {"requests.cpu": "800m", "pods": "1"})]
    charges = adm._check(Attributes(UPDATE, POD, "ns", "p", new, old, "resize"), quotas)
    assert charges[0]["status"]["used"] == {"requests.cpu": "900m", "pods": "1"}  # +100m, no new pod
    bigger = pod(requests={"cpu": "500m"}, limits={"cpu": "400m"})
    with pytest.raises(errors.StatusError) as ei:
        adm._check(Attributes(UPDATE, POD, "ns", "p", bigger, old, "resize"), quotas)
    assert ei.value.message == ('pods "p" is forbidden: exceeded quota: q, requested: requests.cpu=300m, '
                                'used: requests.cpu=800m, limited: requests.cpu=1')
    smaller = pod(requests={"cpu": "100m"}, limits={"cpu": "400m"})
    assert adm._check(Attributes(UPDATE, POD, "ns", "p", smaller, old, "resize"), quotas) == []
