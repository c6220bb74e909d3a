"""`kubelite dev cluster up | down | exec`: a multi-node cluster on this machine, each node in a
test host of its own (kubelite/devcluster/), as kind and k3d make them in containers.

    kubelite dev cluster up --nodes 3 [--etcd] [--kubeconfig FILE] [--data-dir D] [--subnet CIDR]
    kubectl --kubeconfig D/kubeconfig.yaml get nodes
    kubelite dev cluster exec kldev-2 -- ip addr
    kubelite dev cluster down [--data-dir D]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from kubelite.agent.podnet import BACKENDS
from kubelite.devcluster.cluster import DEFAULT_DATA_DIR, DEFAULT_NAME, DEFAULT_PORT
from kubelite.devcluster.testhost import DEFAULT_SUBNET


def cmd_up(args: argparse.Namespace) -> int:
    from kubelite.devcluster.cluster import ClusterError, ClusterSpec, DevCluster, TestHostError

    try:
        subnets = args.subnet or [DEFAULT_SUBNET]
        spec = ClusterSpec(data_dir=Path(args.data_dir), nodes=args.nodes, name=args.name, subnet=subnets[0],
                           extra_subnets=subnets[1:],
                           port=args.port, kubeconfig=Path(args.kubeconfig) if args.kubeconfig else None,
                           ready_timeout=args.timeout, flannel_backend=args.flannel_backend, etcd=args.etcd,
                           server_args=["--cluster-signing-duration", args.cluster_signing_duration]
                           if args.cluster_signing_duration else [])
    except ValueError as exc:
        sys.stderr.write(f"kubelite dev cluster up: {exc}\n")
        return 1
    cluster = DevCluster(spec.data_dir)
    try:
        cluster.up(spec)
    except (ClusterError, TestHostError, ValueError) as exc:
        sys.stderr.write(f"kubelite dev cluster up: {exc}\n")
        return 1
    kc = cluster.kubeconfig
    kubectl = Path(sys.executable).parent / "kubectl"
    on_etcd = f", objects in etcd at {cluster.state['etcd']['url']}" if "etcd" in cluster.state else ""
    sys.stdout.write(f"dev cluster {spec.name} is up: {spec.nodes} node(s) Ready, API at "
                     f"{cluster.state['server']['url']}{on_etcd}\n"
                     f"kubeconfig: {kc}\n"
                     f"try: {kubectl if kubectl.exists() else 'kubectl'} --kubeconfig {kc} get nodes\n"
                     f"stop it with: kubelite dev cluster down --data-dir {cluster.data_dir}\n")
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from kubelite.devcluster.cluster import DevCluster

    cluster = DevCluster(Path(args.data_dir))
    if not cluster.load():
        sys.stdout.write(f"no dev cluster recorded in {cluster.state_path}\n")
        return 0
    from kubelite.devcluster.cluster import ClusterError

    try:
        lines = cluster.down()
    except ClusterError as exc:
        sys.stderr.write(f"kubelite dev cluster down: {exc}\n")
        return 1
    for line in lines:
        sys.stdout.write(line + "\n")
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    from kubelite.devcluster.cluster import DevCluster

    cluster = DevCluster(Path(args.data_dir))
    if not cluster.load():
        sys.stderr.write(f"kubelite dev cluster exec: no dev cluster recorded in {cluster.state_path}\n")
        return 1
    host = next((h for h in cluster.hosts() if h.name == args.node), None)
    if host is None:
        names = ", ".join(h.name for h in cluster.hosts())
        sys.stderr.write(f"kubelite dev cluster exec: no node {args.node!r} (nodes: {names})\n")
        return 1
    argv = args.command[1:] if args.command[:1] == ["--"] else args.command
    enter = host.command(argv or [os.environ.get("SHELL", "/bin/sh")])
    os.execvp(enter[0], enter)
    return 0  # not reached


def register_dev_cli(sub: Any) -> None:
    dev = sub.add_parser("dev", help="development helpers: a multi-node cluster on this machine")
    ds = dev.add_subparsers(dest="dev_cmd", required=True)
    c = ds.add_parser("cluster", help="a server and N nodes, each node in its own network and mount namespace")
    cs = c.add_subparsers(dest="cluster_cmd", required=True)

    def data_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR),
                       help=f"the cluster's data dir: state, server, nodes (default {DEFAULT_DATA_DIR})")

    up = cs.add_parser("up", help="start a server and N nodes in test hosts, wait until all are Ready")
    data_dir(up)
    up.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3)")
    up.add_argument("--kubeconfig", default="", help="write the admin kubeconfig there (default DATA_DIR/kubeconfig.yaml)")
    up.add_argument("--name", default=DEFAULT_NAME,
                    help=f"prefix of the node, bridge and veth names (default {DEFAULT_NAME}: nodes {DEFAULT_NAME}-1 …)")
    up.add_argument("--subnet", action="append", metavar="CIDR",
                    help=f"the test hosts' IPv4 subnet; its first address is the API server's (default {DEFAULT_SUBNET}); "
                         "repeated, the nodes go on each subnet in turn, routed through this host (only "
                         "--flannel-backend vxlan joins their pods)")
    up.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"the API server's port (default {DEFAULT_PORT})")
    up.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the nodes to be Ready")
    up.add_argument("--flannel-backend", choices=BACKENDS, default="host-gw",
                    help="the nodes' pod network (the agents' --flannel-backend): host-gw (routes via the nodes' "
                         "addresses), vxlan (an overlay on flannel.1) or none (default host-gw)")
    up.add_argument("--etcd", action="store_true",
                    help="store the cluster in a single-member etcd (TLS, on 127.0.0.1) that up starts and down "
                         "stops, instead of the server's embedded SQLite")
    up.add_argument("--cluster-signing-duration", default="", metavar="DURATION",
                    help="the server's --cluster-signing-duration: the lifetime of the nodes' certificates, which "
                         "they renew at 70-90%% of it (default 8760h0m0s)")
    up.set_defaults(func=cmd_up)
    down = cs.add_parser("down", help="stop everything the cluster started and remove what it made")
    data_dir(down)
    down.set_defaults(func=cmd_down)
    ex = cs.add_parser("exec", help="run a command (default: a shell) inside a node's test host")
    data_dir(ex)
    ex.add_argument("node", help="the node's name")
    ex.add_argument("command", nargs=argparse.REMAINDER, help="the command and its arguments (after --)")
    ex.set_defaults(func=cmd_exec)
