"""The service proxy of every node, as kube-proxy's iptables mode (pkg/proxy/iptables/proxier.go):
ClusterIP and NodePort traffic DNATed to the ready endpoints of the Services' EndpointSlices,
spread evenly with ``statistic --mode random`` rules, NodePort and hairpin traffic marked for
masquerade.

    nat PREROUTING/OUTPUT -> KUBE-SERVICES -> KUBE-SVC-<hash> -> KUBE-SEP-<hash> (DNAT)
                          KUBE-SERVICES (local destinations) -> KUBE-NODEPORTS -> KUBE-EXT-<hash>
    nat POSTROUTING -> KUBE-POSTROUTING (MASQUERADE what KUBE-MARK-MASQ marked)

Chain names are upstream's (base32 of a SHA-256 of the service port name and protocol). The
whole nat state is written in one ``iptables-restore --noflush`` per change; everything is
removed when the proxy stops. A Service port without ready endpoints gets no nat rules but
kube-proxy's filter-table REJECT ("<svc> has no endpoints"): connections to its ClusterIP (and
its NodePort) are refused at once instead of timing out.

    filter FORWARD/OUTPUT (ctstate NEW) -> KUBE-SERVICES (ClusterIP -> REJECT)
    filter INPUT/FORWARD (ctstate NEW) -> KUBE-EXTERNAL-SERVICES (local NodePort -> REJECT)

What kube-proxy also does and this does not (yet): externalIPs, LoadBalancer ingress IPs,
sessionAffinity ClientIP (``recent`` match), externalTrafficPolicy/internalTrafficPolicy Local.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from kubelite.client.informer import ClientListWatch, Informer

log = logging.getLogger("kubelite.proxy")
Obj = dict[str, Any]
MASQ_MARK = "0x4000"
JUMPS = (  # (chain, comment, target)
    ("PREROUTING", "kubernetes service portals", "KUBE-SERVICES"),
    ("OUTPUT", "kubernetes service portals", "KUBE-SERVICES"),
    ("POSTROUTING", "kubernetes postrouting rules", "KUBE-POSTROUTING"),
)
FIXED_CHAINS = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ")
FILTER_JUMPS = (  # (chain, comment, target): iptablesJumpChains of the filter table, each "-m conntrack --ctstate NEW"
    ("INPUT", "kubernetes externally-visible service portals", "KUBE-EXTERNAL-SERVICES"),
    ("FORWARD", "kubernetes service portals", "KUBE-SERVICES"),
    ("FORWARD", "kubernetes externally-visible service portals", "KUBE-EXTERNAL-SERVICES"),
    ("OUTPUT", "kubernetes service portals", "KUBE-SERVICES"),
)
FILTER_CHAINS = ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES")
Runner = Callable[[list[str], bytes | None], Awaitable[tuple[int, str]]]


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _hash(*parts: str) -> str:
    """portProtoHash: the first 16 characters of base32(sha256(parts))."""
    digest = hashlib.sha256("".join(parts).encode()).digest()
    return base64.b32encode(digest).decode()[:16]


def svc_chain(port_name: str, proto: str) -> str:
    return "KUBE-SVC-" + _hash(port_name, proto)


def ext_chain(port_name: str, proto: str) -> str:
    return "KUBE-EXT-" + _hash(port_name, proto)


def sep_chain(port_name: str, proto: str, endpoint: str) -> str:
    return "KUBE-SEP-" + _hash(port_name, proto, endpoint)


def probability(n: int) -> str:
    """computeProbability."""
    return f"{1.0 / n:0.10f}"


def ready_endpoints(svc: Obj, slices: list[Obj], port: Obj) -> list[str]:
    """"ip:port" of the ready endpoints for one Service port (matched by port name)."""
    name = port.get("name") or ""
    out: list[str] = []
    for s in slices:
        if s.get("addressType") != "IPv4":
            continue
        number = next((p.get("port") for p in _l(s.get("ports")) if (_d(p).get("name") or "") == name
                       and (_d(p).get("protocol") or "TCP") == (port.get("protocol") or "TCP")), None)
        if not isinstance(number, int):
            continue
        for ep in _l(s.get("endpoints")):
            ep = _d(ep)
            if _d(ep.get("conditions")).get("ready") is False:
                continue
            for addr in _l(ep.get("addresses"))[:1]:
                out.append(f"{addr}:{number}")
    return sorted(set(out))


def build_rules(services: list[Obj], slices_by_service: dict[str, list[Obj]], stale: set[str]) -> tuple[str, set[str]]:
    """The nat table's KUBE-* content (iptables-restore input) and the chains it declares.
    ``stale``: KUBE-* chains now present that are not wanted any more (deleted here)."""
    chains: list[str] = list(FIXED_CHAINS)
    rules: list[str] = [
        f"-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN",
        f"-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE '
        "--random-fully",
        f"-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}",
    ]
    nodeports: list[str] = []
    for svc in sorted(services, key=lambda s: (_d(s.get("metadata")).get("namespace", ""),
                                               _d(s.get("metadata")).get("name", ""))):
        meta, spec = _d(svc.get("metadata")), _d(svc.get("spec"))
        ip = spec.get("clusterIP")
        if spec.get("type") == "ExternalName" or not ip or ip == "None" or ":" in str(ip):
            continue
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        for port in _l(spec.get("ports")):
            port = _d(port)
            proto = str(port.get("protocol") or "TCP").lower()
            if proto not in ("tcp", "udp", "sctp"):
                continue
            spn = f"{key}:{port['name']}" if port.get("name") else key  # ServicePortName.String()
            eps = ready_endpoints(svc, slices_by_service.get(key, []), port)
            if not eps:
                continue
            svc_c = svc_chain(spn, proto)
            chains.append(svc_c)
            rules.append(f'-A KUBE-SERVICES -m comment --comment "{spn} cluster IP" -m {proto} -p {proto} '
                         f"-d {ip}/32 --dport {port.get('port')} -j {svc_c}")
            n = len(eps)
            for i, ep in enumerate(eps):
                sep = sep_chain(spn, proto, ep)
                chains.append(sep)
                stat = f"-m statistic --mode random --probability {probability(n - i)} " if i < n - 1 else ""
                rules.append(f'-A {svc_c} -m comment --comment "{spn} -> {ep}" {stat}-j {sep}')
                ep_ip = ep.rsplit(":", 1)[0]
                rules.append(f'-A {sep} -m comment --comment "{spn}" -s {ep_ip}/32 -j KUBE-MARK-MASQ')
                rules.append(f'-A {sep} -m comment --comment "{spn}" -m {proto} -p {proto} -j DNAT '
                             f"--to-destination {ep}")
            np = port.get("nodePort")
            if isinstance(np, int) and np:
                ext = ext_chain(spn, proto)
                chains.append(ext)
                nodeports.append(f'-A KUBE-NODEPORTS -m comment --comment "{spn}" -m {proto} -p {proto} '
                                 f"--dport {np} -j {ext}")
                rules.append(f'-A {ext} -m comment --comment "masquerade traffic for {spn} external destinations" '
                             "-j KUBE-MARK-MASQ")
                rules.append(f"-A {ext} -j {svc_c}")
    rules += nodeports
    rules.append('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last '
                 'rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS')
    wanted = set(chains)
    gone = sorted(stale - wanted)
    lines = ["*nat", *[f":{c} - [0:0]" for c in chains + gone], *rules, *[f"-X {c}" for c in gone], "COMMIT", ""]
    return "\n".join(lines), wanted


def _filter_jump_spec(chain: str, comment: str, target: str) -> list[str]:
    return ["-t", "filter", "-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", comment, "-j", target]


def build_filter_rules(services: list[Obj], slices_by_service: dict[str, list[Obj]]) -> str:
    """The filter table's KUBE-SERVICES and KUBE-EXTERNAL-SERVICES (iptables-restore input): a
    REJECT for every Service port that has no ready endpoint, on its ClusterIP and its NodePort."""
    rules: list[str] = []
    external: list[str] = []
    for svc in sorted(services, key=lambda s: (_d(s.get("metadata")).get("namespace", ""),
                                               _d(s.get("metadata")).get("name", ""))):
        meta, spec = _d(svc.get("metadata")), _d(svc.get("spec"))
        ip = spec.get("clusterIP")
        if spec.get("type") == "ExternalName" or not ip or ip == "None" or ":" in str(ip):
            continue
        key = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        for port in _l(spec.get("ports")):
            port = _d(port)
            proto = str(port.get("protocol") or "TCP").lower()
            if proto not in ("tcp", "udp", "sctp"):
                continue
            if ready_endpoints(svc, slices_by_service.get(key, []), port):
                continue
            spn = f"{key}:{port['name']}" if port.get("name") else key
            comment = f'-m comment --comment "{spn} has no endpoints"'
            rules.append(f"-A KUBE-SERVICES {comment} -m {proto} -p {proto} -d {ip}/32 --dport {port.get('port')} "
                         "-j REJECT")
            np = port.get("nodePort")
            if isinstance(np, int) and np:
                external.append(f"-A KUBE-EXTERNAL-SERVICES {comment} -m addrtype --dst-type LOCAL -m {proto} "
                                f"-p {proto} --dport {np} -j REJECT")
    return "\n".join(["*filter", *[f":{c} - [0:0]" for c in FILTER_CHAINS], *rules, *external, "COMMIT", ""])


async def run_command(argv: list[str], stdin: bytes | None = None) -> tuple[int, str]:
    """Run an iptables command. iptables 1.8.9 (nf_tables) here now and then dies of SIGSEGV when
    another writer (the CNI plugins) changes the ruleset at the same moment; such a run changed
    nothing and is run again (a few times), as is one whose stdin closed early (the same crash)."""
    rc, text = 0, ""
    for attempt in range(4):
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            out, _ = await proc.communicate(stdin)
        except (BrokenPipeError, ConnectionResetError, RuntimeError):  # it died before reading its input
            out = b""
            await proc.wait()
            rc = proc.returncode if proc.returncode is not None and proc.returncode < 0 else -1
        else:
            rc = proc.returncode or 0
        text = out.decode(errors="replace")
        if rc >= 0:
            break
        await asyncio.sleep(0.05 * (attempt + 1))
    return rc, text


class Proxier:
    """Watches Services and EndpointSlices and keeps the nat table in step."""

    def __init__(self, client: Any, runner: Runner = run_command) -> None:
        self.run_cmd = runner
        self.services = Informer(ClientListWatch(client, "v1", "services"), name="proxy-services")
        self.slices = Informer(ClientListWatch(client, "discovery.k8s.io/v1", "endpointslices"),
                               name="proxy-endpointslices")
        self._dirty = asyncio.Event()
        self.services.add_handler(self._changed)
        self.slices.add_handler(self._changed)
        self.syncs = 0

    def _changed(self, etype: str, old: Obj | None, new: Obj | None) -> None:
        self._dirty.set()

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self.services.run())
                tg.create_task(self.slices.run())
                await self.services.wait_synced()
                await self.slices.wait_synced()
                self._dirty.set()
                while True:
                    await self._dirty.wait()
                    self._dirty.clear()
                    try:
                        await self.sync()
                    except Exception:
                        log.exception("syncing the service rules failed; retrying")
                        await asyncio.sleep(1)
                        self._dirty.set()
        finally:
            await asyncio.shield(self.cleanup())

    async def _kube_chains(self) -> set[str]:
        for attempt in range(3):  # the nf_tables backend fails a save that races another writer (CNI's)
            rc, out = await self.run_cmd(["iptables-save", "-t", "nat"], None)
            if rc == 0:
                break
            await asyncio.sleep(0.05 * (attempt + 1))
        else:
            raise RuntimeError(f"iptables-save: exit {rc}: {out.strip()}")
        return {ln[1:].split()[0] for ln in out.splitlines() if ln.startswith(":KUBE-")}

    async def _ensure_jumps(self) -> None:
        specs = [(chain, ["-t", "nat", "-m", "comment", "--comment", comment, "-j", target])
                 for chain, comment, target in JUMPS]
        specs += [(chain, _filter_jump_spec(chain, comment, target)) for chain, comment, target in FILTER_JUMPS]
        for chain, spec in specs:
            rc, _ = await self.run_cmd(["iptables", "-w", "-C", chain, *spec], None)
            if rc != 0:
                rc, out = await self.run_cmd(["iptables", "-w", "-I", chain, *spec], None)
                if rc != 0:
                    raise RuntimeError(f"iptables -I {chain} {' '.join(spec)}: exit {rc}: {out.strip()}")

    async def sync(self) -> None:
        by_service: dict[str, list[Obj]] = {}
        for s in self.slices.list():
            m = _d(s.get("metadata"))
            name = _d(m.get("labels")).get("kubernetes.io/service-name")
            if name:
                by_service.setdefault(f"{m.get('namespace', '')}/{name}", []).append(s)
        present = await self._kube_chains()
        text, _ = build_rules(self.services.list(), by_service, present)
        text += build_filter_rules(self.services.list(), by_service)
        rc, out = await self.run_cmd(["iptables-restore", "-w", "--noflush"], text.encode())
        if rc != 0:
            raise RuntimeError(f"iptables-restore: {out.strip()}")
        await self._ensure_jumps()
        self.syncs += 1

    async def cleanup(self) -> None:
        """Remove every rule and chain the proxy made (kube-proxy --cleanup)."""
        specs = [(chain, ["-t", "nat", "-m", "comment", "--comment", comment, "-j", target])
                 for chain, comment, target in JUMPS]
        specs += [(chain, _filter_jump_spec(chain, comment, target)) for chain, comment, target in FILTER_JUMPS]
        for chain, spec in specs:
            for _ in range(5):
                rc, _ = await self.run_cmd(["iptables", "-w", "-D", chain, *spec], None)
                if rc != 0:
                    break
        with contextlib.suppress(Exception):
            await self._drop_filter_chains()
        with contextlib.suppress(Exception):
            chains = sorted(await self._kube_chains())
            if chains:
                text = "\n".join(["*nat", *[f":{c} - [0:0]" for c in chains], *[f"-X {c}" for c in chains],
                                  "COMMIT", ""])
                await self.run_cmd(["iptables-restore", "-w", "--noflush"], text.encode())


    async def _drop_filter_chains(self) -> None:
        rc, out = await self.run_cmd(["iptables-save", "-t", "filter"], None)
        present = {ln[1:].split()[0] for ln in out.splitlines() if ln.startswith(":KUBE-")} if rc == 0 else set()
        chains = sorted(present & set(FILTER_CHAINS))
        if chains:
            text = "\n".join(["*filter", *[f":{c} - [0:0]" for c in chains], *[f"-X {c}" for c in chains],
                              "COMMIT", ""])
            await self.run_cmd(["iptables-restore", "-w", "--noflush"], text.encode())


def cleanup_now() -> list[str]:
    """The same removal, synchronously (``kubelite uninstall``); what was removed."""
    import subprocess

    done: list[str] = []
    for chain, comment, target in JUMPS:
        spec = ["-t", "nat", "-m", "comment", "--comment", comment, "-j", target]
        while subprocess.run(["iptables", "-w", "-D", chain, *spec], capture_output=True).returncode == 0:
            done.append(f"removed the iptables rule {chain} -> {target}")
    for chain, comment, target in FILTER_JUMPS:
        spec = _filter_jump_spec(chain, comment, target)
        while subprocess.run(["iptables", "-w", "-D", chain, *spec], capture_output=True).returncode == 0:
            done.append(f"removed the iptables rule filter {chain} -> {target}")
    out = subprocess.run(["iptables-save", "-t", "filter"], capture_output=True, text=True).stdout
    fchains = sorted({ln[1:].split()[0] for ln in out.splitlines() if ln.startswith(":KUBE-")} & set(FILTER_CHAINS))
    if fchains:
        text = "\n".join(["*filter", *[f":{c} - [0:0]" for c in fchains], *[f"-X {c}" for c in fchains],
                          "COMMIT", ""])
        subprocess.run(["iptables-restore", "-w", "--noflush"], input=text, text=True, capture_output=True)
        done.append(f"removed the filter chains {', '.join(fchains)} of the service proxy")
    out = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    chains = sorted({ln[1:].split()[0] for ln in out.splitlines() if ln.startswith(":KUBE-")})
    if chains:
        text = "\n".join(["*nat", *[f":{c} - [0:0]" for c in chains], *[f"-X {c}" for c in chains], "COMMIT", ""])
        subprocess.run(["iptables-restore", "-w", "--noflush"], input=text, text=True, capture_output=True)
        done.append(f"removed {len(chains)} KUBE-* iptables chains of the service proxy")
    return done


async def run_proxy(kubeconfig: Any) -> None:
    """kube-proxy: the service rules of this host, with the kubeconfig's identity."""
    from kubelite.client.api import Client

    client = Client.from_kubeconfig(kubeconfig, user_agent="kubelite-proxy")
    try:
        await Proxier(client).run()
    finally:
        await client.close()


__all__ = ["Proxier", "cleanup_now", "run_proxy", "build_filter_rules", "build_rules", "probability", "ready_endpoints", "sep_chain", "svc_chain"]
