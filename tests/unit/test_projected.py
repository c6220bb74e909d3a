"""Projected volumes (AtomicWriter layout, sources, token refresh) and the ServiceAccount
admission's kube-api-access projection."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest

from kubelite.admission import serviceaccount as sa_adm
from kubelite.agent import projected
from kubelite.agent.volumes import VolumeError, VolumeManager, _mounts_under


def _ts(t: float) -> str:
    return dt.datetime.fromtimestamp(int(t), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeClient:
    def __init__(self, exp_s_override: int | None = None, clock=None, prefix: str = "tok") -> None:
        self.calls: list[tuple[str, str, dict]] = []
        self.exp_override = exp_s_override
        self.clock = clock or __import__("time").time
        self.prefix = prefix

    async def request(self, method, path, body=None, **kw):
        self.calls.append((method, path, body))
        exp_s = self.exp_override or body["spec"]["expirationSeconds"]
        return {"kind": "TokenRequest", "spec": dict(body["spec"], expirationSeconds=exp_s),
                "status": {"token": f"{self.prefix}-{len(self.calls)}", "expirationTimestamp": _ts(self.clock() + exp_s)}}


POD = {"metadata": {"name": "p", "namespace": "ns1", "uid": "uid-1", "labels": {"b": "2", "a": 'x"y'},
                    "annotations": {"k": "v"}},
       "spec": {"serviceAccountName": "robot", "containers": [{"name": "c", "resources": {"limits": {"cpu": "2"}}}]}}


async def fetch(kind, ns, name):
    if kind == "configmaps" and name == "kube-root-ca.crt":
        return {"data": {"ca.crt": "CA PEM", "other": "o"}}
    if kind == "secrets" and name == "s":
        return {"data": {"pw": base64.b64encode(b"hunter2").decode()}}
    return None


# --------------------------------------------------------------------------- AtomicWriter


def test_atomic_write_layout_and_swap(tmp_path):
    assert projected.atomic_write(tmp_path, {"token": (b"one", 0o644), "sub/x": (b"x", 0o600)})
    data = tmp_path / "..data"
    assert data.is_symlink() and os.readlink(data).startswith("..")
    first = os.readlink(data)
    assert os.readlink(tmp_path / "token") == "..data/token"
    assert os.readlink(tmp_path / "sub") == "..data/sub"
    assert (tmp_path / "token").read_bytes() == b"one"
    assert oct((tmp_path / "sub" / "x").stat().st_mode & 0o777) == oct(0o600)
    assert not projected.atomic_write(tmp_path, {"token": (b"one", 0o644), "sub/x": (b"x", 0o600)})  # unchanged
    assert projected.atomic_write(tmp_path, {"token": (b"two", 0o644)})
    assert os.readlink(data) != first and not (tmp_path / first).exists()  # old payload removed
    assert (tmp_path / "token").read_bytes() == b"two"
    assert not (tmp_path / "sub").exists() and not (tmp_path / "sub").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["..data", os.readlink(data), "token"])
    with pytest.raises(projected.ProjectionError):
        projected.atomic_write(tmp_path, {"../evil": (b"", 0o644)})


# --------------------------------------------------------------------------- sources


def test_payload_sources():
    vol = {"name": "v", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"secret": {"name": "s", "items": [{"key": "pw", "path": "pw", "mode": 0o400}]}},
        {"secret": {"name": "missing", "optional": True}},
        {"downwardAPI": {"items": [
            {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}},
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
            {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}}]}}]}}
    client = FakeClient()
    tokens = projected.TokenManager(client)
    files, refresh = asyncio.run(projected.projected_payload(POD, vol, fetch, tokens))
    assert files["token"] == (b"tok-1", 0o644)
    assert files["ca.crt"] == (b"CA PEM", 0o644) and "other" not in files
    assert files["pw"] == (b"hunter2", 0o400)
    assert files["namespace"][0] == b"ns1" and files["name"][0] == b"p" and files["uid"][0] == b"uid-1"
    assert files["labels"][0] == b'a="x\\"y"\nb="2"'
    assert files["annotations"][0] == b'k="v"'
    assert files["cpu"][0] == b"2"
    method, path, body = client.calls[0]
    assert (method, path) == ("POST", "/api/v1/namespaces/ns1/serviceaccounts/robot/token")
    assert body["spec"] == {"audiences": [], "expirationSeconds": 3607,
                            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "uid-1"}}
    assert refresh is not None
    with pytest.raises(projected.ProjectionError, match='configmap "nope" not found'):
        asyncio.run(projected.projected_payload(POD, {"projected": {"sources": [{"configMap": {"name": "nope"}}]}},
                                                fetch, tokens))
    with pytest.raises(projected.ProjectionError, match="non-existent config key: zz"):
        asyncio.run(projected.projected_payload(POD, {"projected": {"sources": [
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "zz", "path": "zz"}]}}]}}, fetch, tokens))


def test_token_refresh_at_80_percent_or_24h():
    now = [1_000_000.0]
    client = FakeClient(clock=lambda: now[0])
    tm = projected.TokenManager(client, clock=lambda: now[0])

    def get(exp_s: int = 3600):
        return asyncio.run(tm.get_token("ns1", "robot", ["aud"], exp_s, POD))["status"]["token"]

    assert get() == "tok-1"
    now[0] += 3600 * 0.79 - 11  # before 80% (minus the largest jitter): cached
    assert get() == "tok-1"
    now[0] = 1_000_000.0 + 3600 * 0.8 + 1  # past 80%: a new token
    assert get() == "tok-2"
    assert client.calls[-1][2]["spec"]["audiences"] == ["aud"]
    # a year-long token is still refreshed after 24h
    t0 = now[0]
    assert get(365 * 86400) == "tok-3"
    now[0] = t0 + 86400 - 20
    assert get(365 * 86400) == "tok-3"
    now[0] = t0 + 86400 + 1
    assert get(365 * 86400) == "tok-4"


# --------------------------------------------------------------------------- VolumeManager


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs")
def test_volume_manager_tmpfs_refresh_and_teardown(tmp_path):
    async def main():
        client = FakeClient(exp_s_override=5)  # a 5 s token: refreshed at 4 s (80%)
        vm = VolumeManager(tmp_path, client=client)
        vm.resync_seconds = 1.0
        pod = {**POD, "spec": {**POD["spec"], "volumes": [
            {"name": "kube-api-access-abcde", "projected": sa_adm.token_volume_source()}]}}
        paths = await vm.setup(pod, fetch)
        d = Path(paths["kube-api-access-abcde"])
        assert d == tmp_path / "pods/uid-1/volumes/kubernetes.io~projected/kube-api-access-abcde"
        assert str(d) in _mounts_under(tmp_path)
        first = (d / "token").read_text()
        assert (d / "ca.crt").read_text() == "CA PEM" and (d / "namespace").read_text() == "ns1"
        for _ in range(100):
            await asyncio.sleep(0.1)
            if (d / "token").read_text() != first:
                break
        assert (d / "token").read_text() != first
        assert oct((d / "token").stat().st_mode & 0o777) == oct(0o644)
        await asyncio.to_thread(vm.teardown, "uid-1")
        assert not d.exists() and not _mounts_under(tmp_path)
        calls = len(client.calls)
        await asyncio.sleep(1.5)  # the refresher no longer writes for a torn-down pod
        assert not (tmp_path / "pods" / "uid-1").exists() and len(client.calls) == calls
        bad = {**POD, "metadata": {**POD["metadata"], "uid": "uid-2"}, "spec": {**POD["spec"], "volumes": [
            {"name": "v", "projected": {"sources": [{"configMap": {"name": "nope"}}]}}]}}
        with pytest.raises(VolumeError, match='MountVolume.SetUp failed for volume "v" : configmap "nope" not found'):
            await vm.setup(bad, fetch)
        await asyncio.to_thread(vm.teardown, "uid-2")
        await vm.close()

    try:
        asyncio.run(main())
    finally:
        for mp in _mounts_under(tmp_path):
            subprocess.run(["umount", "-l", mp], capture_output=True)


async def _wait_for(cond, timeout: float) -> bool:
    for _ in range(int(timeout / 0.05)):
        if cond():
            return True
        await asyncio.sleep(0.05)
    return cond()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs")
def test_volume_manager_adopts_running_pods_after_restart(tmp_path, monkeypatch):
    """An agent that starts while a pod runs learns the pod from its first sync (track): the
    token is requested anew at once and then refreshed at 80% of its lifetime; later label
    changes reach downwardAPI files without waiting for the resync."""
    vol = {"name": "kube-api-access-abcde", "projected": {"sources": [
        *sa_adm.token_volume_source()["sources"],
        {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}]}}
    pod = {**POD, "spec": {**POD["spec"], "volumes": [vol]}}
    monkeypatch.setattr(projected, "MAX_JITTER", 0.0)  # (10 s of jitter would outweigh a 5 s token)

    async def main():
        before = VolumeManager(tmp_path, client=FakeClient(exp_s_override=3600, prefix="old"))
        d = Path((await before.setup(pod, fetch))["kube-api-access-abcde"])
        assert (d / "token").read_text() == "old-1"
        await before.close()  # the agent goes away; the pod's tmpfs stays mounted

        client = FakeClient(exp_s_override=5, prefix="new")  # a 5 s token: refreshed at 4 s (80%)
        vm = VolumeManager(tmp_path, client=client)
        vm.resync_seconds = 60.0  # only the token's lifetime and track() may cause a refresh here
        other = {**pod, "metadata": {**pod["metadata"], "uid": "uid-never-set-up"}}
        vm.track(other, fetch)  # nothing mounted for it: left to setup()
        assert not vm.tracked("uid-never-set-up")
        vm.track(pod, fetch)
        assert vm.tracked("uid-1")
        assert await _wait_for(lambda: (d / "token").read_text() == "new-1", 3), "adopted pod not re-projected"
        assert (d / "ca.crt").read_text() == "CA PEM"
        vm.track(pod, fetch)  # same pod again: nothing to do
        assert await _wait_for(lambda: (d / "token").read_text() == "new-2", 8), "token of adopted pod not refreshed"
        assert len(client.calls) == 2
        relabeled = {**pod, "metadata": {**pod["metadata"], "labels": {"a": "b", "new": "1"}}}
        vm.track(relabeled, fetch)
        assert await _wait_for(lambda: (d / "labels").read_text() == 'a="b"\nnew="1"', 2), "labels not updated"
        assert (d / "token").read_text() == "new-2" and len(client.calls) == 2  # the cached token is kept
        await asyncio.to_thread(vm.teardown, "uid-1")
        assert not vm.tracked("uid-1") and not _mounts_under(tmp_path)
        await vm.close()

    try:
        asyncio.run(main())
    finally:
        for mp in _mounts_under(tmp_path):
            subprocess.run(["umount", "-l", mp], capture_output=True)


# --------------------------------------------------------------------------- NodeRestriction: TokenRequest


class _Store:
    def __init__(self, plural: str, objs: list[dict]) -> None:
        self.plural = plural
        self.objs = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objs}

    async def get(self, ns, name):
        from kubelite.api import errors

        if (ns, name) not in self.objs:
            raise errors.not_found(self.plural, name)
        return self.objs[(ns, name)]


class _Authorizer:
    def __init__(self) -> None:
        self.seen = []

    async def authorize(self, a):
        self.seen.append(a)
        from kubelite.apiserver import authorizer as authz

        return (authz.ALLOW if a.resource == "granted-aud" else authz.NO_OPINION), ""


def test_token_request_node_restriction():
    from kubelite.api import errors
    from kubelite.apiserver.auth import UserInfo
    from kubelite.auth.serviceaccount_tokens import TokenIssuer

    def pod(name, uid, node, volumes=()):
        return {"metadata": {"namespace": "ns1", "name": name, "uid": uid},
                "spec": {"nodeName": node, "volumes": list(volumes)}}

    vault = {"name": "v", "projected": {"sources": [{"serviceAccountToken": {"path": "t", "audience": "vault"}}]}}
    mine = pod("mine", "mine-uid", "n1", [{"name": "kube-api-access-x", "projected": sa_adm.token_volume_source()},
                                          vault])
    pods = _Store("pods", [mine, pod("theirs", "theirs-uid", "n2"), pod("bare", "bare-uid", "n1")])
    stores = type("Stores", (), {"get": lambda self, group, plural: pods})()
    issuer = object.__new__(TokenIssuer)
    issuer.stores, issuer.authorizer = stores, None
    node = UserInfo("system:node:n1", ("system:nodes", "system:authenticated"))

    def check(ref, audiences=None, user=node, name="n1"):
        spec = {"boundObjectRef": ref} if ref is not None else {}
        if audiences is not None:
            spec["audiences"] = audiences
        return asyncio.run(issuer.node_restriction(name, user, "ns1", "default", spec))

    def denied(msg, *args, **kw):
        with pytest.raises(errors.StatusError) as ei:
            check(*args, **kw)
        assert ei.value.code == 403 and ei.value.reason == "Forbidden"
        assert ei.value.message == f'serviceaccounts "default" is forbidden: {msg}'

    ref = {"apiVersion": "v1", "kind": "Pod", "name": "mine", "uid": "mine-uid"}
    check(ref)  # the kubelet's own request: no audiences (the API server's)
    check(ref, [])
    check(ref, ["vault"])  # an audience one of the pod's projected volumes asks for
    denied("node requested token not bound to a pod", None)
    denied("node requested token not bound to a pod", {**ref, "kind": "Secret"})
    denied("node requested token not bound to a pod", {**ref, "apiVersion": "v2"})
    denied("node requested token not bound to a pod", {**ref, "name": ""})
    denied("node requested token with a pod binding without a uid", {**ref, "uid": ""})
    denied("the UID in the bound object reference (stale) does not match the UID in record. The object might "
           "have been deleted and then recreated", {**ref, "uid": "stale"})
    denied("node requested token bound to a pod scheduled on a different node",
           {**ref, "name": "theirs", "uid": "theirs-uid"})
    denied('could not determine node from user "system:node:"', ref, user=UserInfo("system:node:",
                                                                                   ("system:nodes",)), name="")
    denied("node may only request 0 or 1 audiences", ref, ["vault", ""])
    denied('audience "other" not found in pod spec volume, system:node:n1 is not authorized to request tokens '
           'for this audience', ref, ["other"])
    denied('audience "" not found in pod spec volume, system:node:n1 is not authorized to request tokens for '
           'this audience', {**ref, "name": "bare", "uid": "bare-uid"})
    with pytest.raises(errors.StatusError) as ei:
        check({**ref, "name": "gone"})
    assert ei.value.code == 404 and ei.value.message == 'pod "gone" not found'
    # an audience outside the pod spec is allowed when the node is authorized for it
    issuer.authorizer = _Authorizer()
    check(ref, ["granted-aud"])
    a = issuer.authorizer.seen[-1]
    assert (a.verb, a.namespace, a.api_group, a.resource, a.name) == (
        "request-serviceaccounts-token-audience", "ns1", "", "granted-aud", "default")
    denied('audience "other" not found in pod spec volume, system:node:n1 is not authorized to request tokens '
           'for this audience', ref, ["other"])


# --------------------------------------------------------------------------- admission


def test_mount_service_account_token_like_upstream():
    pod = {"spec": {"initContainers": [{"name": "i"}],
                    "containers": [{"name": "a"}, {"name": "b", "volumeMounts": [
                        {"name": "mine", "mountPath": sa_adm.DEFAULT_API_TOKEN_MOUNT_PATH}]}]}}
    sa_adm.mount_service_account_token(pod)
    vols = pod["spec"]["volumes"]
    assert len(vols) == 1
    name = vols[0]["name"]
    assert name.startswith("kube-api-access-") and len(name) == len("kube-api-access-") + 5
    assert set(name[-5:]) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert vols[0]["projected"] == {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}
    mount = {"name": name, "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
    assert pod["spec"]["initContainers"][0]["volumeMounts"] == [mount]
    assert pod["spec"]["containers"][0]["volumeMounts"] == [mount]
    assert len(pod["spec"]["containers"][1]["volumeMounts"]) == 1  # its own mount at the path wins
    # an existing kube-api-access-* volume is reused, not duplicated
    again = {"spec": {"containers": [{"name": "a"}], "volumes": [{"name": "kube-api-access-zzzzz", "emptyDir": {}}]}}
    sa_adm.mount_service_account_token(again)
    assert len(again["spec"]["volumes"]) == 1
    assert again["spec"]["containers"][0]["volumeMounts"][0]["name"] == "kube-api-access-zzzzz"


def test_should_automount():
    assert sa_adm.should_automount({}, {"spec": {}})
    assert not sa_adm.should_automount({"automountServiceAccountToken": False}, {"spec": {}})
    assert sa_adm.should_automount({"automountServiceAccountToken": False},
                                    {"spec": {"automountServiceAccountToken": True}})
    assert not sa_adm.should_automount({}, {"spec": {"automountServiceAccountToken": False}})
