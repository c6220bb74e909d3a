"""`kubelite agent`: the node agent on its own, against any kubelite (or Kubernetes) API."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from kubelite.config import DEFAULT_DATA_DIR


def register_agent_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``agent`` to the ``kubelite`` sub-commands; the parser's ``func`` runs it."""
    p = subparsers.add_parser("agent", help="run the node agent (kubelet) against an API server")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="where containerd, pods and logs live")
    p.add_argument("--kubeconfig", default="", help="kubeconfig to reach the API (default: DATA_DIR/kubeconfig.yaml)")
    p.add_argument("--node-name", default="", help="the Node's name (default: the hostname)")
    p.add_argument("--kubelet-port", type=int, default=10250, help="port advertised in daemonEndpoints")
    p.add_argument("--containerd-socket", default="", help="use this running containerd instead of starting one")
    p.add_argument("--images-dir", default="", help="offline image archives (default: build/images)")
    p.add_argument("--pki-dir", default="", help="directory whose tls/ holds the cluster CA, for the agent's "
                                                 "HTTPS endpoint (default: DATA_DIR)")
    p.set_defaults(func=cmd_agent)
    return p


def cmd_agent(args: argparse.Namespace) -> int:
    from kubelite.agent.agent import run_agent

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data_dir = Path(args.data_dir).resolve()
    kubeconfig = Path(args.kubeconfig) if args.kubeconfig else data_dir / "kubeconfig.yaml"
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()

    async def main() -> None:
        task = asyncio.create_task(run_agent(data_dir, kubeconfig, args.node_name, kubelet_port=args.kubelet_port,
                                             containerd_socket=args.containerd_socket or None,
                                             images_dir=args.images_dir or None,
                                             pki_dir=args.pki_dir or data_dir))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main())
    return 0
