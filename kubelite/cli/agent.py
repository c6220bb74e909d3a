"""`kubelite agent`: the node agent on its own, against any kubelite (or Kubernetes) API."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
from pathlib import Path

from kubelite.config import DEFAULT_DATA_DIR


def register_agent_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``agent`` to the ``kubelite`` sub-commands; the parser's ``func`` runs it."""
    p = subparsers.add_parser("agent", help="run the node agent (kubelet) against an API server")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="where containerd, pods and logs live")
    p.add_argument("--kubeconfig", default="", help="kubeconfig to reach the API (default: DATA_DIR/kubeconfig.yaml)")
    p.add_argument("--node-name", default="", help="the Node's name (default: the hostname)")
    p.add_argument("--node-ip", default="", metavar="IP",
                   help="the Node's InternalIP (default: the source address of the default route)")
    p.add_argument("--flannel-backend", choices=["host-gw", "none"], default="host-gw",
                   help="how pods reach pods on other nodes: host-gw (a route to each node's pod CIDR via its "
                        "InternalIP; the nodes share a subnet) or none (default host-gw)")
    p.add_argument("--kubelet-port", type=int, default=10250, help="port advertised in daemonEndpoints")
    p.add_argument("--containerd-socket", default="", help="use this running containerd instead of starting one")
    p.add_argument("--images-dir", default="", help="offline image archives (default: build/images)")
    p.add_argument("--pod-max-pids", type=int, default=-1, metavar="N",
                   help="pids.max of every pod cgroup, as the kubelet's flag (-1: no limit)")
    p.add_argument("--allowed-unsafe-sysctls", default="", metavar="LIST",
                   help="comma-separated unsafe sysctls or sysctl patterns (ending in *) pods may set, as the "
                        "kubelet's flag (each must be namespaced: kernel.shm*, kernel.msg*, kernel.sem, "
                        "fs.mqueue.*, net.*)")
    p.add_argument("--pki-dir", default="", help="directory whose tls/ holds the cluster CA, for the agent's "
                                                 "HTTPS endpoint (default: DATA_DIR)")
    j = p.add_argument_group("joining a cluster", "used only when the kubeconfig does not exist yet: get a node "
                             "client certificate with a bootstrap token (kubelite token create) and write it")
    j.add_argument("--server", default="", help="the API server, https://HOST:PORT")
    j.add_argument("--token", default="", help="bootstrap token <id>.<secret>")
    j.add_argument("--ca-cert-hash", action="append", default=[], metavar="sha256:HEX",
                   help="pin of the cluster CA's public key (sha256 of its SubjectPublicKeyInfo)")
    j.add_argument("--ca-file", default="", help="the cluster CA certificate, instead of discovering it")
    p.set_defaults(func=cmd_agent)
    return p


def cmd_agent(args: argparse.Namespace) -> int:
    from kubelite.agent.agent import run_agent
    from kubelite.cli.common import LOG_FORMAT, LOG_LEVELS, split_list

    # a no-op under `kubelite` (main configured logging); for callers of the agent's parser alone
    logging.basicConfig(level=LOG_LEVELS[getattr(args, "log_level", "info")], format=LOG_FORMAT)
    data_dir = Path(args.data_dir).resolve()
    kubeconfig = Path(args.kubeconfig) if args.kubeconfig else data_dir / "kubeconfig.yaml"
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()

    join = not kubeconfig.exists() and bool(args.token or args.server)
    if join and not (args.token and args.server):
        sys.stderr.write("kubelite agent: joining needs both --server and --token\n")
        return 1
    failed: list[str] = []

    async def start() -> None:
        if join:
            from kubelite.agent.bootstrap import BootstrapError, bootstrap

            node = args.node_name or socket.gethostname().lower()
            try:
                await bootstrap(args.server, args.token, kubeconfig, node, ca_cert_hashes=args.ca_cert_hash,
                                ca_file=Path(args.ca_file) if args.ca_file else None)
            except BootstrapError as exc:
                failed.append(str(exc))
                return
        await run_agent(data_dir, kubeconfig, args.node_name, kubelet_port=args.kubelet_port,
                        containerd_socket=args.containerd_socket or None, images_dir=args.images_dir or None,
                        pki_dir=args.pki_dir or data_dir, pod_pids_limit=args.pod_max_pids, node_ip=args.node_ip,
                        flannel_backend=args.flannel_backend,
                        allowed_unsafe_sysctls=split_list(args.allowed_unsafe_sysctls))

    async def main() -> None:
        task = asyncio.create_task(start())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    from kubelite.agent.cgroups import CgroupError
    from kubelite.agent.sysctls import SysctlConfigError

    try:
        asyncio.run(main())
    except (CgroupError, SysctlConfigError):  # run_agent has logged why
        return 1
    if failed:
        sys.stderr.write(f"kubelite agent: cannot join the cluster: {failed[0]}\n")
        return 1
    return 0
