"""Fuzzing benchmark (not a test): a long schemathesis run against its own `kubelite server`.

Starts `kubelite server --disable-agent` on a temporary data dir (like bench/api.py), then
sends cases generated from the served OpenAPI v3 for pods, configmaps, secrets, namespaces,
nodes and events (tests/e2e/apifuzz.py), and prints the figures: requests, status codes,
5xx answers, dropped connections, writes accepted and whether the official Python client
could list each kind after every accepted write.

    .venv/bin/python bench/fuzz_api.py [--examples 250] [--seed 0]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api import start_server  # noqa: E402
from tests.e2e import apifuzz  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=250, help="cases per operation")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kubelite-fuzz-"))
    proc, port = start_server(tmp / "data")
    try:
        kubeconfig = tmp / "data" / "kubeconfig.yaml"
        subprocess.run([sys.executable, "-m", "kubelite", "kubectl", "--data-dir", str(tmp / "data"), "create",
                        "namespace", "fuzz"], check=True, capture_output=True)
        res = apifuzz.run(kubeconfig, args.examples, seed=args.seed, log=lambda m: print(m, flush=True))
        print(res.summary())
        for line in (res.server_errors + res.dropped + res.client_failures)[:20]:
            print("  ", line)
        alive = proc.poll() is None
        print(f"server still running: {alive}")
        if res.server_errors or res.dropped or res.client_failures or not alive:
            sys.exit(1)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
