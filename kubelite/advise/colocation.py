"""The chapter's question for a multi-container Pod: "Will these containers work correctly if
they land on different machines?" If no, a Pod is the right grouping; if yes, multiple Pods
probably are.

Containers must share a machine when they share something only one machine has: a volume
both mount (the chapter's web server serving what a Git synchronizer pulls into an
``emptyDir``), localhost traffic from one to a port of another, a process namespace
(``shareProcessNamespace``), or shared memory (a memory-backed ``emptyDir`` on
``/dev/shm``). Traffic to a database is different even over localhost: it is a network
connection, so it works just as well through a Service to a database on another machine —
the chapter's WordPress + MySQL anti-pattern. Config volumes (configMap, secret,
downwardAPI, projected) tie nothing: each Pod can mount its own copy.

Pure functions over a pod spec; no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

# image name → (product, default port); the name is the last path component of the image,
# optionally followed by one of _DB_SUFFIXES ("mysql-server", "redis-stack")
DATABASES: dict[str, tuple[str, int]] = {
    "mysql": ("MySQL", 3306), "mariadb": ("MariaDB", 3306), "percona": ("Percona Server", 3306),
    "percona-server": ("Percona Server", 3306),
    "postgres": ("PostgreSQL", 5432), "postgresql": ("PostgreSQL", 5432), "postgis": ("PostGIS", 5432),
    "timescaledb": ("TimescaleDB", 5432),
    "mongo": ("MongoDB", 27017), "mongodb": ("MongoDB", 27017),
    "redis": ("Redis", 6379), "valkey": ("Valkey", 6379), "keydb": ("KeyDB", 6379),
    "memcached": ("Memcached", 11211),
    "cassandra": ("Cassandra", 9042), "scylla": ("ScyllaDB", 9042),
    "couchdb": ("CouchDB", 5984), "neo4j": ("Neo4j", 7687), "cockroach": ("CockroachDB", 26257),
    "mssql": ("SQL Server", 1433), "influxdb": ("InfluxDB", 8086),
    "elasticsearch": ("Elasticsearch", 9200), "opensearch": ("OpenSearch", 9200),
}
_DB_SUFFIXES = {"server", "community", "enterprise", "stack", "alpine", "cluster"}
DATABASE_PORTS: dict[int, str] = {
    3306: "MySQL", 5432: "PostgreSQL", 27017: "MongoDB", 6379: "Redis", 11211: "Memcached",
    9042: "Cassandra", 5984: "CouchDB", 7687: "Neo4j", 26257: "CockroachDB", 1433: "SQL Server",
    1521: "Oracle", 9200: "Elasticsearch",
}
# volume sources that are copies of API objects: every Pod can mount its own
CONFIG_VOLUMES = ("configMap", "secret", "downwardAPI", "projected")
_IPC = re.compile(r"\b(ipcmk|ipcs|ipcrm|shmget|msgget|semget|mq_open)\b|/dev/mqueue|/dev/shm")
_LOCALHOST = re.compile(r"(?<![\w.-])(localhost|127\.0\.0\.1|\[::1\])(?::(\d{1,5}))?(?![\w-])")


@dataclass(frozen=True)
class Database:
    container: str
    product: str
    port: int
    evidence: str  # "image mysql:8.0" or "port 3306"


@dataclass(frozen=True)
class Tie:
    """Something that keeps containers on one machine (``binding``) or only looks like it."""

    kind: str  # volume | ipc | localhost | probe | processNamespace | adapter | network
    containers: tuple[str, ...]
    detail: str
    binding: bool = True
    address: str = ""  # localhost/network ties: the address as written ("127.0.0.1:3306")
    where: str = ""  # … and where ("env WORDPRESS_DB_HOST")


@dataclass(frozen=True)
class Colocation:
    verdict: str  # single-container | one-pod | separate-pods
    containers: tuple[str, ...]
    groups: tuple[tuple[str, ...], ...]  # containers that must stay together
    ties: tuple[Tie, ...]
    databases: tuple[Database, ...]


def _d(v: Any) -> Obj:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def image_name(image: str) -> str:
    """The last path component of an image reference, without tag or digest."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    return last.split(":", 1)[0].lower()


def database_of(container: Obj) -> Database | None:
    name = str(container.get("name", ""))
    image = str(container.get("image") or "")
    base = image_name(image)
    parts = base.split("-")
    for i in range(len(parts), 0, -1):
        head = "-".join(parts[:i])
        if head in DATABASES and all(p in _DB_SUFFIXES or p.isdigit() for p in parts[i:]):
            product, port = DATABASES[head]
            return Database(name, product, port, f"image {image}")
    for cp in sorted(_ports(container)):
        if cp in DATABASE_PORTS:
            return Database(name, DATABASE_PORTS[cp], cp, f"port {cp}")
    return None


def long_running(spec: Obj) -> list[Obj]:
    """The containers that run side by side: regular ones and restartable init containers
    (sidecars). Plain init containers finish before the others start."""
    out = [_d(c) for c in _l(spec.get("containers"))]
    out += [_d(c) for c in _l(spec.get("initContainers")) if _d(c).get("restartPolicy") == "Always"]
    return out


def _ports(c: Obj) -> set[int]:
    return {p["containerPort"] for p in map(_d, _l(c.get("ports"))) if isinstance(p.get("containerPort"), int)}


def _texts(c: Obj) -> list[tuple[str, str]]:
    """(where, text) of everything in a container that can name an address."""
    out: list[tuple[str, str]] = []
    for f in ("command", "args"):
        for i, a in enumerate(_l(c.get(f))):
            out.append((f"{f}[{i}]", str(a)))
    for e in map(_d, _l(c.get("env"))):
        if isinstance(e.get("value"), str):
            out.append((f"env {e.get('name', '')}", e["value"]))
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        cmd = _l(_d(_d(c.get(probe)).get("exec")).get("command"))
        if cmd:
            out.append((f"{probe} exec", " ".join(map(str, cmd))))
    for hook in ("postStart", "preStop"):
        cmd = _l(_d(_d(_d(c.get("lifecycle")).get(hook)).get("exec")).get("command"))
        if cmd:
            out.append((f"{hook} exec", " ".join(map(str, cmd))))
    return out


def _is_exporter(c: Obj) -> bool:
    return "exporter" in image_name(str(c.get("image") or ""))


def analyse(spec: Obj) -> Colocation:
    containers = long_running(spec)
    names = tuple(str(c.get("name", "")) for c in containers)
    dbs = {d.container: d for d in (database_of(c) for c in containers) if d is not None}
    ties: list[Tie] = []
    if len(containers) < 2:
        return Colocation("single-container", names, (names,) if names else (), (), tuple(dbs.values()))

    def order(*members: str) -> tuple[str, ...]:
        return tuple(sorted(set(members), key=lambda n: (names.index(n) if n in names else len(names), n)))

    # shared volumes
    volumes = {str(_d(v).get("name", "")): _d(v) for v in _l(spec.get("volumes"))}
    mounts: dict[str, list[tuple[str, str]]] = {}
    for c in containers:
        for m in map(_d, _l(c.get("volumeMounts")) + _l(c.get("volumeDevices"))):
            mounts.setdefault(str(m.get("name", "")), []).append(
                (str(c.get("name", "")), str(m.get("mountPath") or m.get("devicePath") or "")))
    for vname in sorted(mounts):
        users = order(*(u for u, _ in mounts[vname]))
        if len(users) < 2:
            continue
        vol = volumes.get(vname, {})
        source = next((k for k in vol if k != "name"), "emptyDir")
        where = ", ".join(f"{u} at {p}" for u, p in mounts[vname])
        if source in CONFIG_VOLUMES:
            ties.append(Tie("volume", users, f'they read the {source} volume "{vname}" ({where}), which '
                            "separate Pods could each mount", binding=False))
        elif source == "emptyDir" and _d(vol.get("emptyDir")).get("medium") == "Memory" and \
                any(p.rstrip("/") == "/dev/shm" for _, p in mounts[vname]):
            ties.append(Tie("ipc", users, f'they share memory: the memory-backed emptyDir "{vname}" on /dev/shm '
                            f"({where})"))
        else:
            ties.append(Tie("volume", users, f'they share the {source} volume "{vname}" ({where})'))

    # localhost traffic to another container
    by_port: dict[int, list[str]] = {}
    for c in containers:
        n = str(c.get("name", ""))
        for port in _ports(c) | ({dbs[n].port} if n in dbs else set()):
            by_port.setdefault(port, []).append(n)
    for c in containers:
        me = str(c.get("name", ""))
        for where, text in _texts(c):
            for hit in _LOCALHOST.finditer(text):
                lport = int(hit.group(2)) if hit.group(2) else None
                if lport is not None:
                    targets = [t for t in by_port.get(lport, []) if t != me]
                    if me in by_port.get(lport, []):
                        targets = []
                else:  # a bare "localhost": a database client's default port
                    targets = [t for t in dbs if t != me]
                for t in targets:
                    addr = hit.group(0)
                    shown = addr if lport is not None else f"{addr} (port {dbs[t].port})"
                    if t in dbs and not _is_exporter(c):
                        ties.append(Tie("network", order(me, t),
                                        f'"{me}" reaches the {dbs[t].product} database "{t}" at {shown} ({where})',
                                        binding=False, address=hit.group(0), where=where))
                    elif t in dbs:
                        ties.append(Tie("adapter", order(me, t),
                                        f'"{me}" exports the metrics of "{t}" from {shown} ({where})'))
                    else:
                        ties.append(Tie("localhost", order(me, t),
                                        f'"{me}" talks to "{t}" at {shown} ({where})'))

    # System V IPC or POSIX message queues / shared memory named in what two containers run
    ipc = [str(c.get("name", "")) for c in containers if any(_IPC.search(t) for _, t in _texts(c))]
    if len(ipc) >= 2 and not any(t.kind == "ipc" for t in ties):
        ties.append(Tie("ipc", order(*ipc), ", ".join(f'"{n}"' for n in order(*ipc)) + " use the Pod's shared IPC "
                        "namespace (System V IPC, POSIX shared memory or message queues)"))

    # probes aimed at another container's port (probes go to the pod's shared IP)
    for c in containers:
        me = str(c.get("name", ""))
        mine = _ports(c)
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            spec_p = _d(c.get(probe))
            for handler in ("httpGet", "tcpSocket", "grpc"):
                pport = _d(spec_p.get(handler)).get("port")
                if isinstance(pport, int) and pport not in mine:
                    for t in by_port.get(pport, []):
                        if t != me:
                            ties.append(Tie("probe", order(me, t),
                                            f'the {probe} of "{me}" checks port {pport} of "{t}"'))

    if spec.get("shareProcessNamespace") is True:
        ties.append(Tie("processNamespace", names, "they share a process namespace (shareProcessNamespace: "
                        "true): they see and signal each other's processes"))

    ties = sorted(set(ties), key=lambda t: ([names.index(n) for n in t.containers if n in names], t.kind,
                                            t.detail))
    groups = _components(names, [t for t in ties if t.binding])
    verdict = "one-pod" if len(groups) == 1 else "separate-pods"
    return Colocation(verdict, names, groups, tuple(ties), tuple(dbs[n] for n in names if n in dbs))


def _components(names: tuple[str, ...], ties: list[Tie]) -> tuple[tuple[str, ...], ...]:
    parent = {n: n for n in names}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for t in ties:
        members = [c for c in t.containers if c in parent]
        for other in members[1:]:
            parent[find(other)] = find(members[0])
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(find(n), []).append(n)
    return tuple(sorted((tuple(g) for g in groups.values()), key=lambda g: names.index(g[0])))
