"""One configuration object for `kubelite server`, built from flags and passed down."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kubelite.client.leaderelection import Election

DEFAULT_DATA_DIR = Path("/var/lib/kubelite")


@dataclass
class ServerConfig:
    data_dir: Path = DEFAULT_DATA_DIR
    bind_address: str = "0.0.0.0"
    port: int = 6443
    disable_agent: bool = False
    disable_scheduler: bool = False
    disable_kube_proxy: bool = False  # k3s's --disable-kube-proxy: no service proxy beside the agent
    # extra names/addresses of the API server's serving certificate (k3s's --tls-san)
    tls_sans: tuple[str, ...] = ()
    node_name: str = ""  # the agent's Node (default: the hostname)
    flannel_backend: str = "host-gw"  # the agent's pod network across nodes (k3s's --flannel-backend)
    allowed_unsafe_sysctls: tuple[str, ...] = ()  # the agent's (the kubelet's) --allowed-unsafe-sysctls
    compact_interval: float = 300.0
    compact_keep: int = 1000
    # k3s's --datastore-endpoint (etcd: comma-separated https://host:port URLs; "" = embedded
    # SQLite) and its TLS files; kube-apiserver's --etcd-prefix
    datastore_endpoint: str = ""
    datastore_cafile: str = ""
    datastore_certfile: str = ""
    datastore_keyfile: str = ""
    datastore_prefix: str = "/registry"
    token: str = ""  # k3s's --token: the secret servers on one datastore share (launcher/bootstrap.py)
    # the node lifecycle controller (kube-controller-manager's flags of the same names)
    node_monitor_period: float = 5.0
    node_monitor_grace_period: float = 50.0
    node_startup_grace_period: float = 60.0
    # kube-apiserver's --max-requests-inflight / --max-mutating-requests-inflight
    max_requests_inflight: int = 400
    max_mutating_requests_inflight: int = 200
    # the listener's timeouts (seconds) and bound on untrusted connections (apiserver/listener.py)
    request_header_timeout: float = 32.0
    idle_timeout: float = 90.0
    body_timeout: float = 60.0
    max_pending_connections: int = 1024
    # the node IPAM controller (kube-controller-manager's --cluster-cidr / --node-cidr-mask-size)
    cluster_cidr: str = "10.244.0.0/16"
    node_cidr_mask_size: int = 24
    # k3s's --service-cidr (kube-apiserver's --service-cluster-ip-range; k3s's default, not
    # kube-apiserver's 10.96.0.0/12) and --service-node-port-range
    service_cidr: str = "10.43.0.0/16"
    service_node_port_range: str = "30000-32767"
    # k3s's --cluster-dns (the kube-dns Service's ClusterIP, which ClusterFirst pods get as their
    # nameserver; "" = the 10th address of --service-cidr, 10.43.0.10) and --cluster-domain
    cluster_dns: str = ""
    cluster_domain: str = "cluster.local"
    # k3s's --disable: packaged components not to run ("coredns": the cluster DNS, kubelite/dns/)
    disable: tuple[str, ...] = ()
    # kube-scheduler's and kube-controller-manager's --leader-elect (None: as k3s, on for etcd,
    # off for the embedded SQLite, where one server holds the data dir) and its timings (seconds)
    leader_elect: bool | None = None
    # kube-apiserver's --watch-cache: LIST and watch served from memory (apiserver/cacher.py)
    watch_cache: bool = True
    leader_elect_lease_duration: float = 15.0
    leader_elect_renew_deadline: float = 10.0
    leader_elect_retry_period: float = 2.0

    @property
    def election(self) -> Election | None:
        """How the scheduler and the controllers elect their leader, or None for no election."""
        on = self.leader_elect if self.leader_elect is not None else bool(self.datastore_endpoint)
        if not on:
            return None
        return Election(self.leader_elect_lease_duration, self.leader_elect_renew_deadline,
                        self.leader_elect_retry_period)
    # kube-controller-manager's --cluster-signing-duration: the lifetime of issued certificates
    cluster_signing_duration: float = 8760 * 3600.0

    @property
    def cluster_dns_ip(self) -> str:
        """--cluster-dns, or the 10th address of --service-cidr (k3s: GetIndexedIP(serviceCIDR, 10))."""
        if self.cluster_dns:
            return self.cluster_dns
        import ipaddress

        return str(ipaddress.ip_network(self.service_cidr, strict=False).network_address + 10)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "db" / "state.db"

    @property
    def kubeconfig_path(self) -> Path:
        return self.data_dir / "kubeconfig.yaml"

    @property
    def server_url(self) -> str:
        host = self.bind_address
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"https://{host}:{self.port}"
