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

from kubelite.agent.podnet import BACKENDS
from kubelite.config import DEFAULT_DATA_DIR


def register_agent_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``agent`` to the ``kubelite`` sub-commands; the parser's ``func`` runs it."""
    p = subparsers.add_parser("agent", help="run the node agent (kubelet) against an API server")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="where containerd, pods and logs live")
    p.add_argument("--kubeconfig", default="", help="kubeconfig to reach the API (default: DATA_DIR/kubeconfig.yaml)")
    p.add_argument("--node-name", default="", help="the Node's name (default: the hostname)")
    p.add_argument("--node-ip", default="", metavar="IP",
                   help="the Node's InternalIP (default: the source address of the default route)")
    p.add_argument("--flannel-backend", choices=BACKENDS, default="host-gw",
                   help="how pods reach pods on other nodes: host-gw (a route to each node's pod CIDR via its "
                        "InternalIP; the nodes share a subnet), vxlan (an overlay, device flannel.1, VNI 1, UDP "
                        "port 8472; any nodes that reach each other's InternalIP) or none (default host-gw)")
    p.add_argument("--node-lease-duration-seconds", type=int, default=40, metavar="SECONDS",
                   help="the node Lease's duration, as the kubelet's nodeLeaseDurationSeconds; the agent renews it "
                        "every quarter of it (default 40; the server's --node-monitor-grace-period should be "
                        "longer than the renewal interval, several times)")
    p.add_argument("--kubelet-port", type=int, default=10250, help="port advertised in daemonEndpoints")
    p.add_argument("--containerd-socket", default="", help="use this running containerd instead of starting one")
    p.add_argument("--runtime", choices=["containerd", "fake"], default="containerd",
                   help="containerd (default), or fake: a hollow node over an in-process fake CRI runtime "
                        "(kubemark's; no containers, cgroups, mounts or pod network; needs no root)")
    p.add_argument("--images-dir", default="", help="offline image archives (default: build/images)")
    p.add_argument("--pod-max-pids", type=int, default=-1, metavar="N",
                   help="pids.max of every pod cgroup, as the kubelet's flag (-1: no limit)")
    p.add_argument("--allowed-unsafe-sysctls", default="", metavar="LIST",
                   help="comma-separated unsafe sysctls or sysctl patterns (ending in *) pods may set, as the "
                        "kubelet's flag (each must be namespaced: kernel.shm*, kernel.msg*, kernel.sem, "
                        "fs.mqueue.*, net.*)")
    p.add_argument("--disable-kube-proxy", action="store_true",
                   help="run no kube-proxy beside the agent (by default it programs this node's Service rules "
                        "with a system:kube-proxy certificate from a CSR, as k3s's agent does)")
    p.add_argument("--cluster-dns", default="", metavar="IP[,IP...]",
                   help="the nameservers of ClusterFirst pods, as the kubelet's flag (the server's kube-dns "
                        "ClusterIP, 10.43.0.10 by default; without it those pods get the node's resolv.conf)")
    p.add_argument("--cluster-domain", default="cluster.local", metavar="DOMAIN",
                   help="the cluster's DNS domain in pods' search paths (default cluster.local)")
    p.add_argument("--pki-dir", default="", help="a directory whose tls/ holds the cluster CA and its key, to issue "
                                                 "the agent endpoint's serving certificate from (a node beside the "
                                                 "server); without it the certificate comes from a kubelet-serving "
                                                 "CSR, as on every other node")
    j = p.add_argument_group("joining a cluster", "used only when the kubeconfig does not exist yet: get a node "
                             "client certificate with a bootstrap token (kubelite token create) and write it")
    p.add_argument("--server", action="append", default=[], metavar="URL[,URL...]",
                   help="the API server(s), https://HOST:PORT (repeatable or comma-separated); with several, "
                        "a local load balancer on --lb-server-port fails over between them (used to join too)")
    p.add_argument("--lb-server-port", type=int, default=6444, metavar="PORT",
                   help="local port of the client load balancer used with several --server URLs (default 6444)")
    j.add_argument("--token", default="", help="bootstrap token <id>.<secret>")
    j.add_argument("--ca-cert-hash", action="append", default=[], metavar="sha256:HEX",
                   help="pin of the cluster CA's public key (sha256 of its SubjectPublicKeyInfo)")
    j.add_argument("--ca-file", default="", help="the cluster CA certificate, instead of discovering it")
    from kubelite.cli.sim import add_hollow_flags

    add_hollow_flags(p.add_argument_group("with --runtime fake"))  # type: ignore[arg-type]
    p.set_defaults(func=cmd_agent)
    return p


def _client_certificate_expired(kubeconfig: Path, cert_dir: Path) -> bool:
    """True when neither the kubeconfig's client certificate nor the store's current one is
    valid now (a kubeconfig that cannot be read is left to the agent to report)."""
    import yaml

    from kubelite.agent.certmanager import FileStore, Pair
    from kubelite.client.api import kubeconfig_credentials

    try:
        _, _, cert, key, _ = kubeconfig_credentials(kubeconfig)
        if not cert or not key:
            return False
        pair = Pair.parse(cert, key)
    except (OSError, ValueError, KeyError, IndexError, TypeError, StopIteration, yaml.YAMLError):
        return False
    if pair.valid():
        return False
    stored = FileStore("kubelet-client", cert_dir).current()
    if stored is not None and stored.valid():
        return False
    logging.getLogger("kubelite.agent").warning(
        "part of the existing bootstrap client certificate in %s is expired: %s", kubeconfig,
        pair.leaf.not_valid_after_utc.strftime("%Y-%m-%d %H:%M:%S +0000 UTC"))
    return True


def _cmd_hollow_agent(args: argparse.Namespace, kubeconfig: Path) -> int:
    """``--runtime fake``: this node as one hollow node (agent/hollow.py)."""
    from kubelite.agent.hollow import HollowConfig, run_hollow
    from kubelite.cli.sim import hollow_config

    if not kubeconfig.exists():
        sys.stderr.write(f"kubelite agent: --runtime fake needs a kubeconfig ({kubeconfig} does not exist)\n")
        return 1
    try:
        cfg = hollow_config(args)
    except ValueError as exc:
        sys.stderr.write(f"kubelite agent: --fake-latencies: {exc}\n")
        return 1
    assert isinstance(cfg, HollowConfig)
    name = args.node_name or socket.gethostname().lower()
    server = lbmod_first(args.server)

    async def main() -> None:
        task = asyncio.create_task(run_hollow(str(kubeconfig), [name], cfg, 0, server))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    return 0


def lbmod_first(servers: list[str]) -> str:
    """The first --server URL (a hollow node talks to one server)."""
    from kubelite.agent import loadbalancer as lbmod

    try:
        parsed = lbmod.parse_servers(servers)
    except ValueError:
        return ""
    return parsed[0] if parsed else ""


def cmd_agent(args: argparse.Namespace) -> int:
    from kubelite.agent.agent import run_agent
    from kubelite.cli.common import LOG_FORMAT, LOG_LEVELS, split_list

    # a no-op under `kubelite` (main configured logging); for callers of the agent's parser alone
    logging.basicConfig(level=LOG_LEVELS[getattr(args, "log_level", "info")], format=LOG_FORMAT)
    data_dir = Path(args.data_dir).resolve()
    kubeconfig = Path(args.kubeconfig) if args.kubeconfig else data_dir / "kubeconfig.yaml"
    if args.runtime == "fake":
        return _cmd_hollow_agent(args, kubeconfig)
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()

    from kubelite.agent import loadbalancer as lbmod

    try:
        servers = lbmod.parse_servers(args.server)
    except ValueError as exc:
        sys.stderr.write(f"kubelite agent: {exc}\n")
        return 1
    import ipaddress

    for ip in split_list(args.cluster_dns):
        try:
            ipaddress.ip_address(ip)
        except ValueError:  # the kubelet's config validation
            sys.stderr.write(f"kubelite agent: --cluster-dns: invalid IP address {ip!r}\n")
            return 1
    # isClientConfigStillValid: a kubeconfig whose client certificate expired (the node was
    # off longer than the certificate lived) is replaced by joining again, when told how
    join = (not kubeconfig.exists() or _client_certificate_expired(kubeconfig, data_dir / "pki")) \
        and bool(args.token or servers)
    if join and not (args.token and servers):
        sys.stderr.write("kubelite agent: joining needs both --server and --token\n")
        return 1
    if not servers and kubeconfig.exists():  # restarted without --server: the balancer's last servers
        servers = lbmod.load_state(data_dir)
    failed: list[str] = []

    async def start() -> None:
        lb = None
        server = servers[0] if servers else ""
        if len(servers) > 1:
            lb = lbmod.LoadBalancer(servers, args.lb_server_port)
            try:
                await lb.start()
            except OSError as exc:
                failed.append(f"--lb-server-port {args.lb_server_port}: cannot listen on 127.0.0.1: "
                              f"{exc.strerror or exc}")
                return
            data_dir.mkdir(parents=True, exist_ok=True)
            lbmod.save_state(data_dir, servers)
            server = lb.url
        elif len(servers) == 1 and kubeconfig.exists() and lbmod.load_state(data_dir):
            # back to one server after the balancer: the kubeconfig must not point at it any more
            lbmod.point_kubeconfig_at(kubeconfig, servers[0])
            lbmod.clear_state(data_dir)
        try:
            if join:
                from kubelite.agent.bootstrap import BootstrapError, bootstrap

                node = args.node_name or socket.gethostname().lower()
                try:
                    await bootstrap(server, args.token, kubeconfig, node, ca_cert_hashes=args.ca_cert_hash,
                                    ca_file=Path(args.ca_file) if args.ca_file else None, cert_dir=data_dir / "pki")
                except BootstrapError as exc:
                    failed.append(f"cannot join the cluster: {exc}")
                    return
            if lb is not None:
                import ssl

                from kubelite.client.api import kubeconfig_credentials

                lbmod.point_kubeconfig_at(kubeconfig, lb.url)
                # /livez needs no credential, and the node's client certificate is renewed
                # (certmanager): a copy of it here would expire and fail the checks' handshakes
                lb.health_ssl = ssl.create_default_context(cadata=kubeconfig_credentials(kubeconfig)[1].decode())
            await run_agent(data_dir, kubeconfig, args.node_name, kubelet_port=args.kubelet_port,
                            containerd_socket=args.containerd_socket or None, images_dir=args.images_dir or None,
                            pki_dir=args.pki_dir or None, pod_pids_limit=args.pod_max_pids,
                            node_ip=args.node_ip, flannel_backend=args.flannel_backend,
                            allowed_unsafe_sysctls=split_list(args.allowed_unsafe_sysctls),
                            kube_proxy=not args.disable_kube_proxy,
                            cluster_dns=split_list(args.cluster_dns), cluster_domain=args.cluster_domain,
                            node_lease_duration=args.node_lease_duration_seconds)
        finally:
            if lb is not None:
                await lb.close()

    async def main() -> None:
        task = asyncio.create_task(start())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    from kubelite.agent.cgroups import CgroupError
    from kubelite.agent.podnet import PodNetworkError
    from kubelite.agent.sysctls import SysctlConfigError

    try:
        asyncio.run(main())
    except (CgroupError, PodNetworkError, SysctlConfigError):  # run_agent has logged why
        return 1
    if failed:
        sys.stderr.write(f"kubelite agent: {failed[0]}\n")
        return 1
    return 0
