"""Pod startup benchmark (not a test): create -> Running, kubelite beside `podman kube play`.

Starts its own full `kubelite server` (API + scheduler + node agent with its own containerd)
on a temporary data dir, then measures, for a 2-container pod (kuard + a busybox sidecar
running `sleep 3600`, offline images from build/images):

1. one pod at a time (--pods, default 30): time from the create request to the watch event
   where the pod is Running with every container ready; p50/p90/p99/max;
2. a batch (--batch, default 110 = the node's max pods) created concurrently: time until
   all are Running (the pods of step 1 are deleted first, and gone from the node);
3. podman (4.x, from apt): `podman kube play` of the same manifest, one pod at a time,
   timed until podman reports the infra container and both containers running; podman gets
   a containers.conf, storage and network of its own under the temporary dir;
4. a table: kubelite and podman p50/p99, their ratio, the batch time, RSS of the server,
   containerd and the shims.

With --trace the server runs inside this script with timing hooks on the agent's CRI calls,
its pod watch and its status writes; the bench then prints where each pod's time went.

    make setup && .venv/bin/python bench/pod_startup.py [--pods 30] [--batch 110] [--trace]
                                                        [--skip-podman] [--skip-batch]

Everything it starts is torn down at the end, also on Ctrl-C or errors: pods deleted (and
their containers gone), the server stopped, podman pods/network/storage removed, the
temporary dir removed, the `kubelite0` bridge deleted when nothing is attached to it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
IMAGES_DIR = REPO / "build" / "images"
KUARD = "kubelite.local/kuard-amd64:blue"
BUSYBOX = "kubelite.local/busybox:latest"
PAUSE = "kubelite.local/pause:3.10"
NAMESPACE = "default"
LABEL = "pod-startup-bench"
BRIDGE = "kubelite0"

Obj = dict[str, Any]
now = time.monotonic  # CLOCK_MONOTONIC: comparable across processes on Linux (used by --trace)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- numbers
def pct(xs: list[float], p: float) -> float:
    """Nearest-rank percentile (p99 of 30 samples is the maximum)."""
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = max(0, min(len(xs) - 1, -(-len(xs) * p // 100) - 1))
    return xs[int(k)]


def summary(xs: list[float]) -> str:
    if not xs:
        return "n=0"
    return (f"n={len(xs):<3} p50={pct(xs, 50):6.3f}s  p90={pct(xs, 90):6.3f}s  p99={pct(xs, 99):6.3f}s  "
            f"max={max(xs):6.3f}s  mean={statistics.fmean(xs):6.3f}s")


def pod_manifest(name: str) -> Obj:
    """The one manifest both platforms run. No `ports`: podman 4.3 `kube play` publishes every
    containerPort on the host, which kubelite does not do (and 30 pods would clash on 8080).
    imagePullPolicy IfNotPresent: the images are offline; podman would pull `:latest` otherwise."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": LABEL}},
        "spec": {
            "containers": [
                {"name": "kuard", "image": KUARD, "imagePullPolicy": "IfNotPresent"},
                {"name": "sidecar", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                 "command": ["sleep", "3600"]},
            ],
        },
    }


def running_ready(pod: Obj) -> bool:
    st = pod.get("status") or {}
    cs = st.get("containerStatuses") or []
    n = len(pod.get("spec", {}).get("containers") or [])
    return st.get("phase") == "Running" and len(cs) == n and all(c.get("ready") for c in cs)


# ---------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers do not count
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


def mem_of(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes of one process, (0, 0) when it is gone."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Pss:"):
                pss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, pss


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def processes_matching(exe_name: str, needle: str) -> list[int]:
    """PIDs whose argv[0] ends with exe_name and whose command line contains needle."""
    found = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].decode(errors="replace").endswith(exe_name) and needle.encode() in b" ".join(argv):
            found.append(int(p.name))
    return found


def machine_cpu() -> float:
    """CPU-seconds the whole machine has been busy (all CPUs; /proc/stat minus idle and iowait)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")


def mb(b: float) -> str:
    return f"{b / 2**20:.1f} MB"


def unmount_under(d: Path) -> None:
    prefix = str(d) + "/"
    mps = [ln.split()[1] for ln in Path("/proc/self/mounts").read_text().splitlines()
           if ln.split()[1].startswith(prefix)]
    for mp in sorted(mps, key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)


def bridge_ports() -> list[str]:
    p = subprocess.run(["ip", "-o", "link", "show", "master", BRIDGE], capture_output=True, text=True)
    return [ln.split(":")[1].strip().split("@")[0] for ln in p.stdout.splitlines() if ln.strip()]


def bridge_addresses() -> list[str]:
    p = subprocess.run(["ip", "-o", "-4", "addr", "show", "dev", BRIDGE], capture_output=True, text=True)
    return [ln.split()[3] for ln in p.stdout.splitlines() if len(ln.split()) > 3]


def pod_cgroup_uids() -> set[str]:
    """Pod uids that have a pod cgroup (kubepods[/burstable|/besteffort]/pod<uid>) on the machine."""
    out: set[str] = set()
    base = Path("/sys/fs/cgroup/memory/kubepods")
    if not base.is_dir():
        base = Path("/sys/fs/cgroup/kubepods")  # cgroup v2
    for d in (base, base / "burstable", base / "besteffort"):
        with contextlib.suppress(OSError):
            out.update(c.name[3:] for c in d.iterdir() if c.name.startswith("pod") and c.is_dir())
    return out


def other_kubelite_nodes() -> list[str]:
    """Why this machine is not free for a node agent now (another kubelite node runs pods here)."""
    why = []
    if port_in_use(10250):
        why.append("port 10250 (a node agent's endpoint) is in use")
    ports = bridge_ports()
    if ports:
        why.append(f"bridge {BRIDGE} ({', '.join(bridge_addresses())}) has {len(ports)} pods of another node attached")
    uids = pod_cgroup_uids()
    if uids:
        why.append(f"{len(uids)} pod cgroups of another node exist")
    return why


def wait_machine_free(timeout: float) -> None:
    """kubelite's node agent assumes it is alone on the machine: one `kubelite0` bridge, port
    10250, and one `kubepods` cgroup tree whose unknown pods its housekeeping kills as orphans
    (every 10 s) -- so two nodes on one machine kill each other's pods. Wait until another
    node (an e2e run, `make run`) has no pods here instead of disturbing each other."""
    deadline = now() + timeout
    why = other_kubelite_nodes()
    if why:
        log(f"waiting up to {timeout:.0f}s for the machine: {'; '.join(why)}")
    while why:
        if now() > deadline:
            log("warning: going ahead although " + "; ".join(why) + " (figures may be disturbed)")
            return
        time.sleep(1)
        why = other_kubelite_nodes()


class MachineMonitor:
    """Samples, during the run, what would mean another kubelite node shared the machine with
    the bench: pod cgroups of pods that are not the bench's, a second pod CIDR on kubelite0."""

    def __init__(self, ours_gateway: str, our_uids: set[str]) -> None:
        self.ours_gateway = ours_gateway
        self.our_uids = our_uids
        self.seen_uids: set[str] = set()
        self.foreign_addrs: set[str] = set()
        self.armed = False  # bridge addresses count once our first pod ran (a stale bridge goes then)
        self._stop = False
        import threading

        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            self.seen_uids |= pod_cgroup_uids()
            if self.armed:
                self.foreign_addrs.update(a for a in bridge_addresses() if a != self.ours_gateway)
            time.sleep(0.5)

    def stop(self) -> None:
        self._stop = True

    def findings(self) -> list[str]:
        out = []
        foreign = self.seen_uids - self.our_uids
        if foreign:
            out.append(f"{len(foreign)} pods of another kubelite node ran on this machine during the bench")
        if self.foreign_addrs:
            out.append(f"bridge {BRIDGE} also carried {sorted(self.foreign_addrs)}")
        return out


def bridge_exists() -> bool:
    return subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode == 0


# ---------------------------------------------------------------------------- kubelite
class KubeliteServer:
    """`kubelite server` (full: API, scheduler, agent + containerd) on a temporary data dir."""

    def __init__(self, base: Path, node_name: str = "", trace_file: Path | None = None) -> None:
        self.base = base
        self.data_dir = base / "data"
        self.port = free_port()
        self.node_name = node_name
        self.trace_file = trace_file
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = base / "server.log"

    @property
    def kubeconfig(self) -> Path:
        return self.data_dir / "kubeconfig.yaml"

    @property
    def containerd_socket(self) -> Path:
        from kubelite.agent.containerd import socket_path_for

        return socket_path_for(self.data_dir)

    def start(self, timeout: float = 60.0) -> None:
        args = ["server", "--data-dir", str(self.data_dir), "--bind-address", "127.0.0.1", "--port", str(self.port)]
        if self.node_name:
            args += ["--node-name", self.node_name]
        if self.trace_file is not None:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--_traced-server", str(self.trace_file), "--", *args]
        else:
            cmd = [sys.executable, "-m", "kubelite", *args]
        # its own session: a Ctrl-C to the bench must not stop the server before the pods are deleted
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(self.log_path, "wb"),
                                     start_new_session=True, cwd=REPO)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        deadline = now() + timeout
        while now() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kubelite server exited ({self.proc.returncode}); see {self.log_path}:\n"
                                   + self.log_path.read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{self.port}/readyz", context=ctx, timeout=1) as r:
                    if r.read() == b"ok" and self.kubeconfig.exists():
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"kubelite server not ready after {timeout:.0f}s; see {self.log_path}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def containerd_pid(self) -> int | None:
        try:
            pid = int((self.data_dir / "containerd" / "containerd.pid").read_text().split()[0])
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError, IndexError):
            return None

    def shim_pids(self) -> list[int]:
        # containerd-shim-runc-v2 -namespace k8s.io -id ... -address <our containerd socket>
        return processes_matching("containerd-shim-runc-v2", str(self.containerd_socket))

    def ctr(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ctr", "--address", str(self.containerd_socket), "-n", "k8s.io", *args],
                              capture_output=True, text=True, timeout=timeout)

    def node_containers(self) -> list[str]:
        """Containers and sandboxes containerd still has (empty when the node is clean)."""
        p = self.ctr("containers", "ls", "-q")
        if p.returncode != 0:
            raise RuntimeError(p.stderr.strip())
        return p.stdout.split()

    def wait_node_empty(self, timeout: float = 120.0) -> None:
        deadline = now() + timeout
        left: list[str] = []
        while now() < deadline:
            try:
                left = self.node_containers()
            except (RuntimeError, subprocess.TimeoutExpired, OSError):
                return  # containerd is gone: nothing to wait for
            if not left:
                return
            time.sleep(0.2)
        log(f"warning: {len(left)} containers still on the node after {timeout:.0f}s")

    def kubectl(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubelite", "kubectl", "--data-dir", str(self.data_dir), *args],
                              capture_output=True, text=True, timeout=timeout, cwd=REPO)

    def stop(self, timeout: float = 60.0) -> None:
        """Delete the bench's pods (and wait until their containers are gone), then SIGTERM."""
        if self.pid is None:
            return
        with contextlib.suppress(Exception):
            self.kubectl("delete", "pods", "-n", NAMESPACE, "-l", f"app={LABEL}", "--grace-period=1",
                         "--wait=true", "--timeout=150s", timeout=180)
        with contextlib.suppress(Exception):
            self.wait_node_empty(90)
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log("server did not stop after SIGTERM: SIGKILL")
            self.proc.kill()
            self.proc.wait()

    def cleanup_leftovers(self) -> None:
        """After stop(): shims of our containerd that survived (pods not deleted), mounts."""
        cpid = self.containerd_pid()
        if cpid is not None:  # the server was killed before it could stop containerd
            with contextlib.suppress(OSError):
                os.kill(cpid, signal.SIGTERM)
            time.sleep(2)
            with contextlib.suppress(OSError):
                os.kill(cpid, signal.SIGKILL)
        shims = self.shim_pids()
        if shims:
            log(f"killing {len(shims)} leftover shims of this bench's containerd")
        for pid in shims:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        unmount_under(self.data_dir)


async def wait_node_ready(client: Any, timeout: float = 180.0) -> str:
    deadline = now() + timeout
    while now() < deadline:
        lst = await client.list("v1", "nodes")
        for n in lst.get("items") or []:
            conds = {c["type"]: c["status"] for c in (n.get("status") or {}).get("conditions") or []}
            if conds.get("Ready") == "True":
                return n["metadata"]["name"]
        await asyncio.sleep(0.2)
    raise RuntimeError(f"no Ready node after {timeout:.0f}s")


class PodWatch:
    """One watch over the bench's pods: first-seen times of each stage per pod name."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.stages: dict[str, dict[str, float]] = defaultdict(dict)
        self.pods: dict[str, Obj] = {}
        self.uids: set[str] = set()
        self._waiters: dict[tuple[str, str], asyncio.Future[float]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        lst = await self.client.list("v1", "pods", namespace=NAMESPACE, labelSelector=f"app={LABEL}")
        for p in lst.get("items") or []:
            self.pods[p["metadata"]["name"]] = p
        self._task = asyncio.create_task(self._run(lst["metadata"]["resourceVersion"]))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    def _mark(self, name: str, stage: str, t: float) -> None:
        if stage in self.stages[name]:
            return
        self.stages[name][stage] = t
        fut = self._waiters.pop((name, stage), None)
        if fut is not None and not fut.done():
            fut.set_result(t)

    def wait(self, name: str, stage: str) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if stage in self.stages.get(name, {}):
            fut.set_result(self.stages[name][stage])
        else:
            self._waiters[(name, stage)] = fut
        return fut

    def forget(self, name: str) -> None:
        self.stages.pop(name, None)

    async def _run(self, rv: str) -> None:
        while True:
            try:
                async for typ, obj in self.client.watch("v1", "pods", namespace=NAMESPACE, resource_version=rv,
                                                        timeout_seconds=3600, labelSelector=f"app={LABEL}"):
                    t = now()
                    rv = obj.get("metadata", {}).get("resourceVersion") or rv
                    if typ == "BOOKMARK":
                        continue
                    name = obj["metadata"]["name"]
                    if typ == "DELETED":
                        self.pods.pop(name, None)
                        self._mark(name, "deleted", t)
                        continue
                    self.pods[name] = obj
                    self.uids.add(obj["metadata"].get("uid", ""))
                    st = obj.get("status") or {}
                    if obj.get("spec", {}).get("nodeName"):
                        self._mark(name, "bound", t)
                    if st.get("containerStatuses"):
                        self._mark(name, "status", t)  # the agent's first status write
                    if running_ready(obj):
                        self._mark(name, "running", t)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a dropped stream: resume from the last resourceVersion
                log(f"pod watch restarted: {exc!r}")
                await asyncio.sleep(0.2)


async def warning_events(client: Any) -> dict[str, int]:
    """Warning events of the bench's pods, counted by reason and (shortened) message."""
    counts: dict[str, int] = defaultdict(int)
    with contextlib.suppress(Exception):
        lst = await client.list("v1", "events", namespace=NAMESPACE)
        for e in lst.get("items") or []:
            if e.get("type") == "Warning":
                msg = (e.get("message") or "")[:160]
                counts[f"{e.get('reason')}: {msg}"] += int(e.get("count") or 1)
    return dict(counts)


async def create_pod(client: Any, name: str) -> float:
    await client.create("v1", "pods", pod_manifest(name), namespace=NAMESPACE)
    return now()


async def delete_pods_and_wait(client: Any, watch: PodWatch, server: KubeliteServer, names: list[str],
                               timeout: float = 180.0) -> float:
    """Delete pods, wait for their DELETED events and for the node to have no containers left."""
    from kubelite.api import errors

    t0 = now()
    waits = [watch.wait(n, "deleted") for n in names]

    async def one(n: str) -> None:
        try:
            await client.delete("v1", "pods", n, namespace=NAMESPACE, grace_period_seconds=1)
        except errors.StatusError as exc:
            if exc.code != 404:
                raise
            fut = watch._waiters.pop((n, "deleted"), None)
            if fut is not None and not fut.done():
                fut.set_result(now())

    sem = asyncio.Semaphore(20)

    async def limited(n: str) -> None:
        async with sem:
            await one(n)

    await asyncio.gather(*(limited(n) for n in names))
    try:
        await asyncio.wait_for(asyncio.gather(*waits), timeout)
    except TimeoutError:
        log(f"warning: not all pods deleted after {timeout:.0f}s: {sorted(watch.pods)[:5]} ...")
    await asyncio.to_thread(server.wait_node_empty, 120)
    for n in names:
        watch.forget(n)
    return now() - t0


def node_memory(server: KubeliteServer) -> dict[str, float]:
    out: dict[str, float] = {}
    if server.pid:
        out["server_rss"], out["server_pss"] = mem_of(server.pid)
        out["server_cpu"] = cpu_seconds(server.pid)
    cpid = server.containerd_pid()
    if cpid:
        out["containerd_rss"], out["containerd_pss"] = mem_of(cpid)
        out["containerd_cpu"] = cpu_seconds(cpid)
    shims = server.shim_pids()
    mems = [mem_of(p) for p in shims]
    out["shims"] = len(shims)
    out["shims_rss"] = sum(m[0] for m in mems)
    out["shims_pss"] = sum(m[1] for m in mems)
    return out


async def run_kubelite(args: argparse.Namespace, server: KubeliteServer, results: dict[str, Any]) -> None:
    from kubelite.client.api import Client

    async with Client.from_kubeconfig(server.kubeconfig, user_agent="bench-pod-startup",
                                      limit=args.batch + 20) as client:
        node = await wait_node_ready(client)
        log(f"node {node} is Ready")
        watch = PodWatch(client)
        watch.uids = results["our_uids"]  # shared with the machine monitor
        await watch.start()
        try:
            # warm-up (not counted): first pod start pays one-off costs (bridge, cgroup roots, ...)
            for i in range(args.warmup):
                name = f"warm-{i}"
                t0 = now()
                await create_pod(client, name)
                await asyncio.wait_for(watch.wait(name, "running"), 120)
                log(f"warm-up pod Running after {now() - t0:.3f}s")
            if results.get("monitor") is not None:
                results["monitor"].armed = True
            await delete_pods_and_wait(client, watch, server, [f"warm-{i}" for i in range(args.warmup)])

            # 1. one at a time
            seq: list[float] = []
            breakdown: dict[str, list[float]] = defaultdict(list)
            sent: dict[str, float] = {}
            names = [f"seq-{i}" for i in range(args.pods)]
            cpu0 = node_memory(server)
            mcpu0 = machine_cpu()
            for name in names:
                await asyncio.sleep(args.gap)
                t0 = now()
                sent[name] = t0
                t_created = await create_pod(client, name)
                t_run = await asyncio.wait_for(watch.wait(name, "running"), 120)
                seq.append(t_run - t0)
                st = watch.stages[name]
                breakdown["create request"].append(t_created - t0)
                if "bound" in st:
                    breakdown["create -> bound seen"].append(st["bound"] - t0)
                if "status" in st and "bound" in st:
                    breakdown["bound -> first status w/ containers"].append(st["status"] - st["bound"])
                if "status" in st:
                    breakdown["... -> Running seen"].append(t_run - st["status"])
            results["seq"] = seq
            results["seq_breakdown"] = breakdown
            results["seq_sent"] = sent
            results["seq_stages"] = {n: dict(watch.stages[n]) for n in names}
            mem = node_memory(server)
            mem["server_cpu_per_pod"] = (mem.get("server_cpu", 0) - cpu0.get("server_cpu", 0)) / max(1, len(names))
            mem["containerd_cpu_per_pod"] = ((mem.get("containerd_cpu", 0) - cpu0.get("containerd_cpu", 0))
                                             / max(1, len(names)))
            mem["machine_cpu_per_pod"] = (machine_cpu() - mcpu0) / max(1, len(names))
            results["mem_seq"] = mem
            log(f"kubelite one at a time: {summary(seq)}")
            dt = await delete_pods_and_wait(client, watch, server, names)
            results["delete_seq"] = dt
            log(f"deleted {len(names)} pods (containers gone) in {dt:.1f}s")

            # 2. the batch
            if args.batch:
                bnames = [f"batch-{i}" for i in range(args.batch)]
                waits = {n: watch.wait(n, "running") for n in bnames}
                cpu_b0 = machine_cpu()
                t0 = now()
                created = await asyncio.gather(*(create_pod(client, n) for n in bnames))
                t_created_all = max(created) - t0
                try:
                    done = await asyncio.wait_for(asyncio.gather(*waits.values()), args.batch_timeout)
                    results["batch_all"] = max(done) - t0
                    results["batch_each"] = [d - t0 for d in done]
                except TimeoutError:
                    n_run = sum(1 for f in waits.values() if f.done())
                    results["batch_all"] = float("nan")
                    results["batch_each"] = [f.result() - t0 for f in waits.values() if f.done()]
                    log(f"batch: only {n_run}/{len(bnames)} Running after {args.batch_timeout:.0f}s")
                results["batch_cpu"] = machine_cpu() - cpu_b0
                results["mem_batch"] = node_memory(server)
                results["batch_created"] = t_created_all
                results["batch_stages"] = {n: dict(watch.stages[n]) for n in bnames}
                results["batch_t0"] = t0
                log(f"kubelite batch of {len(bnames)}: all Running after {results['batch_all']:.2f}s "
                    f"(creates acknowledged after {t_created_all:.2f}s); per pod {summary(results['batch_each'])}")
                results["warnings"] = await warning_events(client)
                dt = await delete_pods_and_wait(client, watch, server, bnames, timeout=300)
                results["delete_batch"] = dt
                log(f"deleted {len(bnames)} pods (containers gone) in {dt:.1f}s")
        finally:
            await watch.stop()


# ---------------------------------------------------------------------------- podman
class Podman:
    """podman with everything (config, storage, network) under one temporary dir."""

    def __init__(self, base: Path, subnet: str) -> None:
        self.base = base
        self.subnet = subnet
        self.network = f"klbench{os.getpid()}"
        self.env = dict(os.environ, CONTAINERS_CONF=str(base / "containers.conf"),
                        CONTAINERS_STORAGE_CONF=str(base / "storage.conf"))
        self.env.pop("CONTAINER_HOST", None)
        self.network_created = False

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(["podman", *args], capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args)} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
        return p

    def setup(self) -> None:
        if shutil.which("podman") is None:
            raise RuntimeError("podman is not installed (apt-get install -y podman)")
        b = self.base
        for d in ("root", "runroot", "tmp", "net", "manifests"):
            (b / d).mkdir(parents=True, exist_ok=True)
        (b / "containers.conf").write_text(f"""\
[containers]
# CAP_SYS_RESOURCE is missing here: the defaults would raise RLIMIT_NOFILE above the hard limit
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{b}/events.log"
tmp_dir = "{b}/tmp"
volume_path = "{b}/root/volumes"
runtime = "runc"
# offline: the same catatonit pause image kubelite's containerd uses
infra_image = "{PAUSE}"

[network]
network_backend = "cni"
network_config_dir = "{b}/net"
cni_plugin_dirs = ["/usr/lib/cni"]
# podman's default network (unused: pods join our own network below) must not take our subnet
default_subnet = "10.92.255.0/24"
""")
        (b / "storage.conf").write_text(f"""\
[storage]
driver = "overlay"
graphroot = "{b}/root"
runroot = "{b}/runroot"
""")
        for ref, archive in ((PAUSE, "pause-3.10.tar"), (BUSYBOX, "busybox-latest.tar"),
                             (KUARD, "kuard-amd64-blue.tar")):
            path = IMAGES_DIR / archive
            if not path.exists():
                raise RuntimeError(f"{path} is missing: run `make setup`")
            image_id = self.run("pull", "-q", f"oci-archive:{path}").stdout.split()[-1]
            self.run("tag", image_id, ref)
        # a network of our own (its own bridge cni-podmanN), removed at the end
        self.run("network", "create", "--subnet", self.subnet, self.network)
        self.network_created = True

    def version(self) -> str:
        return self.run("version", "--format", "{{.Client.Version}}").stdout.strip()

    def manifest(self, name: str) -> Path:
        import yaml

        path = self.base / "manifests" / f"{name}.yaml"
        path.write_text(yaml.safe_dump(pod_manifest(name)))
        return path

    def states(self, name: str) -> list[str]:
        p = self.run("pod", "inspect", name, "--format", "{{range .Containers}}{{.State}} {{end}}", check=False)
        return p.stdout.split()

    def play(self, name: str, timeout: float = 60) -> tuple[float, float]:
        """(seconds until `kube play` returned, seconds until `pod inspect` confirmed all running)."""
        path = self.manifest(name)
        t0 = now()
        self.run("kube", "play", "--network", self.network, str(path))
        t_play = now() - t0
        deadline = t0 + timeout
        while True:
            st = self.states(name)
            if len(st) == 3 and all(s == "running" for s in st):  # infra + kuard + sidecar
                return t_play, now() - t0
            if now() > deadline:
                raise RuntimeError(f"podman pod {name} not running after {timeout:.0f}s: {st}")
            time.sleep(0.02)

    def pods_rm(self) -> None:
        self.run("pod", "rm", "-f", "-t", "0", "-a", check=False, timeout=300)

    def teardown(self) -> None:
        with contextlib.suppress(Exception):
            self.pods_rm()
        if self.network_created:
            with contextlib.suppress(Exception):
                self.run("network", "rm", "-f", self.network, check=False)
        with contextlib.suppress(Exception):
            self.run("system", "reset", "-f", check=False, timeout=120)
        # CNI host-local IPAM state of our network lives outside the temp dir
        shutil.rmtree(f"/var/lib/cni/networks/{self.network}", ignore_errors=True)
        with contextlib.suppress(OSError):
            Path("/var/lib/cni/networks").rmdir()  # only when empty
        unmount_under(self.base)


def run_podman(args: argparse.Namespace, base: Path, results: dict[str, Any]) -> Podman:
    pm = Podman(base, args.podman_subnet)
    results["podman_obj"] = pm
    pm.setup()
    results["podman_version"] = pm.version()
    for i in range(args.warmup):
        t_play, t_seen = pm.play(f"pm-warm-{i}")
        log(f"podman warm-up pod running after {t_seen:.3f}s (kube play {t_play:.3f}s)")
    pm.pods_rm()
    play, seen = [], []
    for i in range(args.pods):
        time.sleep(args.gap)
        a, b = pm.play(f"pm-{i}")
        play.append(a)
        seen.append(b)
    results["podman_play"] = play
    results["podman_seen"] = seen
    log(f"podman kube play returned:       {summary(play)}")
    log(f"podman running confirmed (+inspect): {summary(seen)}")
    pm.pods_rm()
    return pm


# ---------------------------------------------------------------------------- trace (--trace)
def traced_server(trace_path: str, server_args: list[str]) -> int:
    """Run `kubelite server` in this process with timing hooks (CLOCK_MONOTONIC, one JSON line
    per event) on: the agent's pod-watch dispatch, every CRI call (with the pod it is for),
    status writes, and pod worker syncs. Only used with --trace; no project code is changed."""
    import threading

    from kubelite.agent import agent as agent_mod
    from kubelite.agent import cri as cri_mod
    from kubelite.agent import status as status_mod
    from kubelite.agent import worker as worker_mod

    out = open(trace_path, "a", buffering=1)  # noqa: SIM115
    lock = threading.Lock()
    cid_pod: dict[str, str] = {}
    sb_pod: dict[str, str] = {}

    def emit(**kw: Any) -> None:
        with lock:
            out.write(json.dumps(kw) + "\n")

    def pod_of(method: str, req: Any) -> str:
        try:
            if method == "RunPodSandbox":
                return req.config.metadata.name
            if method in ("CreateContainer",):
                return req.sandbox_config.metadata.name
            if method in ("StartContainer", "StopContainer", "RemoveContainer", "ContainerStatus"):
                return cid_pod.get(req.container_id, "")
            if method in ("StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus"):
                return sb_pod.get(req.pod_sandbox_id, "")
        except AttributeError:
            pass
        return ""

    class TimedStub:
        def __init__(self, stub: Any) -> None:
            self._stub = stub

        def __getattr__(self, method: str) -> Any:
            fn = getattr(self._stub, method)
            if not callable(fn):
                return fn

            async def call(req: Any, *a: Any, **kw: Any) -> Any:
                t0 = time.monotonic()
                ok = True
                try:
                    resp = await fn(req, *a, **kw)
                    return resp
                except BaseException:
                    ok = False
                    raise
                finally:
                    t1 = time.monotonic()
                    pod = pod_of(method, req)
                    if ok and method == "CreateContainer":
                        cid_pod[resp.container_id] = pod
                    if ok and method == "RunPodSandbox":
                        sb_pod[resp.pod_sandbox_id] = pod
                    emit(ev="cri", m=method, pod=pod, t0=t0, t1=t1, ok=ok)
            return call

    orig_init = cri_mod.CRI.__init__

    def cri_init(self: Any, channel: Any, socket_path: Any) -> None:
        orig_init(self, channel, socket_path)
        self.runtime = TimedStub(self.runtime)
        self.image = TimedStub(self.image)

    cri_mod.CRI.__init__ = cri_init  # type: ignore[method-assign]

    orig_dispatch = agent_mod.Agent._dispatch

    def dispatch(self: Any, pod: Obj) -> None:
        emit(ev="dispatch", pod=pod["metadata"]["name"], t=time.monotonic(),
             phase=(pod.get("status") or {}).get("phase", ""), deleting=bool(pod["metadata"].get("deletionTimestamp")))
        orig_dispatch(self, pod)

    agent_mod.Agent._dispatch = dispatch  # type: ignore[method-assign]

    orig_patch = status_mod.StatusManager._patch

    async def patch(self: Any, uid: str, ns: str, name: str, status: Obj) -> None:
        t0 = time.monotonic()
        try:
            await orig_patch(self, uid, ns, name, status)
        finally:
            cs = status.get("containerStatuses") or []
            emit(ev="status", pod=name, t0=t0, t1=time.monotonic(), phase=status.get("phase"),
                 ready=sum(1 for c in cs if c.get("ready")), queued=len(self._pending))

    status_mod.StatusManager._patch = patch  # type: ignore[method-assign]

    orig_sync = worker_mod.PodWorker._sync

    async def sync(self: Any) -> float:
        t0 = time.monotonic()
        try:
            return await orig_sync(self)
        finally:
            emit(ev="sync", pod=self.pod["metadata"]["name"], t0=t0, t1=time.monotonic())

    worker_mod.PodWorker._sync = sync  # type: ignore[method-assign]

    from kubelite.cli.main import main

    return main(server_args)


def analyse_trace(trace_path: Path, stages: dict[str, dict[str, float]], sent: dict[str, float]) -> list[str]:
    """Per-step medians (and p90) of where a pod's create -> Running time went."""
    per: dict[str, dict[str, Any]] = defaultdict(lambda: {"cri": [], "status": [], "sync": [], "dispatch": []})
    for line in trace_path.read_text().splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("pod") in sent:
            per[e["pod"]][e["ev"]].append(e)
    steps: dict[str, list[float]] = defaultdict(list)
    cri_totals: dict[str, list[float]] = defaultdict(list)
    for name, t_sent in sent.items():
        ev = per.get(name)
        st = stages.get(name, {})
        if not ev or "running" not in st:
            continue
        disp = [d["t"] for d in ev["dispatch"]]
        if not disp:
            continue
        t_disp = min(disp)
        steps["create sent -> agent sees pod (API, scheduler, watch)"].append(t_disp - t_sent)
        # only what happened before the bench saw it Running (not restarts, not the teardown)
        cri = sorted((c for c in ev["cri"] if c["t0"] < st["running"]), key=lambda c: c["t0"])
        first_cri = cri[0]["t0"] if cri else t_disp
        steps["agent sees pod -> first CRI call"].append(first_cri - t_disp)
        by: dict[str, float] = defaultdict(float)
        for c in cri:
            by[c["m"]] += c["t1"] - c["t0"]
        for m, v in by.items():
            cri_totals[m].append(v)
        run_sb = [c for c in cri if c["m"] == "RunPodSandbox"]
        starts = [c for c in cri if c["m"] == "StartContainer"]
        if run_sb and starts:
            steps["RunPodSandbox (incl. CNI)"].append(run_sb[0]["t1"] - run_sb[0]["t0"])
            steps["sandbox ready -> last container started"].append(max(s["t1"] for s in starts) - run_sb[0]["t1"])
        writes = sorted((w for w in ev["status"] if w["t0"] < st["running"]), key=lambda w: w["t0"])
        final = next((s for s in writes if s["phase"] == "Running" and s["ready"] == 2), None)
        if final and starts:
            steps["last container started -> Running status PATCH sent"].append(final["t0"] - max(s["t1"] for s in starts))
            steps["Running status PATCH (request)"].append(final["t1"] - final["t0"])
            steps["PATCH answered -> watch event at bench"].append(st["running"] - final["t1"])
        steps["status writes per pod (until Running)"].append(float(len(writes)))
        steps["syncs per pod (until Running)"].append(float(sum(1 for s in ev["sync"] if s["t0"] < st["running"])))
        steps["TOTAL create -> Running seen"].append(st["running"] - t_sent)
    lines = []
    for k, v in steps.items():
        unit = "" if k.endswith("per pod") or "per pod" in k else "s"
        lines.append(f"  {k:<55} p50={pct(v, 50):7.3f}{unit}  p90={pct(v, 90):7.3f}{unit}  max={max(v):7.3f}{unit}")
    if cri_totals:
        lines.append("  CRI time per pod by method (sum of calls, p50):")
        for m, v in sorted(cri_totals.items(), key=lambda kv: -pct(kv[1], 50)):
            lines.append(f"    {m:<28} p50={pct(v, 50):7.3f}s  p90={pct(v, 90):7.3f}s  (in {len(v)} pods)")
    return lines


# ---------------------------------------------------------------------------- main
def print_report(args: argparse.Namespace, results: dict[str, Any], trace: Path | None) -> None:
    print()
    print("=" * 78)
    print(f"pod startup, 2-container pod (kuard + busybox sidecar), {os.cpu_count()} CPUs")
    print("=" * 78)
    seq = results.get("seq") or []
    if seq:
        print(f"kubelite one at a time (create -> Running+ready seen on a watch): {summary(seq)}")
        for k, v in results.get("seq_breakdown", {}).items():
            print(f"    {k:<36} p50={pct(v, 50):6.3f}s  p99={pct(v, 99):6.3f}s")
    if "batch_all" in results:
        print(f"kubelite batch of {args.batch}: all Running after {results['batch_all']:.2f}s "
              f"(all creates acknowledged after {results['batch_created']:.2f}s); "
              f"per pod {summary(results.get('batch_each') or [])}")
    play, seen = results.get("podman_play") or [], results.get("podman_seen") or []
    if play:
        print(f"podman {results.get('podman_version', '')} kube play returned:          {summary(play)}")
        print(f"podman kube play + pod inspect confirms running:  {summary(seen)}")
    print()
    rows = [("", "p50", "p99", "max")]
    if seq:
        rows.append(("kubelite create -> Running (watch)", f"{pct(seq, 50):.3f}s", f"{pct(seq, 99):.3f}s",
                     f"{max(seq):.3f}s"))
    if play:
        rows.append(("podman kube play", f"{pct(play, 50):.3f}s", f"{pct(play, 99):.3f}s", f"{max(play):.3f}s"))
        rows.append(("podman kube play + inspect", f"{pct(seen, 50):.3f}s", f"{pct(seen, 99):.3f}s",
                     f"{max(seen):.3f}s"))
    if seq and play:
        rows.append(("ratio podman/kubelite (kube play)", f"{pct(play, 50) / pct(seq, 50):.2f}x",
                     f"{pct(play, 99) / pct(seq, 99):.2f}x", ""))
        rows.append(("ratio podman/kubelite (+inspect)", f"{pct(seen, 50) / pct(seq, 50):.2f}x",
                     f"{pct(seen, 99) / pct(seq, 99):.2f}x", ""))
    if "batch_all" in results:
        rows.append((f"kubelite batch of {args.batch}: all Running", f"{results['batch_all']:.2f}s", "", ""))
    w = max(len(r[0]) for r in rows)
    for r in rows:
        print(f"  {r[0]:<{w}}  {r[1]:>9}  {r[2]:>9}  {r[3]:>9}")
    print()
    for key, label in (("mem_seq", f"with {args.pods} pods"), ("mem_batch", f"with {args.batch} pods")):
        m = results.get(key)
        if not m:
            continue
        line = (f"  memory {label:<13} server RSS {mb(m.get('server_rss', 0))} (PSS {mb(m.get('server_pss', 0))}), "
                f"containerd RSS {mb(m.get('containerd_rss', 0))}, {m.get('shims', 0)} shims: "
                f"RSS {mb(m.get('shims_rss', 0) / max(1, m.get('shims', 0)))}/pod, "
                f"PSS {mb(m.get('shims_pss', 0) / max(1, m.get('shims', 0)))}/pod")
        print(line)
    m = results.get("mem_seq")
    if m and "server_cpu_per_pod" in m:
        print(f"  CPU per pod (one at a time): server {m['server_cpu_per_pod'] * 1000:.0f} ms, "
              f"containerd {m['containerd_cpu_per_pod'] * 1000:.0f} ms, whole machine "
              f"{m['machine_cpu_per_pod'] * 1000:.0f} ms (incl. shims, runc, CNI plugins, the bench itself)")
    if "batch_cpu" in results and results.get("batch_all") == results.get("batch_all"):
        busy = results["batch_cpu"] / (results["batch_all"] * (os.cpu_count() or 1))
        print(f"  batch: whole machine {results['batch_cpu'] / max(1, args.batch) * 1000:.0f} ms CPU per pod, "
              f"CPUs {busy:.0%} busy while the batch started")
    if results.get("warnings"):
        print("  Warning events during the run:")
        for k, v in sorted(results["warnings"].items(), key=lambda kv: -kv[1])[:8]:
            print(f"    {v:4d}x {k}")
    aims = []
    if seq:
        aims.append(f"p50 {pct(seq, 50):.3f}s {'<=' if pct(seq, 50) <= 0.4 else '>'} 0.4s")
        aims.append(f"p99 {pct(seq, 99):.3f}s {'<=' if pct(seq, 99) <= 1.0 else '>'} 1s")
    if "batch_all" in results:
        aims.append(f"batch {results['batch_all']:.2f}s {'<=' if results['batch_all'] <= 30 else '>'} 30s")
    if seq and play:
        aims.append("faster than podman" if pct(seq, 50) < pct(play, 50) else "slower than podman")
    if aims:
        print("  aims: " + "; ".join(aims))
    if trace is not None and trace.exists() and results.get("seq_sent"):
        print()
        print("where the time goes, one at a time (--trace; CLOCK_MONOTONIC across processes):")
        for line in analyse_trace(trace, results.get("seq_stages", {}), results["seq_sent"]):
            print(line)
        if results.get("batch_stages"):
            t0 = results["batch_t0"]
            print(f"where the time goes, batch of {args.batch} (all pods created at t0):")
            for line in analyse_trace(trace, results["batch_stages"],
                                      {n: t0 for n in results["batch_stages"]}):
                print(line)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--_traced-server":
        sep = sys.argv.index("--")
        return traced_server(sys.argv[2], sys.argv[sep + 1:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pods", type=int, default=30, help="pods created one at a time (each platform)")
    p.add_argument("--batch", type=int, default=110, help="pods created at once (0: skip)")
    p.add_argument("--batch-timeout", type=float, default=180.0)
    p.add_argument("--warmup", type=int, default=1, help="warm-up pods per platform, not counted")
    p.add_argument("--gap", type=float, default=0.2, help="pause between one-at-a-time pods (s)")
    p.add_argument("--skip-podman", action="store_true")
    p.add_argument("--skip-kubelite", action="store_true")
    p.add_argument("--node-name", default="", help="the server's node name (default: the hostname)")
    p.add_argument("--podman-subnet", default="10.91.0.0/24",
                   help="podman's network (not 10.88/16, 10.89/24 (podman's) nor 10.244/16 (kubelite's))")
    p.add_argument("--trace", action="store_true",
                   help="run the server with timing hooks and print where each pod's time goes")
    p.add_argument("--wait-free", type=float, default=600.0,
                   help="wait this long for another kubelite node on the machine to go away (s)")
    p.add_argument("--keep", action="store_true", help="keep the temporary dir (logs, trace) for inspection")
    args = p.parse_args()
    if args.skip_kubelite:
        args.batch = 0
    if args.batch > 110:
        p.error("the node takes at most 110 pods")
    if os.geteuid() != 0:
        p.error("needs root (containerd, CNI, cgroups)")

    # SIGTERM -> KeyboardInterrupt: the finally below cleans up either way
    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    base = Path(tempfile.mkdtemp(prefix="kl-pod-startup-"))
    trace = base / "trace.jsonl" if args.trace else None
    results: dict[str, Any] = {}
    server: KubeliteServer | None = None
    monitor: MachineMonitor | None = None
    our_uids: set[str] = set()
    results["our_uids"] = our_uids
    rc = 0
    try:
        if not args.skip_kubelite:
            wait_machine_free(args.wait_free)
            from kubelite.config import ServerConfig

            # the server's only node gets the first block of --cluster-cidr (node IPAM)
            cfg = ServerConfig(data_dir=base)
            net = next(ipaddress.ip_network(cfg.cluster_cidr).subnets(new_prefix=cfg.node_cidr_mask_size))
            monitor = results["monitor"] = MachineMonitor(f"{next(net.hosts())}/{net.prefixlen}", our_uids)
            log(f"load average {os.getloadavg()[0]:.2f} at start")
            server = KubeliteServer(base, args.node_name, trace)
            log(f"starting kubelite server (data dir {server.data_dir}, port {server.port}"
                + (", traced" if trace else "") + ")")
            server.start()
            asyncio.run(run_kubelite(args, server, results))
        if not args.skip_podman:
            log("podman: loading images, one pod at a time")
            try:
                run_podman(args, base / "podman", results)
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                log(f"podman run failed: {exc}")
                rc = 1
        print_report(args, results, trace)
        if monitor is not None and monitor.findings():
            print("  WARNING: " + "; ".join(monitor.findings()) + ": another kubelite node shared the machine "
                  "(its housekeeping kills pods it does not know), the figures are disturbed")
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        rc = 130
    except Exception as exc:
        log(f"error: {exc!r}; cleaning up")
        import traceback

        traceback.print_exc()
        rc = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let the cleanup finish
        if monitor is not None:
            monitor.stop()
        if server is not None:
            log("stopping kubelite (deleting pods first)")
            with contextlib.suppress(Exception):
                server.stop()
            with contextlib.suppress(Exception):
                server.cleanup_leftovers()
        pm = results.get("podman_obj")
        if pm is not None:
            log("podman teardown")
            with contextlib.suppress(Exception):
                pm.teardown()
        if bridge_exists() and not bridge_ports():
            subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        if args.keep:
            log(f"kept {base}")
        else:
            unmount_under(base)
            shutil.rmtree(base, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
