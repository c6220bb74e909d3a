"""`kubelite uninstall`: remove what kubelite leaves on the host outside its data dir.

containerd, runc and the CNI plugins insist on a few places of their own (/run/containerd,
/var/lib/cni), the bridge plugin leaves its bridge, portmap its iptables chains, and the agent
its QoS cgroup roots (``kubepods`` in every v1 hierarchy and the hybrid unified tree, or at the
top of a cgroup v2 host). With no pod left on the host, this removes them (and, with --purge,
the data dir). The host-gw routes to other nodes' pod CIDRs and their nat chain go too.
It refuses while pods still run.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubelite.agent.cgroups import QOS_PARENTS, ROOT_NAME, CgroupLayout, detect_layout

BRIDGE = "kubelite0"
HOSTPORT_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK")
RUNTIME_DIRS = (Path("/run/containerd/fifo"), Path("/run/containerd/s"), Path("/run/containerd/runc/k8s.io"),
                Path("/run/containerd/runc"), Path("/run/containerd"), Path("/var/lib/cni/results"),
                Path("/var/lib/cni"))


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True)


def pods_left(layout: CgroupLayout | None = None) -> list[str]:
    """Pod cgroups still on the host: their pods' processes may still run."""
    found = []
    for base in (layout or detect_layout()).bases():
        for parent in QOS_PARENTS:
            d = base / parent
            if d.is_dir():
                found += [str(p) for p in sorted(d.glob("pod*")) if p.is_dir()]
    return found


def remove_bridge() -> list[str]:
    if _run("ip", "link", "show", BRIDGE).returncode != 0:
        return []
    if _run("ip", "-o", "link", "show", "master", BRIDGE).stdout.strip():
        return [f"bridge {BRIDGE} still has ports; left"]
    _run("ip", "link", "del", BRIDGE)
    return [f"removed bridge {BRIDGE}"]


def remove_hostport_chains() -> list[str]:
    rules = _run("iptables", "-w", "-t", "nat", "-S").stdout.splitlines()
    chains = {ln.split()[1] for ln in rules if ln.startswith("-N ")}
    done = []
    for chain in HOSTPORT_CHAINS:
        if chain not in chains:
            continue
        own = [ln for ln in rules if ln.startswith(f"-A {chain} ")]
        if chain == "CNI-HOSTPORT-DNAT" and own:  # per-pod jumps: a pod with a hostPort still exists
            done.append(f"chain {chain} still has rules; left")
            continue
        for rule in rules:
            parts = shlex.split(rule)
            if parts[:1] == ["-A"] and "-j" in parts and parts[parts.index("-j") + 1] == chain:
                _run("iptables", "-w", "-t", "nat", "-D", *parts[1:])
        _run("iptables", "-w", "-t", "nat", "-F", chain)
        _run("iptables", "-w", "-t", "nat", "-X", chain)
        done.append(f"removed iptables chain {chain}")
    return done


def remove_cgroup_roots(layout: CgroupLayout | None = None) -> list[str]:
    layout = layout or detect_layout()
    done = []
    for base in layout.bases():
        if not (base / ROOT_NAME).is_dir():
            continue
        for d in (base / name for name in reversed(QOS_PARENTS)):  # the QoS children, then kubepods
            if d.is_dir():
                try:
                    d.rmdir()  # cgroupfs: rmdir of an empty cgroup (its control files do not count)
                except OSError:
                    continue
        if not (base / ROOT_NAME).exists():
            done.append(str(base))
    return [f"removed cgroup {ROOT_NAME} in {', '.join(done)}"] if done else []


def remove_runtime_dirs() -> list[str]:
    done = []
    for d in RUNTIME_DIRS:
        try:
            d.rmdir()  # only when empty: anything inside belongs to a runtime still in use
            done.append(f"removed {d}")
        except OSError:
            pass
    return done


def mounts_under(d: Path) -> list[str]:
    """Mount points at or below ``d`` (a pod's NFS volume left mounted, say)."""
    prefix = str(d).rstrip("/") + "/"
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    mps = [p[1].replace("\\040", " ") for ln in lines if len(p := ln.split()) > 1]
    return sorted(mp for mp in mps if mp == str(d) or mp.startswith(prefix))


def uninstall(data_dir: Path, purge: bool) -> tuple[int, list[str]]:
    if purge and data_dir.exists() and (mounted := mounts_under(data_dir)):
        # removing the tree would walk into them: an NFS export's files would go with it
        return 1, [f"{len(mounted)} file systems are still mounted under {data_dir}, e.g. {mounted[0]}; "
                   "unmount them first"]
    left = pods_left()
    if left:
        pods = {Path(p).name for p in left}  # one cgroup per pod in each v1 hierarchy
        return 1, [f"pods still run on this host ({len(pods)} pod cgroups, e.g. {left[0]}); delete them first"]
    from kubelite.agent.podnet import remove_all as remove_pod_network
    from kubelite.proxy.iptables import cleanup_now as remove_service_rules

    out = remove_bridge() + remove_pod_network() + remove_hostport_chains() + remove_service_rules() + \
        remove_cgroup_roots() + remove_runtime_dirs()
    if purge and data_dir.exists():
        if (data_dir / "containerd" / "containerd.pid").exists():
            pid = (data_dir / "containerd" / "containerd.pid").read_text().strip()
            if pid.isdigit() and Path(f"/proc/{pid}").exists():
                return 1, out + [f"containerd of {data_dir} still runs (pid {pid}); stop kubelite first"]
        shutil.rmtree(data_dir)
        out.append(f"removed {data_dir}")
    return 0, out


def cmd_uninstall(args: argparse.Namespace) -> int:
    code, lines = uninstall(Path(args.data_dir), args.purge)
    for line in lines:
        print(line, file=sys.stderr if code else sys.stdout)
    return code


def register_uninstall_cli(sub: Any, default_data_dir: str) -> None:
    u = sub.add_parser("uninstall", help="remove kubelite's state outside its data dir (no pods may run)")
    u.add_argument("--data-dir", default=default_data_dir, help="kubelite's data dir (default: $KUBELITE_DATA_DIR or /var/lib/kubelite)")
    u.add_argument("--purge", action="store_true", help="also remove the data dir")
    u.set_defaults(func=cmd_uninstall)
