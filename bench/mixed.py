"""Mixed-load API benchmark (not a test): 50 clients doing pod GET/LIST/create/update/delete
while a namespace holds N pods, and the latency of a LIST of 1,000 pods (issue 14's figures).

Starts its own `kubelite server --disable-agent --disable-scheduler` (bench/api.py's
start_server) on a temporary data dir per run; each run is one (pods, server flags) pair, so
several flag sets run side by side under the same conditions:

    .venv/bin/python bench/mixed.py [--pods 800,3000] [--clients 50] [--seconds 20]
        [--variant off=--watch-cache=false --variant on=--watch-cache] [--etcd] [--json out.json]

The mix, per operation: 50% GET of a random pod, 10% LIST of the pods with a random label
``group=gK`` (each group about 1/50 of the namespace: the selector still has to look at every
pod), 15% create, 15% update (GET then PUT), 10% delete of a pod this run created (the
population stays about N). It prints ops/s and p50/p99 per verb and overall, and
"list 1000 pods" p50/p99 (30 sequential LISTs of a namespace of exactly 1,000 pods, through the
Python client, which decodes them, and as bare HTTP bodies), with the server's CPU per LIST.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from api import cpu_seconds, pct, pod, rss_mb, start_server  # noqa: E402  (bench/api.py)

from kubelite.api.errors import StatusError  # noqa: E402
from kubelite.client.api import Client  # noqa: E402

GROUPS = 50


def group_pod(name: str, i: int) -> dict:
    body = pod(name)
    body["metadata"]["labels"] = {"app": "bench", "group": f"g{i % GROUPS}"}
    return body


async def populate(c: Client, ns: str, n: int, prefix: str = "p") -> list[str]:
    await c.create("v1", "namespaces", {"metadata": {"name": ns}})
    names = [f"{prefix}-{i:05d}" for i in range(n)]
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        async with sem:
            await c.create("v1", "pods", group_pod(names[i], i), namespace=ns)

    await asyncio.gather(*(one(i) for i in range(n)))
    return names


async def mixed(c: Client, ns: str, names: list[str], clients: int, seconds: float) -> dict:
    lat: dict[str, list[float]] = {v: [] for v in ("get", "list", "create", "update", "delete")}
    errs: dict[str, int] = {}
    live = list(names)
    created: list[str] = []
    counter = [0]
    rng = random.Random(14)
    deadline = time.perf_counter() + seconds

    async def op() -> None:
        r = rng.random()
        if r < 0.50:
            verb = "get"
            coro = c.get("v1", "pods", rng.choice(live), namespace=ns)
        elif r < 0.60:
            verb = "list"
            coro = c.list("v1", "pods", namespace=ns, labelSelector=f"group=g{rng.randrange(GROUPS)}")
        elif r < 0.75:
            verb = "create"
            counter[0] += 1
            name = f"m-{counter[0]:06d}"

            async def create(name: str = name, i: int = counter[0]) -> None:
                await c.create("v1", "pods", group_pod(name, i), namespace=ns)
                created.append(name)  # only once it exists: a delete never races its create
                live.append(name)

            coro = create()
        elif r < 0.90:
            verb = "update"
            name = rng.choice(live)

            async def update() -> None:
                obj = await c.get("v1", "pods", name, namespace=ns)
                obj["metadata"].setdefault("annotations", {})["bench/touch"] = str(time.time())
                await c.update("v1", "pods", obj, namespace=ns)

            coro = update()
        else:
            verb = "delete"
            if not created:
                return
            name = created.pop(rng.randrange(len(created)))
            live.remove(name)  # no GET or update picks it from now on
            coro = c.delete("v1", "pods", name, namespace=ns)
        t = time.perf_counter()
        try:
            await coro
        except StatusError as exc:  # a conflict or a race with a delete: counted, not timed
            errs[f"{verb} {exc.code}"] = errs.get(f"{verb} {exc.code}", 0) + 1
            return
        lat[verb].append(time.perf_counter() - t)

    async def client() -> None:
        while time.perf_counter() < deadline:
            await op()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    dt = time.perf_counter() - t0
    every = [x for xs in lat.values() for x in xs]
    out = {"ops_per_s": len(every) / dt, "p50_ms": pct(every, 50) * 1000, "p99_ms": pct(every, 99) * 1000,
           "errors": errs, "verbs": {}}
    for verb, xs in lat.items():
        if xs:
            out["verbs"][verb] = {"n": len(xs), "p50_ms": pct(xs, 50) * 1000, "p99_ms": pct(xs, 99) * 1000}
    return out


async def list_1000(c: Client, server_pid: int) -> dict:
    await populate(c, "list1000", 1000, "l")
    await c.list("v1", "pods", namespace="list1000")
    c0 = cpu_seconds(server_pid)
    lat = []
    for _ in range(30):
        t = time.perf_counter()
        body = await c.list("v1", "pods", namespace="list1000")
        lat.append(time.perf_counter() - t)
        assert len(body["items"]) == 1000
    cpu = (cpu_seconds(server_pid) - c0) * 1000 / len(lat)
    # the same LIST without the client's decoding of 1,000 objects: the HTTP answer alone
    raw = []
    url = c.server + "/api/v1/namespaces/list1000/pods"
    for _ in range(30):
        t = time.perf_counter()
        async with c._session.get(url) as resp:
            assert resp.status == 200
            await resp.read()
        raw.append(time.perf_counter() - t)
    return {"p50_ms": pct(lat, 50) * 1000, "p99_ms": pct(lat, 99) * 1000, "server_cpu_ms_per_list": cpu,
            "http_p50_ms": pct(raw, 50) * 1000, "http_p99_ms": pct(raw, 99) * 1000}


async def run(kubeconfig: Path, n_pods: int, clients: int, seconds: float, server_pid: int, with_list: bool) -> dict:
    async with Client.from_kubeconfig(kubeconfig, user_agent="bench", limit=clients + 10) as c:
        result: dict = {}
        if with_list:
            result["list_1000"] = await list_1000(c, server_pid)
        names = await populate(c, "bench", n_pods)
        c0 = cpu_seconds(server_pid)
        result["mixed"] = await mixed(c, "bench", names, clients, seconds)
        result["mixed"]["server_cpu_s"] = cpu_seconds(server_pid) - c0
        return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", default="800,3000", help="comma-separated namespace sizes")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--variant", action="append", default=[], metavar="LABEL=FLAGS",
                    help="a server flag set to run (repeatable), e.g. on=--watch-cache; default: no flags")
    ap.add_argument("--etcd", action="store_true", help="run on a single etcd member this script starts")
    ap.add_argument("--json", default="", help="write the results here")
    args = ap.parse_args()
    variants = [(v.split("=", 1)[0], v.split("=", 1)[1].split()) for v in args.variant] or [("default", [])]
    tmp = Path(tempfile.mkdtemp(prefix="kubelite-mixed-"))
    etcd_proc = None
    results: list[dict] = []
    try:
        endpoint = ""
        if args.etcd:
            from store_etcd import start_etcd  # bench/store_etcd.py

            etcd_proc, endpoint = start_etcd(tmp)
        for n_pods in (int(x) for x in args.pods.split(",")):
            for i, (label, flags) in enumerate(variants):
                extra = list(flags)
                if endpoint:
                    extra += ["--datastore-endpoint", endpoint, "--datastore-prefix", f"/mixed-{n_pods}-{i}"]
                data = tmp / f"{label}-{n_pods}"
                proc, _port = start_server(data, extra)
                try:
                    res = asyncio.run(run(data / "kubeconfig.yaml", n_pods, args.clients, args.seconds, proc.pid,
                                          with_list=n_pods == int(args.pods.split(",")[0])))
                    res.update(variant=label, flags=flags, pods=n_pods, rss_mb=rss_mb(proc.pid),
                               datastore="etcd" if endpoint else "sqlite", cpus=os.cpu_count())
                finally:
                    proc.terminate()
                    proc.wait(10)
                results.append(res)
                m = res["mixed"]
                line = (f"[{res['datastore']} {label:>8} {n_pods:5d} pods] mixed {args.clients} clients: "
                        f"{m['ops_per_s']:6.0f} ops/s p50={m['p50_ms']:6.1f} ms p99={m['p99_ms']:7.1f} ms "
                        f"errors={sum(m['errors'].values())} server cpu={m['server_cpu_s']:.1f}s")
                if "list_1000" in res:
                    lst = res["list_1000"]
                    line += (f"\n    list 1000 pods (python client, decoded): p50={lst['p50_ms']:.1f} ms "
                             f"p99={lst['p99_ms']:.1f} ms; HTTP body only: p50={lst['http_p50_ms']:.1f} ms "
                             f"p99={lst['http_p99_ms']:.1f} ms; server cpu {lst['server_cpu_ms_per_list']:.1f} ms/list")
                print(line, flush=True)
                print("    errors:", m["errors"], "|", " ".join(f"{v}: n={d['n']} p50={d['p50_ms']:.1f} p99={d['p99_ms']:.1f}"
                                        for v, d in m["verbs"].items()), flush=True)
    finally:
        if etcd_proc is not None:
            etcd_proc.terminate()
            etcd_proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
