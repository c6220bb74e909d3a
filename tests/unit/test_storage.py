"""PersistentVolume/Claim/StorageClass strategies, claim-to-volume matching and the scheduler's
VolumeBinding decisions, as pure functions."""

from __future__ import annotations

import copy

from kubelite.admission.storage import default_class
from kubelite.controllers.localpath import default_storage_class, helper_pod, provisioned_volume
from kubelite.kinds.storage import PERSISTENTVOLUME, PERSISTENTVOLUMECLAIM, STORAGECLASS, access_modes_string
from kubelite.scheduler import volumebinding as vb


def _claim(name="c", size="1Gi", modes=("ReadWriteOnce",), cls="manual", **spec):
    return {"metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"},
            "spec": {"accessModes": list(modes), "resources": {"requests": {"storage": size}},
                     "storageClassName": cls, **spec}}


def _pv(name, size, modes=("ReadWriteOnce",), cls="manual", phase="Available", labels=None, **spec):
    return {"metadata": {"name": name, "labels": labels or {}},
            "spec": {"capacity": {"storage": size}, "accessModes": list(modes), "storageClassName": cls,
                     "hostPath": {"path": f"/tmp/{name}"}, **spec},
            "status": {"phase": phase}}


def _msgs(errs):
    return [str(e) for e in errs]


def test_pvc_validation_reports_every_cause_in_upstream_order():
    s = PERSISTENTVOLUMECLAIM.strategy
    bad = {"metadata": {"name": "x"}, "spec": {
        "accessModes": ["Sometimes", "ReadWriteOncePod", "ReadWriteOnce"],
        "selector": {"matchExpressions": [{"key": "a", "operator": "Near"}]},
        "resources": {"requests": {"storage": "0"}}, "storageClassName": "Not_A_Name", "volumeMode": "Tape"}}
    s.default(bad)
    msgs = _msgs(s.validate(bad))
    assert msgs[:4] + msgs[5:] == [
        'spec.selector.matchExpressions[0].operator: Invalid value: "Near": not a valid selector operator',
        'spec.accessModes: Unsupported value: "Sometimes": supported values: "ReadOnlyMany", "ReadWriteMany", '
        '"ReadWriteOnce", "ReadWriteOncePod"',
        "spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes",
        'spec.resources[storage]: Invalid value: "0": must be greater than zero',
        'spec.volumeMode: Unsupported value: "Tape": supported values: "Block", "Filesystem"',
    ]
    assert msgs[4].startswith('spec.storageClassName: Invalid value: "Not_A_Name": a lowercase RFC')
    empty = {"metadata": {"name": "x"}, "spec": {}}
    assert _msgs(s.validate(empty)) == ["spec.accessModes: Required value: at least 1 access mode is required",
                                        "spec.resources[storage]: Required value"]


def test_pvc_spec_is_immutable_but_for_volume_name_and_growth():
    s = PERSISTENTVOLUMECLAIM.strategy
    old = _claim()
    s.default(old)
    new = copy.deepcopy(old)
    new["spec"]["volumeName"] = "pv1"
    assert s.validate_update(new, old) == []
    grown = copy.deepcopy(new)
    grown["spec"]["resources"]["requests"]["storage"] = "2Gi"
    grown["status"] = {"phase": "Bound"}
    assert s.validate_update(grown, new) == []
    changed = copy.deepcopy(new)
    changed["spec"]["accessModes"] = ["ReadWriteMany"]
    errs = _msgs(s.validate_update(changed, new))
    assert len(errs) == 1 and errs[0].startswith(
        "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName "
        "for bound claims")


def test_pv_defaults_and_validation():
    s = PERSISTENTVOLUME.strategy
    pv = _pv("a", "1Gi")
    s.default(pv)
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain" and pv["spec"]["volumeMode"] == "Filesystem"
    assert s.validate(pv) == []
    bad = {"metadata": {"name": "b"}, "spec": {"capacity": {"storage": "-1"}, "local": {"path": "/x"},
                                               "nfs": {"server": "s", "path": "/p"},
                                               "persistentVolumeReclaimPolicy": "Shred"}}
    assert _msgs(s.validate(bad)) == [
        "spec.accessModes: Required value",
        'spec.capacity[storage]: Invalid value: "-1": must be greater than zero',
        'spec.persistentVolumeReclaimPolicy: Unsupported value: "Shred": supported values: "Delete", "Recycle", '
        '"Retain"',
        "spec.local: Forbidden: may not specify more than 1 volume type",
    ]
    only_local = {"metadata": {"name": "c"}, "spec": {"capacity": {"storage": "1"}, "accessModes": ["ReadWriteOnce"],
                                                      "local": {"path": "/x"}}}
    assert _msgs(s.validate(only_local)) == ["spec.nodeAffinity: Required value: Local volume requires node affinity"]


def test_storage_class_defaults_validation_and_printing():
    s = STORAGECLASS.strategy
    sc = {"metadata": {"name": "fast"}, "provisioner": "example.com/fast"}
    s.default(sc)
    assert sc["reclaimPolicy"] == "Delete" and sc["volumeBindingMode"] == "Immediate"
    assert s.validate(sc) == []
    changed = dict(sc, reclaimPolicy="Retain", parameters={"a": "b"})
    assert _msgs(s.validate_update(changed, sc)) == ["parameters: Forbidden: updates to parameters are forbidden.",
                                                     "reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden."]
    local = default_storage_class()
    assert s.row(local)[:5] == ["local-path (default)", "rancher.io/local-path", "Delete", "WaitForFirstConsumer",
                                "false"]
    assert access_modes_string(["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"]) == "RWO,RWX"


def test_matching_picks_the_smallest_fitting_volume():
    claim = _claim(size="500Mi", selector={"matchLabels": {"tier": "gold"}})
    vols = [_pv("big", "2Gi", labels={"tier": "gold"}), _pv("small", "1Gi", labels={"tier": "gold"}),
            _pv("tiny", "100Mi", labels={"tier": "gold"}), _pv("silver", "600Mi", labels={"tier": "silver"}),
            _pv("other-class", "600Mi", cls="x", labels={"tier": "gold"}),
            _pv("rwx-only", "600Mi", modes=("ReadWriteMany",), labels={"tier": "gold"}),
            _pv("pending", "600Mi", phase="Pending", labels={"tier": "gold"})]
    assert vb.find_matching_volume(claim, vols)["metadata"]["name"] == "small"
    assert vb.find_matching_volume(claim, vols, excluded={"small"})["metadata"]["name"] == "big"
    assert vb.find_matching_volume(claim, vols, delay_binding=True) is None  # the scheduler binds those
    prebound = _pv("mine", "1Gi", cls="", claimRef={"namespace": "default", "name": "c"})
    assert vb.find_matching_volume(claim, [*vols, prebound], delay_binding=True)["metadata"]["name"] == "mine"


def test_volume_binding_filter_and_prefilter():
    node_a = {"metadata": {"name": "a", "labels": {"kubernetes.io/hostname": "a"}}}
    node_b = {"metadata": {"name": "b", "labels": {"kubernetes.io/hostname": "b"}}}
    classes = {"local-path": default_storage_class(), "now": {"metadata": {"name": "now"}, "provisioner": "x",
                                                              "volumeBindingMode": "Immediate"}}
    pod = {"metadata": {"name": "p", "namespace": "default"},
           "spec": {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]}}
    assert vb.pre_filter(pod, {}, {}, classes) == (None, 'persistentvolumeclaim "c" not found')
    immediate = _claim(cls="now")
    assert vb.pre_filter(pod, {("default", "c"): immediate}, {}, classes)[1] == vb.ERR_UNBOUND_IMMEDIATE
    waiting = _claim(cls="local-path")
    state, msg = vb.pre_filter(pod, {("default", "c"): waiting}, {}, classes)
    assert msg == "" and state is not None
    assert state.decide(node_a) == (None, [], [waiting])  # provisioned on the chosen node
    pv = provisioned_volume(waiting, default_storage_class(), "a", "/var/lib/kubelite/storage")
    assert pv["metadata"]["name"] == "pvc-uid-c" and pv["spec"]["hostPath"] == {
        "path": "/var/lib/kubelite/storage/pvc-uid-c_default_c", "type": "DirectoryOrCreate"}
    bound = dict(waiting, metadata={**waiting["metadata"], "annotations": {vb.ANN_BIND_COMPLETED: "yes"}},
                 spec={**waiting["spec"], "volumeName": "pvc-uid-c"})
    state, _ = vb.pre_filter(pod, {("default", "c"): bound}, {"pvc-uid-c": pv}, classes)
    assert state is not None
    assert state.decide(node_a)[0] is None and state.decide(node_b)[0] == vb.ERR_NODE_CONFLICT
    helper = helper_pod(pv, "a")
    assert helper["spec"]["containers"][0]["command"] == ["rm", "-rf", "--", "/data/pvc-uid-c_default_c"]
    assert helper["spec"]["volumes"][0]["hostPath"]["path"] == "/var/lib/kubelite/storage"


def test_default_class_is_the_newest_default():
    def sc(name, ts, default=True):
        return {"metadata": {"name": name, "creationTimestamp": ts,
                             "annotations": {"storageclass.kubernetes.io/is-default-class": str(default).lower()}}}

    assert default_class([sc("a", "2026-01-01T00:00:00Z"), sc("b", "2026-01-02T00:00:00Z"),
                          sc("c", "2026-01-03T00:00:00Z", False)])["metadata"]["name"] == "b"
    assert default_class([sc("c", "2026-01-03T00:00:00Z", False)]) is None


class _Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str, str]] = []

    async def record(self, obj, type_, reason, message, related=None, action=""):
        self.seen.append((obj["metadata"]["name"], type_, reason, message))


async def test_pv_controller_binds_releases_and_fails_static_delete(tmp_path):
    from kubelite.apiserver.registry import DeleteOptions, WriteOptions
    from kubelite.apiserver.stores import Stores
    from kubelite.controllers.persistentvolume import PersistentVolumeController
    from kubelite.kinds.registry import default_registry
    from kubelite.store.sqlite import SQLiteStore

    w = WriteOptions(field_manager="test")
    kv = SQLiteStore(str(tmp_path / "db"), compact_interval=0)
    await kv.start()
    try:
        stores = Stores.build(default_registry(), kv)
        pvs, pvcs = stores.get("", "persistentvolumes"), stores.get("", "persistentvolumeclaims")
        events = _Events()
        ctrl = PersistentVolumeController(stores, events)  # type: ignore[arg-type]

        async def sync() -> None:
            for _ in range(3):  # a few rounds: each write is seen by the next sync, as the informers would
                for inf in (ctrl.claims, ctrl.volumes, ctrl.classes, ctrl.pods):
                    await inf._list()
                for pv in ctrl.volumes.list():
                    await ctrl.sync_volume(pv["metadata"]["name"])
                for c in ctrl.claims.list():
                    await ctrl.sync_claim(f"default/{c['metadata']['name']}")

        for name, size, policy in (("big", "5Gi", "Retain"), ("small", "2Gi", "Delete")):
            v = _pv(name, size)
            del v["status"]
            v["spec"]["persistentVolumeReclaimPolicy"] = policy
            await pvs.create("", v, w)
        c = _claim(size="1Gi")
        del c["metadata"]["uid"]
        await pvcs.create("default", c, w)
        await pvcs.create("default", _claim("lonely", cls="")
                          | {"metadata": {"name": "lonely", "namespace": "default"}}, w)
        await sync()
        claim = await pvcs.get("default", "c")
        assert claim["spec"]["volumeName"] == "small" and claim["status"]["phase"] == "Bound"
        assert claim["status"]["capacity"] == {"storage": "2Gi"}
        small = await pvs.get("", "small")
        assert small["status"]["phase"] == "Bound" and small["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
        assert (await pvs.get("", "big"))["status"]["phase"] == "Available"
        assert ("lonely", "Normal", "FailedBinding",
                "no persistent volumes available for this claim and no storage class is set") in events.seen
        await pvcs.delete("default", "c", DeleteOptions())
        await sync()
        small = await pvs.get("", "small")
        assert small["status"]["phase"] == "Failed"  # Delete, but no provisioner made it: nothing can delete it
        assert ("small", "Warning", "VolumeFailedDelete", 'error getting deleter volume plugin for volume "small": '
                                                           "no deletable volume plugin matched") in events.seen
    finally:
        await kv.close()


def test_read_write_once_pod_claims_are_used_by_one_pod():
    claim = _claim(modes=("ReadWriteOncePod",))
    claims = {("default", "c"): claim}

    def pod(name, node="", phase="Running"):
        return {"metadata": {"name": name, "namespace": "default", "uid": name},
                "spec": {"nodeName": node, "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "c"}}]},
                "status": {"phase": phase}}

    new = pod("new")
    assert not vb.read_write_once_pod_conflict(new, claims, [new, pod("pending")])
    assert vb.read_write_once_pod_conflict(new, claims, [new, pod("running", "n1")])
    assert vb.read_write_once_pod_conflict(new, claims, [new, pod("assumed")], {"assumed"})
    assert not vb.read_write_once_pod_conflict(new, claims, [new, pod("done", "n1", "Succeeded")])
    assert not vb.read_write_once_pod_conflict(new, {("default", "c"): _claim()}, [new, pod("running", "n1")])
