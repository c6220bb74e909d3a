"""The node's kube-proxy, run by the agent as k3s's agent runs it (unless ``--disable-kube-proxy``).

k3s hands each agent a ``system:kube-proxy`` client certificate from its supervisor, for the
node token. kubelite's agents hold no token after joining, and no CA key: the agent asks with
its node credential for a ``kubernetes.io/kube-apiserver-client`` certificate, subject exactly
``CN=system:kube-proxy`` (no organization), usages digital signature + client auth, which the
controller manager's CSR approver grants to nodes only (``controllers/csr.py``,
``kube_proxy_approval_error``). The pair lives in the agent's cert dir as
``kube-proxy-client-<time>.pem`` with ``kube-proxy-client-current.pem`` the newest, and is renewed
at 70-90 % of its lifetime as the kubelet's client certificate is (``agent/certmanager.py``);
``DATA_DIR/kubeproxy.kubeconfig`` (k3s's name) names that file.

The proxy itself is :class:`kubelite.proxy.iptables.Proxier`, in the agent's process and so in
the node's network namespace; its rules are removed when the agent stops.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from kubelite.agent.certmanager import (
    KUBE_APISERVER_CLIENT_SIGNER,
    CertificateManager,
    FileStore,
    Pair,
    Template,
    usable,
)
from kubelite.client.api import Client, kubeconfig_credentials

log = logging.getLogger("kubelite.agent.kubeproxy")

KUBE_PROXY_USER = "system:kube-proxy"
PAIR_NAME = "kube-proxy-client"
KUBECONFIG_NAME = "kubeproxy.kubeconfig"
RESTART_DELAY = 5.0


def kube_proxy_template() -> Template:
    return Template(KUBE_PROXY_USER, organizations=())


class NodeProxy:
    """kube-proxy beside the agent: its certificate (requested with ``node_client``, the agent's
    own, rotated client) and the service rules of this network namespace."""

    def __init__(self, node_client: Any, node_kubeconfig: Path, cert_dir: Path, kubeconfig: Path,
                 node_name: str = "") -> None:
        self.node_client = node_client
        self.node_kubeconfig = Path(node_kubeconfig)
        self.store = FileStore(PAIR_NAME, Path(cert_dir))
        self.kubeconfig = Path(kubeconfig)
        self.node_name = node_name
        self.certs: CertificateManager | None = None
        self.proxier: Any = None

    async def run(self) -> None:
        """Until cancelled; a failure is logged and the proxy started again (the rules of the
        one that failed are removed first)."""
        while True:
            try:
                await self._run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("kube-proxy failed; starting it again in %.0fs", RESTART_DELAY)
            await asyncio.sleep(RESTART_DELAY)

    async def _run(self) -> None:
        from kubelite.proxy.iptables import Proxier

        tmpl = kube_proxy_template()
        issued = asyncio.Event()
        client: Client | None = None

        def on_update(pair: Pair) -> None:
            if client is not None:
                client.use_client_certificate(pair.cert_pem, pair.key_pem)
            issued.set()

        initial = usable(self.store.current(), tmpl)
        if initial is not None:
            issued.set()
        else:
            log.info("no kube-proxy client certificate yet: requesting one (%s)", KUBE_APISERVER_CLIENT_SIGNER)
        self.certs = CertificateManager(self.node_client, "kube-proxy client", KUBE_APISERVER_CLIENT_SIGNER,
                                        self.store, lambda: tmpl, on_update, server=False, initial=initial)
        async with asyncio.TaskGroup() as tg:
            certs = tg.create_task(self.certs.run(), name="kube-proxy-client-certificate")
            await issued.wait()
            server, ca_pem, *_ = await asyncio.to_thread(kubeconfig_credentials, self.node_kubeconfig)
            await asyncio.to_thread(self.store.write_kubeconfig, self.kubeconfig, server, ca_pem, KUBE_PROXY_USER)
            ua = f"kube-proxy/{self.node_name}" if self.node_name else "kube-proxy"
            client = Client.from_kubeconfig(self.kubeconfig, user_agent=ua)
            try:
                self.proxier = Proxier(client)
                log.info("kube-proxy started (iptables mode) as %s", KUBE_PROXY_USER)
                await self.proxier.run()  # removes its rules when it ends, however it ends
            finally:
                certs.cancel()
                await client.close()


__all__ = ["KUBECONFIG_NAME", "KUBE_PROXY_USER", "NodeProxy", "PAIR_NAME", "kube_proxy_template"]
