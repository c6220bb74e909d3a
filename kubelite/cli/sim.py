"""`kubelite sim --nodes N`: N hollow nodes (agent/hollow.py) against a real API server,
in one process or spread over ``--processes`` of them (kubemark's hollow-node pods)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
from pathlib import Path

from kubelite.config import DEFAULT_DATA_DIR


def add_hollow_flags(p: argparse.ArgumentParser) -> None:
    """The hollow nodes' shape and the fake runtime's latencies (sim and agent --runtime fake)."""
    p.add_argument("--fake-latencies", default="", metavar="NAME=SECONDS,...",
                   help="the fake runtime's latencies: sandbox_run, container_create, container_start, "
                        "container_stop, image_pull (default all 0)")
    p.add_argument("--node-cpu", default="4", help="each hollow node's cpu capacity (default 4)")
    p.add_argument("--node-memory", default="16Gi", help="each hollow node's memory capacity (default 16Gi)")
    p.add_argument("--max-pods", type=int, default=110, help="each hollow node's pod capacity (default 110)")
    p.add_argument("--lease-interval", type=float, default=10.0, metavar="SECONDS",
                   help="how often each node renews its Lease (default 10, the kubelet's; staggered)")
    p.add_argument("--node-status-interval", type=float, default=300.0, metavar="SECONDS",
                   help="how often each node re-posts its unchanged status (default 300, the kubelet's "
                        "nodeStatusReportFrequency; its Lease is the heartbeat)")


def hollow_config(args: argparse.Namespace) -> object:
    from kubelite.agent.fakeruntime import FakeLatencies
    from kubelite.agent.hollow import HollowConfig

    return HollowConfig(latencies=FakeLatencies.parse(args.fake_latencies), cpu=args.node_cpu,
                        memory=args.node_memory, max_pods=args.max_pods, lease_interval=args.lease_interval,
                        status_interval=args.node_status_interval)


def register_sim_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("sim", help="run hollow nodes (node agents over a fake runtime) against a server")
    p.add_argument("--nodes", type=int, required=True, help="how many hollow nodes")
    p.add_argument("--kubeconfig", default="", help="kubeconfig to reach the API (default: "
                                                    f"{DEFAULT_DATA_DIR}/kubeconfig.yaml)")
    p.add_argument("--server", default="", metavar="URL", help="the API server URL instead of the kubeconfig's")
    p.add_argument("--name-prefix", default="hollow-node-", help="node names are PREFIX0, PREFIX1, … (default hollow-node-)")
    p.add_argument("--start-index", type=int, default=0, help="the first node's number (default 0)")
    p.add_argument("--processes", type=int, default=1, help="spread the nodes over this many processes (default 1)")
    add_hollow_flags(p)
    p.set_defaults(func=cmd_sim)
    return p


def _child_argv(args: argparse.Namespace, start: int, count: int) -> list[str]:
    argv = [sys.executable, "-m", "kubelite", "sim", "--nodes", str(count), "--start-index", str(start),
            "--name-prefix", args.name_prefix, "--processes", "1", "--node-cpu", args.node_cpu,
            "--node-memory", args.node_memory, "--max-pods", str(args.max_pods),
            "--lease-interval", str(args.lease_interval), "--node-status-interval", str(args.node_status_interval)]
    if args.kubeconfig:
        argv += ["--kubeconfig", args.kubeconfig]
    if args.server:
        argv += ["--server", args.server]
    if args.fake_latencies:
        argv += ["--fake-latencies", args.fake_latencies]
    return argv


def cmd_sim(args: argparse.Namespace) -> int:
    from kubelite.agent.fakeruntime import FakeLatencies

    if args.nodes < 1 or args.processes < 1:
        sys.stderr.write("kubelite sim: --nodes and --processes must be at least 1\n")
        return 1
    try:
        FakeLatencies.parse(args.fake_latencies)
    except ValueError as exc:
        sys.stderr.write(f"kubelite sim: --fake-latencies: {exc}\n")
        return 1
    kubeconfig = args.kubeconfig or str(DEFAULT_DATA_DIR / "kubeconfig.yaml")
    if not Path(kubeconfig).exists():
        sys.stderr.write(f"kubelite sim: no kubeconfig at {kubeconfig}\n")
        return 1
    procs = min(args.processes, args.nodes)
    per = -(-args.nodes // procs)
    children: list[subprocess.Popen[bytes]] = []
    # the other processes' shares run in children; this process runs the first share
    for i in range(1, procs):
        start = args.start_index + i * per
        count = min(per, args.start_index + args.nodes - start)
        if count > 0:
            children.append(subprocess.Popen(_child_argv(args, start, count)))
    names = [f"{args.name_prefix}{i}" for i in range(args.start_index, args.start_index + min(per, args.nodes))]
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()

    async def main() -> None:
        from kubelite.agent.hollow import HollowConfig, run_hollow

        cfg = hollow_config(args)
        assert isinstance(cfg, HollowConfig)
        task = asyncio.create_task(run_hollow(kubeconfig, names, cfg, args.start_index, args.server))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        asyncio.run(main())
    finally:
        for c in children:
            c.terminate()
        for c in children:
            try:
                c.wait(15)
            except subprocess.TimeoutExpired:
                c.kill()
                c.wait()
    logging.getLogger("kubelite.agent.hollow").info("hollow nodes stopped")
    return 0
