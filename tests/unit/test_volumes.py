"""The node's volume plugins and the kubelet's volume details: no stand-in for a source the
node cannot provide (FailedMount messages, back-off), subPath / subPathExpr, read-only
plugins, fsGroup ownership, emptyDir sizeLimit usage."""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
from pathlib import Path

import pytest

from kubelite.agent import volume_util
from kubelite.agent.volumes import (
    PLUGINS,
    Mounted,
    VolumeError,
    VolumeManager,
    _mounts_under,
    expand_sub_path_expr,
    pod_used_volumes,
)

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="mounts")


def _pod(volumes, mounts=None, uid="uid-1", fs_group=None):
    c = {"name": "c", "volumeMounts": mounts if mounts is not None else
         [{"name": v["name"], "mountPath": f"/m/{v['name']}"} for v in volumes]}
    spec = {"volumes": volumes, "containers": [c]}
    if fs_group is not None:
        spec["securityContext"] = {"fsGroup": fs_group}
    return {"metadata": {"name": "p", "namespace": "ns", "uid": uid}, "spec": spec}


def _fetcher(objs):
    async def fetch(kind, ns, name):
        return objs.get((kind, name))
    return fetch


def _run(coro):
    return asyncio.run(coro)


def test_dispatch_table_has_one_plugin_per_source():
    assert {"emptyDir", "hostPath", "configMap", "secret", "projected", "downwardAPI", "nfs",
            "persistentVolumeClaim"} <= set(PLUGINS)
    assert "iscsi" not in PLUGINS and "csi" not in PLUGINS


def test_unknown_source_is_refused_not_replaced(tmp_path):
    vm = VolumeManager(tmp_path)
    pod = _pod([{"name": "disk", "iscsi": {"targetPortal": "10.0.0.1:3260", "iqn": "iqn.x", "lun": 0}}])
    out = _run(vm.mount_pod(pod, _fetcher({})))
    assert not out.ready and out.unmounted == ["disk"] and "disk" not in out.volumes
    assert out.pod_error_message() == (
        'Unable to attach or mount volumes: unmounted volumes=[disk], unattached volumes=[], failed to process '
        'volumes=[disk]: failed to get Plugin from volumeSpec for volume "disk" err=no volume plugin matched')
    assert not (tmp_path / "pods" / "uid-1" / "volumes").exists()  # no empty directory in its place


def test_unused_volumes_are_not_processed(tmp_path):
    pod = _pod([{"name": "a", "iscsi": {}}, {"name": "b", "emptyDir": {}}], mounts=[{"name": "b", "mountPath": "/b"}])
    assert [v["name"] for v in pod_used_volumes(pod)] == ["b"]
    out = _run(VolumeManager(tmp_path).mount_pod(pod, _fetcher({})))
    assert out.ready and set(out.volumes) == {"b"}


def test_claim_messages_until_bound(tmp_path):
    vm = VolumeManager(tmp_path)
    pod = _pod([{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}])
    out = _run(vm.mount_pod(pod, _fetcher({})))
    assert out.pod_error_message() == (
        "Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[], failed to process "
        'volumes=[data]: error processing PVC ns/c: failed to fetch PVC from API server: persistentvolumeclaims '
        '"c" not found')
    pending = {("persistentvolumeclaims", "c"): {"metadata": {"uid": "u"}, "status": {"phase": "Pending"}}}
    out = _run(vm.mount_pod(pod, _fetcher(pending)))
    assert out.pod_errors == ["error processing PVC ns/c: PVC is not bound"]
    bound = {("persistentvolumeclaims", "c"): {"metadata": {"uid": "u"}, "spec": {"volumeName": "pv1"},
                                               "status": {"phase": "Bound"}}}
    out = _run(vm.mount_pod(pod, _fetcher(bound)))
    assert out.pod_errors == ["error processing PVC ns/c: failed to fetch PV pv1 from API server: "
                              'persistentvolumes "pv1" not found']


def test_block_claims_and_volume_devices_are_refused(tmp_path):
    """createVolumeSpec's volumeMode checks, and no plugin here maps a block device."""
    def objs(mode):
        return {("persistentvolumeclaims", "c"): {"metadata": {"uid": "u"}, "spec": {"volumeName": "pv1"},
                                                  "status": {"phase": "Bound"}},
                ("persistentvolumes", "pv1"): {"spec": {"claimRef": {"uid": "u"}, "volumeMode": mode,
                                                        "hostPath": {"path": "/dev/null"}}}}
    vol = [{"name": "data", "persistentVolumeClaim": {"claimName": "c"}}]
    vm = VolumeManager(tmp_path)
    out = _run(vm.mount_pod(_pod(vol), _fetcher(objs("Block"))))
    assert out.pod_errors == ["volume data has volumeMode Block, but is specified in volumeMounts"]
    mapped = _pod(vol, mounts=[])
    mapped["spec"]["containers"][0]["volumeDevices"] = [{"name": "data", "devicePath": "/dev/xvda"}]
    out = _run(vm.mount_pod(mapped, _fetcher(objs("Filesystem"))))
    assert out.pod_errors == ["volume data has volumeMode Filesystem, but is specified in volumeDevices"]
    out = _run(vm.mount_pod(mapped, _fetcher(objs("Block"))))
    assert out.pod_error_message() == (
        "Unable to attach or mount volumes: unmounted volumes=[data], unattached volumes=[], failed to process "
        'volumes=[data]: failed to get Plugin from volumeSpec for volume "pv1" err=no volume plugin matched')


@root_only
def test_claim_bound_to_hostpath_pv_mounts_it(tmp_path):
    host = tmp_path / "pvdata"
    host.mkdir()
    objs = {("persistentvolumeclaims", "c"): {"metadata": {"uid": "u"}, "spec": {"volumeName": "pv1"},
                                              "status": {"phase": "Bound"}},
            ("persistentvolumes", "pv1"): {"spec": {"claimRef": {"uid": "u"}, "hostPath": {"path": str(host)}}}}
    pod = _pod([{"name": "data", "persistentVolumeClaim": {"claimName": "c", "readOnly": True}}])
    out = _run(VolumeManager(tmp_path).mount_pod(pod, _fetcher(objs)))
    assert out.ready and out.volumes["data"] == Mounted(str(host), readonly=True)


@root_only
def test_nfs_mount_failure_is_the_mounters_error_with_backoff(tmp_path):
    vm = VolumeManager(tmp_path)
    pod = _pod([{"name": "kuard-data", "nfs": {"server": "my.nfs.server.local", "path": "/exports"}}])
    out = _run(vm.mount_pod(pod, _fetcher({})))
    (msg,) = out.setup_failures
    d = tmp_path / "pods/uid-1/volumes/kubernetes.io~nfs/kuard-data"
    assert msg.startswith('MountVolume.SetUp failed for volume "kuard-data" : mount failed: exit status 32\n'
                          "Mounting command: ")
    if vm.nfs.kernel:  # the node's mount.nfs
        assert f"Mounting command: mount\nMounting arguments: -t nfs my.nfs.server.local:/exports {d}\n" in msg
    else:  # the userspace client, which words its errors as mount.nfs does
        assert "Output: mount.nfs: Failed to resolve server my.nfs.server.local: Name or service not known" in msg
    assert not out.ready and out.pod_error_message() is None  # a SetUp failure, not a pod error
    assert out.retry_in == 0.5
    again = _run(vm.mount_pod(pod, _fetcher({})))  # within the back-off: not tried again
    assert again.setup_failures == [] and not again.ready and 0 < again.retry_in <= 0.5
    assert not d.exists() and not _mounts_under(tmp_path)


def test_sub_path_expr_expansion():
    assert expand_sub_path_expr("$(POD)/logs", {"POD": "web-1"}) == "web-1/logs"
    with pytest.raises(VolumeError, match="^missing value for A, B$"):
        expand_sub_path_expr("$(B)/$(A)/$(C)", {"C": "x", "A": ""})


@root_only
def test_sub_paths(tmp_path):
    vm = VolumeManager(tmp_path)
    pod = _pod([{"name": "v", "emptyDir": {}}])
    vols = _run(vm.mount_pod(pod, _fetcher({}))).volumes
    vdir = Path(vols["v"].path)
    c = {"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/a", "subPath": "x/y"},
                                       {"name": "v", "mountPath": "/b", "subPathExpr": "$(NAME)", "readOnly": True}]}
    try:
        m1, m2 = vm.mounts_for(pod, c, vols, {"NAME": "n1"})
        assert (vdir / "x/y").is_dir() and (vdir / "n1").is_dir()
        assert oct(stat.S_IMODE((vdir / "x").stat().st_mode)) == oct(0o777)  # the volume root's mode
        assert m1.host_path == str(tmp_path / "pods/uid-1/volume-subpaths/v/c/0") and not m1.readonly
        assert m2.readonly and m2.container_path == "/b"
        (vdir / "x/y/f").write_text("hi")
        assert (Path(m1.host_path) / "f").read_text() == "hi"  # a bind mount of the subPath
        for sub, msg in [("/etc", "error SubPath `/etc` must not be an absolute path"),
                         ("a/../../etc", "unable to provision SubPath `a/../../etc`: must not contain '..'")]:
            with pytest.raises(VolumeError, match=f"^{msg}$".replace("(", r"\(").replace(")", r"\)")):
                vm.mounts_for(pod, {"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/z", "subPath": sub}]},
                              vols)
        os.symlink("x/y", vdir / "inside")  # a symlink that stays in the volume is followed
        (m3,) = vm.mounts_for(pod, {"name": "d", "volumeMounts": [{"name": "v", "mountPath": "/i", "subPath": "inside"}]},
                              vols)
        assert (Path(m3.host_path) / "f").read_text() == "hi"
        os.symlink("/etc", vdir / "escape")
        with pytest.raises(VolumeError, match='^failed to prepare subPath for volumeMount "v" of container "c"$'):
            vm.mounts_for(pod, {"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/z", "subPath": "escape"}]},
                          vols)
        with pytest.raises(VolumeError, match='^cannot find volume "w" to mount into container "c"$'):
            vm.mounts_for(pod, {"name": "c", "volumeMounts": [{"name": "w", "mountPath": "/w"}]}, vols)
    finally:
        vm.teardown("uid-1")
        for mp in _mounts_under(tmp_path):
            subprocess.run(["umount", "-l", mp], capture_output=True)
    assert not (tmp_path / "pods/uid-1").exists()


@root_only
def test_config_map_is_read_only_and_owned_by_fs_group(tmp_path):
    vm = VolumeManager(tmp_path)
    pod = _pod([{"name": "cfg", "configMap": {"name": "app"}}, {"name": "scratch", "emptyDir": {}}], fs_group=4321)
    out = _run(vm.mount_pod(pod, _fetcher({("configmaps", "app"): {"data": {"k": "v"}}})))
    assert out.volumes["cfg"].readonly and not out.volumes["scratch"].readonly
    f = Path(out.volumes["cfg"].path) / "k"
    assert f.stat().st_gid == 4321 and stat.S_IMODE(f.stat().st_mode) == 0o644
    d = Path(out.volumes["scratch"].path).stat()
    assert d.st_gid == 4321 and stat.S_IMODE(d.st_mode) == 0o2777
    vm.teardown("uid-1")


def test_ownership_and_on_root_mismatch(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/f").write_text("x")
    os.chmod(tmp_path / "sub/f", 0o600)
    os.symlink("sub/f", tmp_path / "link")
    volume_util.set_volume_ownership(str(tmp_path), 1234, readonly=False)
    assert (tmp_path / "sub/f").stat().st_gid == 1234 and stat.S_IMODE((tmp_path / "sub/f").stat().st_mode) == 0o660
    assert stat.S_IMODE((tmp_path / "sub").stat().st_mode) & 0o2770 == 0o2770
    assert os.lstat(tmp_path / "link").st_gid == 1234
    assert not volume_util.requires_permission_change(str(tmp_path), 1234, False)
    os.chmod(tmp_path / "sub/f", 0o600)  # a change below the root: OnRootMismatch leaves it
    volume_util.set_volume_ownership(str(tmp_path), 1234, False, policy="OnRootMismatch")
    assert stat.S_IMODE((tmp_path / "sub/f").stat().st_mode) == 0o600
    volume_util.set_volume_ownership(str(tmp_path), 1234, False, policy="Always")
    assert stat.S_IMODE((tmp_path / "sub/f").stat().st_mode) == 0o660
    assert volume_util.requires_permission_change(str(tmp_path), 99, False)


def test_empty_dir_size_limit_usage(tmp_path):
    vm = VolumeManager(tmp_path)
    pod = _pod([{"name": "x", "emptyDir": {"sizeLimit": "1Mi"}}])
    d = tmp_path / "pods/uid-1/volumes/kubernetes.io~empty-dir/x"
    d.mkdir(parents=True)
    (d / "small").write_bytes(os.urandom(512 * 1024))
    assert vm.empty_dir_over_limit(pod) is None
    (d / "big").write_bytes(os.urandom(1024 * 1024))
    assert vm.empty_dir_over_limit(pod) == 'Usage of EmptyDir volume "x" exceeds the limit "1Mi". '
    os.link(d / "big", d / "again")  # counted once
    assert volume_util.disk_usage(str(d)) < 2 * 1024 * 1024


def test_recursive_read_only_resolution():
    from kubelite.agent.volumes import resolve_recursive_read_only as rro

    assert rro({"name": "v", "readOnly": True}, False) is False
    assert rro({"name": "v", "readOnly": True, "recursiveReadOnly": "IfPossible"}, False) is False
    assert rro({"name": "v", "readOnly": True, "recursiveReadOnly": "IfPossible"}, True) is True
    with pytest.raises(VolumeError, match='^failed to resolve recursive read-only mode: volume "v" requested '
                                          'recursive read-only mode, but it is not supported by the runtime$'):
        rro({"name": "v", "readOnly": True, "recursiveReadOnly": "Enabled"}, False)
    with pytest.raises(VolumeError, match="but it is not read-only$"):
        rro({"name": "v", "recursiveReadOnly": "Enabled"}, True)


def test_volume_set_up_by_an_earlier_agent_survives_its_source_going_away(tmp_path):
    pod = _pod([{"name": "cfg", "configMap": {"name": "app"}}])
    first = VolumeManager(tmp_path)
    assert _run(first.mount_pod(pod, _fetcher({("configmaps", "app"): {"data": {"k": "v"}}}))).ready
    later = VolumeManager(tmp_path)  # the agent restarted; the configmap was deleted meanwhile
    out = _run(later.mount_pod(pod, _fetcher({})))
    assert out.ready and out.volumes["cfg"].readonly
    assert (Path(out.volumes["cfg"].path) / "k").read_text() == "v"
    assert out.setup_failures == ['MountVolume.SetUp failed for volume "cfg" : configmap "app" not found']
    fresh = _pod([{"name": "cfg", "configMap": {"name": "app"}}], uid="uid-2")
    assert not _run(later.mount_pod(fresh, _fetcher({}))).ready


def test_a_slow_mount_runs_apart_and_is_cancelled_with_its_pod(tmp_path, monkeypatch):
    from kubelite.agent import volumes as vmod

    started, cancelled = asyncio.Event(), []

    async def slow(ctx):
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(ctx.name)
            raise
        return Mounted("/never")

    monkeypatch.setitem(vmod.PLUGINS, "slowFS", vmod.VolumePlugin(slow))

    async def main():
        vm = VolumeManager(tmp_path)
        pod = _pod([{"name": "s", "slowFS": {}}])
        assert await vm.reconcile(pod, _fetcher({}), wait=0.05) is None  # the worker is not held
        assert started.is_set()
        assert await vm.reconcile(pod, _fetcher({}), wait=0.05) is None  # the same mount, still under way
        await vm.cancel_mounts("uid-1")
        assert cancelled == ["s"]
        fast = _pod([{"name": "e", "emptyDir": {}}], uid="uid-2")
        out = await vm.reconcile(fast, _fetcher({}), wait=5)
        assert out is not None and out.ready
        await vm.close()

    _run(main())
