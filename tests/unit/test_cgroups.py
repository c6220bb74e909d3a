"""Pod cgroups over fake cgroupfs trees: a temp dir laid out as /sys/fs/cgroup is on a v1
(hybrid) host and on a v2 host, with the mount table that goes with it. Layout detection,
limits in each layout's files, the QoS roots, removal, `kubelite uninstall`'s view, and the
agent refusing a host where limits cannot be enforced."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from cri_api.v1 import api_pb2 as cri

from kubelite.agent import cgroups as cg
from kubelite.agent.cgroups import CgroupError, detect_layout, open_cgroups, shares_to_weight
from kubelite.agent.containerd import render_config
from kubelite.cli import uninstall

# what this host's /proc/self/mounts says (ENVIRONMENT.md: v1 plus an empty unified tree)
HYBRID_MOUNTS = """tmpfs {r} tmpfs rw,relatime,mode=755 0 0
cgroup {r}/cpu cgroup rw,relatime,cpu 0 0
cgroup {r}/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup {r}/cpuset cgroup rw,relatime,cpuset 0 0
cgroup {r}/memory cgroup rw,relatime,memory 0 0
cgroup {r}/pids cgroup rw,relatime,pids 0 0
cgroup {r}/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 {r}/unified cgroup2 rw,relatime 0 0
"""
V2_MOUNTS = "sysfs /sys sysfs rw 0 0\ncgroup2 {r} cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0\n"
V2_CONTROLLERS = "cpuset cpu io memory hugetlb pids rdma misc"


def _pod(uid: str, *containers: dict) -> dict:
    return {"metadata": {"uid": uid, "name": uid, "namespace": "default"},
            "spec": {"containers": [{"name": f"c{i}", **c} for i, c in enumerate(containers)]}}


GUARANTEED = _pod("g", {"resources": {"limits": {"cpu": "500m", "memory": "128Mi"},
                                      "requests": {"cpu": "500m", "memory": "128Mi"}}})
BURSTABLE = _pod("b", {"resources": {"requests": {"cpu": "1"}, "limits": {"memory": "64Mi"}}}, {})
BESTEFFORT = _pod("e", {})


def v2_tree(tmp: Path, controllers: str = V2_CONTROLLERS, subtree: str = "") -> tuple[Path, str]:
    root = tmp / "cgroup"
    root.mkdir()
    for name in ("cgroup.procs", "cgroup.stat", "cpu.stat", "memory.stat", "cgroup.max.depth"):
        (root / name).write_text("")
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text(subtree + "\n")
    return root, V2_MOUNTS.format(r=root)


def v1_tree(tmp: Path, without: tuple[str, ...] = ()) -> tuple[Path, str]:
    root = tmp / "cgroup"
    mounts = HYBRID_MOUNTS.format(r=root)
    for line in mounts.splitlines()[1:]:
        mnt = Path(line.split()[1])
        if mnt.name in without:
            continue
        mnt.mkdir(parents=True)
    for f, value in (("cpu/cpu.cfs_quota_us", "-1"), ("cpuset/cpuset.cpus", "0-1"),
                     ("memory/memory.memsw.limit_in_bytes", "9223372036854771712")):
        if (root / f).parent.is_dir():
            (root / f).write_text(value + "\n")
    kept = [ln for ln in mounts.splitlines() if Path(ln.split()[1]).name not in without]
    return root, "\n".join(kept) + "\n"


def _read(p: Path) -> str:
    return p.read_text().strip()


# --------------------------------------------------------------------------- conversions and layout
def test_shares_to_weight_is_the_kubelets():
    # getCPUWeight: 1 + ((shares - 2) * 9999) / 262142, capped at 10000
    assert [shares_to_weight(s) for s in (2, 102, 256, 512, 1024, 2048, 262143, 262144, 10**6)] == \
        [1, 4, 10, 20, 39, 79, 9999, 10000, 10000]


def test_detect_layout(tmp_path):
    hybrid = detect_layout(tmp_path, HYBRID_MOUNTS.format(r=tmp_path))
    assert (hybrid.mode, hybrid.version) == ("hybrid", 1)
    assert hybrid.hierarchies["memory"] == tmp_path / "memory"
    assert hybrid.hierarchies["unified"] == tmp_path / "unified"
    assert hybrid.hierarchies["systemd"] == tmp_path / "systemd"
    legacy_mounts = "\n".join(ln for ln in HYBRID_MOUNTS.format(r=tmp_path).splitlines() if "cgroup2" not in ln)
    assert detect_layout(tmp_path, legacy_mounts).mode == "legacy"
    unified = detect_layout(tmp_path, V2_MOUNTS.format(r=tmp_path))
    assert (unified.mode, unified.version, unified.bases()) == ("unified", 2, [tmp_path])
    assert "cgroup v2 (unified)" in unified.describe()
    # a tmpfs mounted over the v2 tree hides it; another root's mounts do not count
    assert detect_layout(tmp_path, V2_MOUNTS.format(r=tmp_path) + f"tmpfs {tmp_path} tmpfs rw 0 0\n").mode == "none"
    assert detect_layout(tmp_path / "x", V2_MOUNTS.format(r=tmp_path)).mode == "none"
    spaced = tmp_path / "a b"
    assert detect_layout(spaced, f"cgroup2 {tmp_path}/a\\040b cgroup2 rw 0 0\n").mode == "unified"


# --------------------------------------------------------------------------- cgroup v2
def test_v2_qos_roots_enable_controllers_top_down(tmp_path):
    root, mounts = v2_tree(tmp_path)
    mgr = open_cgroups(root, mounts)
    assert mgr.version == 2 and mgr.driver == "cgroupfs"
    want = {"cpu", "cpuset", "hugetlb", "memory", "pids"}  # not io, rdma, misc: the kubelet's set
    for d in (root, root / "kubepods", root / "kubepods" / "burstable", root / "kubepods" / "besteffort"):
        assert cg.read_tokens(d / "cgroup.subtree_control") == want, d
    assert _read(root / "kubepods" / "besteffort" / "cpu.weight") == "1"
    assert not (root / "kubepods" / "memory").exists()  # no v1 hierarchies on a v2 host
    open_cgroups(root, mounts)  # idempotent


def test_v2_pod_limits(tmp_path):
    root, mounts = v2_tree(tmp_path)
    mgr = open_cgroups(root, mounts)
    assert mgr.ensure_pod(GUARANTEED) == "/kubepods/podg"
    g = root / "kubepods" / "podg"
    assert (_read(g / "cpu.weight"), _read(g / "cpu.max"), _read(g / "memory.max")) == ("20", "50000 100000",
                                                                                          str(128 << 20))
    assert not (g / "pids.max").exists()  # no pod pids limit configured
    assert mgr.ensure_pod(BURSTABLE) == "/kubepods/burstable/podb"
    b = root / "kubepods" / "burstable" / "podb"
    # one container without a memory limit: the pod has none; no cpu limit at all: "max"
    assert (_read(b / "cpu.weight"), _read(b / "cpu.max"), _read(b / "memory.max")) == ("39", "max 100000", "max")
    mgr.ensure_pod(BESTEFFORT)
    e = root / "kubepods" / "besteffort" / "pode"
    assert (_read(e / "cpu.weight"), _read(e / "cpu.max"), _read(e / "memory.max")) == ("1", "max 100000", "max")
    assert mgr.pod_cgroup_names() == {"g": "kubepods/podg", "b": "kubepods/burstable/podb",
                                      "e": "kubepods/besteffort/pode"}


def test_v2_pids_limit(tmp_path):
    root, mounts = v2_tree(tmp_path)
    mgr = open_cgroups(root, mounts, pids_limit=1024)
    mgr.ensure_pod(BESTEFFORT)
    assert _read(root / "kubepods" / "besteffort" / "pode" / "pids.max") == "1024"
    assert open_cgroups(root, mounts, pids_limit=-1).pids_limit is None


def test_v2_container_settings(tmp_path):
    root, mounts = v2_tree(tmp_path)
    mgr = open_cgroups(root, mounts)
    r = cri.LinuxContainerResources(memory_limit_in_bytes=64 << 20)
    mgr.tune_container(r)
    assert dict(r.unified) == {"memory.oom.group": "1"} and r.memory_swap_limit_in_bytes == 0
    (root / "kubepods" / "memory.swap.max").write_text("max\n")  # the kernel accounts swap
    r = cri.LinuxContainerResources()
    mgr.tune_container(r)
    assert dict(r.unified) == {"memory.oom.group": "1", "memory.swap.max": "0"}


def test_v2_remove_pod_cgroup(tmp_path):
    root, mounts = v2_tree(tmp_path)
    mgr = open_cgroups(root, mounts)
    (root / "kubepods" / "burstable" / "podx" / "sandbox").mkdir(parents=True)  # what runc leaves
    assert mgr.exists("kubepods/burstable/podx")
    assert mgr.remove("kubepods/burstable/podx")
    assert not mgr.exists("kubepods/burstable/podx") and mgr.pod_cgroup_names() == {}


@pytest.mark.parametrize("controllers,pids,message", [
    ("cpuset cpu io pids", None, "has some missing controllers: memory"),
    ("cpuset io memory pids", None, "has some missing controllers: cpu "),
    ("cpuset io pids", None, "has some missing controllers: cpu, memory"),
    ("cpu memory", 100, "has some missing controllers: pids"),
])
def test_v2_refuses_missing_controllers(tmp_path, controllers, pids, message):
    root, mounts = v2_tree(tmp_path, controllers)
    with pytest.raises(CgroupError, match="cannot enforce pod resource limits") as err:
        open_cgroups(root, mounts, pids_limit=pids)
    assert message in str(err.value)
    assert not (root / "kubepods").exists()


def test_v2_refuses_when_controllers_cannot_be_enabled(tmp_path):
    root, mounts = v2_tree(tmp_path)
    ctl = root / "cgroup.subtree_control"
    ctl.unlink()
    ctl.mkdir()  # any write fails, as on a tree that is not delegated to us
    with pytest.raises(CgroupError, match=r"could not enable the cpu, memory controllers in .*subtree_control"):
        open_cgroups(root, mounts)


def test_v2_refuses_without_cgroup_controllers_file(tmp_path):
    root, mounts = v2_tree(tmp_path)
    (root / "cgroup.controllers").unlink()
    with pytest.raises(CgroupError, match="cannot read .*cgroup.controllers"):
        open_cgroups(root, mounts)


def test_refuses_without_cgroup_filesystem(tmp_path):
    with pytest.raises(CgroupError, match="no cgroup filesystem at"):
        open_cgroups(tmp_path, "proc /proc proc rw 0 0\n")


# --------------------------------------------------------------------------- cgroup v1 (hybrid)
def test_v1_pod_limits_in_every_hierarchy(tmp_path):
    root, mounts = v1_tree(tmp_path)
    mgr = open_cgroups(root, mounts, pids_limit=512)
    assert mgr.version == 1 and "cgroup v1 (hybrid)" in mgr.describe()
    assert _read(root / "cpu" / "kubepods" / "besteffort" / "cpu.shares") == "2"
    assert mgr.ensure_pod(GUARANTEED) == "/kubepods/podg"
    for tree in ("cpu", "cpuacct", "cpuset", "memory", "pids", "systemd", "unified"):
        assert (root / tree / "kubepods" / "podg").is_dir(), tree
    cpu, mem = root / "cpu" / "kubepods" / "podg", root / "memory" / "kubepods" / "podg"
    assert (_read(cpu / "cpu.shares"), _read(cpu / "cpu.cfs_period_us"), _read(cpu / "cpu.cfs_quota_us")) == \
        ("512", "100000", "50000")
    assert _read(mem / "memory.limit_in_bytes") == str(128 << 20)
    assert _read(root / "pids" / "kubepods" / "podg" / "pids.max") == "512"
    assert not (root / "unified" / "kubepods" / "podg" / "cpu.weight").exists()  # no limits in the v2 tree
    r = cri.LinuxContainerResources(memory_limit_in_bytes=64 << 20)
    mgr.tune_container(r)  # ConfigureNoSwap: memory+swap = memory
    assert r.memory_swap_limit_in_bytes == 64 << 20 and not r.unified


@pytest.mark.parametrize("without,message", [
    (("memory",), "Following Cgroup subsystem not mounted: [memory]"),
    (("cpu", "cpuset"), "Following Cgroup subsystem not mounted: [cpu cpuset]"),
])
def test_v1_refuses_missing_hierarchies(tmp_path, without, message):
    root, mounts = v1_tree(tmp_path, without)
    if "cpu" in without:
        (root / "cpu").mkdir()
    with pytest.raises(CgroupError) as err:
        open_cgroups(root, mounts)
    assert message in str(err.value)


def test_v1_refuses_without_cfs_quota(tmp_path):
    root, mounts = v1_tree(tmp_path)
    (root / "cpu" / "cpu.cfs_quota_us").unlink()
    with pytest.raises(CgroupError, match="cpu.cfs_quota_us"):
        open_cgroups(root, mounts)


# --------------------------------------------------------------------------- uninstall, containerd, agent
@pytest.mark.parametrize("tree", ["v1", "v2"])
def test_uninstall_sees_and_removes_both_layouts(tmp_path, tree):
    root, mounts = v1_tree(tmp_path) if tree == "v1" else v2_tree(tmp_path)
    layout = detect_layout(root, mounts)
    for base in layout.bases():
        for name in cg.QOS_PARENTS:
            (base / name).mkdir(parents=True)
    (layout.bases()[0] / "kubepods" / "burstable" / "podx").mkdir()
    assert uninstall.pods_left(layout) == [str(layout.bases()[0] / "kubepods" / "burstable" / "podx")]
    (layout.bases()[0] / "kubepods" / "burstable" / "podx").rmdir()
    assert uninstall.pods_left(layout) == []
    out = uninstall.remove_cgroup_roots(layout)
    assert not any((base / "kubepods").exists() for base in layout.bases())
    assert out == [f"removed cgroup kubepods in {', '.join(str(b) for b in layout.bases())}"]
    assert uninstall.remove_cgroup_roots(layout) == []  # nothing left to report


def test_containerd_cgroup_driver_matches(tmp_path):
    text = render_config(tmp_path, tmp_path / "c.sock")
    assert "SystemdCgroup = false" in text
    assert "SystemdCgroup = true" in render_config(tmp_path, tmp_path / "c.sock", cgroup_driver="systemd")
    with pytest.raises(ValueError):
        render_config(tmp_path, tmp_path / "c.sock", cgroup_driver="nope")


def test_agent_refuses_to_start_without_enforceable_limits(tmp_path, monkeypatch, capsys, restore_logging):
    from kubelite.agent import agent as agent_mod
    from kubelite.cli.main import main

    root, mounts = v2_tree(tmp_path, "cpuset io pids")  # memory and cpu not delegated
    monkeypatch.setattr(agent_mod, "open_cgroups", lambda pids_limit=None: open_cgroups(root, mounts, pids_limit))
    started = []
    monkeypatch.setattr("kubelite.agent.containerd.Containerd.start", lambda *a, **k: started.append(a))
    monkeypatch.setattr("uvloop.install", lambda: None)  # cmd_agent's; not for the test process
    agent = agent_mod.Agent(agent_mod.AgentConfig(tmp_path / "data", tmp_path / "kc.yaml", "n1"))
    with pytest.raises(CgroupError, match="missing controllers: cpu, memory"):
        asyncio.run(agent.start())
    assert agent.containerd is None and agent.client is None and not started
    assert not (tmp_path / "data").exists()
    # the same through the command line: a message and exit code 1, no traceback
    assert main(["agent", "--data-dir", str(tmp_path / "data"), "--kubeconfig", str(tmp_path / "kc.yaml")]) == 1
    err = capsys.readouterr().err
    assert "ERROR kubelite.agent: node agent not started: cannot enforce pod resource limits: cgroup " in err
    assert "Traceback" not in err


def test_server_refuses_to_start_its_agent_without_enforceable_limits(tmp_path, monkeypatch, capsys,
                                                                     restore_logging):
    from kubelite.cli.main import main

    root, mounts = v2_tree(tmp_path, "cpuset cpu io pids")
    real_check = cg.check_host
    monkeypatch.setattr(cg, "check_host", lambda: real_check(root, mounts))
    served = []
    monkeypatch.setattr("kubelite.launcher.server.serve", lambda cfg: served.append(cfg))
    assert main(["server", "--data-dir", str(tmp_path / "data")]) == 1
    err = capsys.readouterr().err
    assert "kubelite server: cannot enforce pod resource limits" in err and "missing controllers: memory" in err
    assert "--disable-agent" in err and not served
