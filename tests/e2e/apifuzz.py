"""Fuzzing the served API with schemathesis: cases generated from the server's own OpenAPI v3
(``/openapi/v3/api/v1``) for pods, configmaps, secrets, namespaces, nodes and events, sent
with the admin's client certificate. Every answer must be below 500 and every connection
must get an answer; after each accepted write, the official Python client (pydantic models)
must still list the objects of that kind in that namespace.

Used by ``tests/e2e/test_fuzz.py`` (a few hundred requests) and ``bench/fuzz_api.py`` (the
long run, 10,000+ requests, figures printed).
"""

from __future__ import annotations

import base64
import re
import tempfile
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

PATH_RE = re.compile(r"^/api/v1/(namespaces/\{namespace\}/(pods|configmaps|secrets|events)(/\{name\}(/status)?)?"
                     r"|namespaces(/\{name\}(/status|/finalize)?)?|nodes(/\{name\}(/status)?)?"
                     r"|(pods|configmaps|secrets|events))$")
WRITES = ("POST", "PUT", "PATCH")
LISTERS = {"pods": "list_namespaced_pod", "configmaps": "list_namespaced_config_map",
           "secrets": "list_namespaced_secret", "events": "list_namespaced_event"}


@dataclass
class Result:
    requests: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    accepted_writes: int = 0
    client_failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        top = ", ".join(f"{k}×{v}" for k, v in sorted(self.by_status.items()))
        return (f"{self.requests} requests in {self.seconds:.0f} s ({self.requests / max(self.seconds, 1e-9):.0f}/s): "
                f"{top}; 5xx: {len(self.server_errors)}; dropped connections: {len(self.dropped)}; "
                f"accepted writes: {self.accepted_writes}; client list failures: {len(self.client_failures)}")


class Target:
    """The server's URL and the admin's credentials, from its kubeconfig."""

    def __init__(self, kubeconfig: Path) -> None:
        cfg = yaml.safe_load(kubeconfig.read_text())
        self.kubeconfig = kubeconfig
        self.url = cfg["clusters"][0]["cluster"]["server"]
        user = cfg["users"][0]["user"]
        self._dir = tempfile.TemporaryDirectory()
        d = Path(self._dir.name)
        (d / "c.pem").write_bytes(base64.b64decode(user["client-certificate-data"]))
        (d / "k.pem").write_bytes(base64.b64decode(user["client-key-data"]))
        (d / "ca.pem").write_bytes(base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]))
        self.cert = (str(d / "c.pem"), str(d / "k.pem"))
        self.ca = str(d / "ca.pem")
        self.session = requests.Session()
        self.session.cert = self.cert
        self.session.verify = self.ca

    def openapi(self) -> dict[str, Any]:
        r = self.session.get(self.url + "/openapi/v3/api/v1", timeout=30, verify=self.ca)
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]


def _plural(path: str) -> str:
    m = re.match(r"^/api/v1/(?:namespaces/\{namespace\}/)?([a-z]+)", path)
    return m.group(1) if m else ""


def _core_client(kubeconfig: Path) -> Any:
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return client.CoreV1Api(client.ApiClient(cfg))


def _check_client_lists(core: Any, path: str, namespace: str, res: Result) -> None:
    """The official client must read back the kind (pydantic validation of every item)."""
    from kubernetes.client.rest import ApiException

    m = re.match(r"^/api/v1/(?:namespaces/([^/]+)/)?([a-z]+)", path)
    if not m:
        return
    plural = m.group(2)
    try:
        if plural == "namespaces" and m.group(1) is None:
            core.list_namespace()
        elif plural == "nodes":
            core.list_node()
        elif plural in LISTERS and namespace:
            getattr(core, LISTERS[plural])(namespace)
    except ApiException as exc:
        if exc.status not in (404, 403):
            res.client_failures.append(f"{path}: {exc.status}")
    except Exception as exc:  # pydantic ValidationError & co: an object the client cannot read
        res.client_failures.append(f"{path}: {type(exc).__name__}: {str(exc)[:300]}")


def run(kubeconfig: Path, examples_per_operation: int, seed: int = 0, check_client: bool = True,
        log: Any = None, namespace: str = "fuzz") -> Result:
    """Fuzz every selected operation with ``examples_per_operation`` cases; namespaced paths
    use ``namespace`` (create it first)."""
    import hypothesis
    import schemathesis
    from hypothesis import HealthCheck, Phase, settings

    target = Target(kubeconfig)
    schema = schemathesis.openapi.from_dict(target.openapi())
    core = _core_client(kubeconfig) if check_client else None
    res = Result()
    t0 = time.monotonic()
    ops = [r.ok() for r in schema.get_all_operations()]
    ops = [op for op in ops if PATH_RE.match(op.path) and op.method.upper() in ("GET", "POST", "PUT", "PATCH",
                                                                                 "DELETE")]
    made: dict[str, list[str]] = defaultdict(list)  # names created, per resource
    for op in ops:
        strategy = op.as_strategy()

        @settings(max_examples=examples_per_operation, database=None, deadline=None, derandomize=False,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck), report_multiple_bugs=False)
        @hypothesis.seed(seed)
        @hypothesis.given(strategy)
        def one(case: Any) -> None:
            q = case.query or {}
            if str(q.get("watch", "")).lower() in ("true", "1"):
                q["watch"] = "false"  # a watch streams until its timeout: not a fuzzing target
            case.query = q
            params = case.path_parameters or {}
            if "namespace" in params:
                params["namespace"] = namespace  # random ones do not exist: little to learn
            path = case.operation.path
            plural = _plural(path)
            if "name" in params and made[plural] and res.requests % 2 == 0:
                params["name"] = made[plural][res.requests % len(made[plural])]  # an object that exists
            if isinstance(case.body, dict) and case.method.upper() in ("POST", "PUT"):
                meta = case.body.get("metadata")
                if not isinstance(meta, dict):
                    meta = case.body["metadata"] = {}
                meta["name"] = params.get("name") or f"fz-{res.requests}"  # a name that validates
                meta.pop("namespace", None)
            res.requests += 1
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    resp = case.call(base_url=target.url, session=target.session, timeout=30, verify=target.ca,
                                     cert=target.cert)
            except requests.RequestException as exc:
                res.dropped.append(f"{case.method} {case.formatted_path}: {type(exc).__name__}")
                return
            code = resp.status_code
            res.by_status[code] += 1
            if code >= 500:
                res.server_errors.append(f"{case.method} {case.formatted_path} -> {code}: {resp.text[:300]}")
            if code < 300 and case.method.upper() == "POST" and isinstance(case.body, dict) and \
                    "/{name}" not in path:
                made[plural].append(case.body["metadata"]["name"])
            if code < 300 and case.method.upper() in WRITES:
                res.accepted_writes += 1
                if core is not None:
                    ns = (case.path_parameters or {}).get("namespace", "")
                    _check_client_lists(core, case.formatted_path, str(ns), res)

        one()
        if log is not None:
            log(f"{op.method.upper():6} {op.path}: {res.requests} requests so far")
    res.seconds = time.monotonic() - t0
    return res


__all__ = ["Result", "run"]
