"""A container's environment (kubelet_pods.go makeEnvironmentVariables) and ``$(VAR)``
expansion (third_party/forked/golang/expansion)."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Iterable, Mapping
from decimal import ROUND_CEILING, Decimal
from typing import Any

from kubelite.api import quantity

Obj = dict[str, Any]
# fetch(kind, namespace, name) -> object or None (configmaps / secrets, read via the API)
Fetch = Callable[[str, str, str], Awaitable[Obj | None]]


class EnvError(Exception):
    """A problem that makes the container config invalid (CreateContainerConfigError)."""


# the services whose variables every pod gets, whatever its enableServiceLinks (kubelet's
# masterServices), from the default namespace
MASTER_SERVICES = frozenset({"kubernetes"})
SERVICES_NOT_SYNCED = "services have not yet been read at least once, cannot construct envvars"


def _env_name(service_name: str) -> str:
    return service_name.upper().replace("-", "_")


def _ip_set(svc: Obj) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP") or ""
    return ip not in ("", "None")


def service_env(services: Iterable[Obj], namespace: str, enable_service_links: bool) -> dict[str, str]:
    """getServiceEnvVarMap + envvars.FromServices: ``{SVC}_SERVICE_HOST``/``_SERVICE_PORT``
    (and ``_SERVICE_PORT_{NAME}`` per named port) and Docker link variables
    (``{SVC}_PORT``, ``{SVC}_PORT_{port}_{PROTO}[_PROTO|_PORT|_ADDR]``) for the Services of
    the pod's namespace when its links are enabled, and always for the ``kubernetes``
    Service of the default namespace; Services without a cluster IP give none."""
    chosen: dict[str, Obj] = {}
    for svc in services:
        meta = svc.get("metadata") or {}
        name = meta.get("name") or ""
        if not _ip_set(svc):
            continue
        if meta.get("namespace") == "default" and name in MASTER_SERVICES:
            chosen.setdefault(name, svc)
        elif meta.get("namespace") == namespace and enable_service_links:
            chosen[name] = svc
    out: dict[str, str] = {}
    for name in sorted(chosen):
        spec = chosen[name].get("spec") or {}
        ip = spec["clusterIP"]
        ports = spec.get("ports") or []
        prefix = _env_name(name)
        out[prefix + "_SERVICE_HOST"] = ip
        if ports:
            out[prefix + "_SERVICE_PORT"] = str(ports[0].get("port", ""))
        for sp in ports:
            if sp.get("name"):
                out[f"{prefix}_SERVICE_PORT_{_env_name(sp['name'])}"] = str(sp.get("port", ""))
        for i, sp in enumerate(ports):
            proto = (sp.get("protocol") or "TCP").lower()
            port = sp.get("port", "")
            host_port = f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"
            if i == 0:  # Docker special-cases the first port
                out[prefix + "_PORT"] = f"{proto}://{host_port}"
            pp = f"{prefix}_PORT_{port}_{proto.upper()}"
            out[pp] = f"{proto}://{host_port}"
            out[pp + "_PROTO"] = proto
            out[pp + "_PORT"] = str(port)
            out[pp + "_ADDR"] = ip
    return out


# --------------------------------------------------------------------------- expansion
def expand(s: str, *mappings: Mapping[str, str]) -> str:
    """expansion.Expand: ``$(VAR)`` from the mappings (first wins), ``$$`` escapes, unknown
    references and malformed ones stay as they are."""
    out: list[str] = []
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c != "$" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        nxt = s[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = s.find(")", i + 2)
            if end < 0:
                out.append(s[i:])
                break
            name = s[i + 2:end]
            for m in mappings:
                if name in m:
                    out.append(m[name])
                    break
            else:
                out.append(s[i:end + 1])
            i = end + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def expand_command_and_args(container: Obj, env: Mapping[str, str]) -> tuple[list[str], list[str]]:
    return ([expand(x, env) for x in container.get("command") or []],
            [expand(x, env) for x in container.get("args") or []])


# --------------------------------------------------------------------------- field refs
def _field_path_value(pod: Obj, path: str, host_ip: str, pod_ips: list[str]) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    if path.startswith("metadata.labels['") or path.startswith("metadata.annotations['"):
        kind, _, rest = path[len("metadata."):].partition("['")
        key = rest.rstrip("]").rstrip("'")
        return str((meta.get(kind) or {}).get(key, ""))
    if path == "metadata.labels":
        return "\n".join(f'{k}="{v}"' for k, v in sorted((meta.get("labels") or {}).items()))
    if path == "metadata.annotations":
        return "\n".join(f'{k}="{v}"' for k, v in sorted((meta.get("annotations") or {}).items()))
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
        "status.podIP": pod_ips[0] if pod_ips else "",
        "status.podIPs": ",".join(pod_ips),
    }
    if path not in simple:
        raise EnvError(f"unsupported fieldPath: {path}")
    return str(simple[path] or "")


def _resource_value(container: Obj, ref: Obj, node_allocatable: Mapping[str, str]) -> str:
    res = ref.get("resource", "")
    divisor = quantity.parse_quantity(str(ref.get("divisor") or "1"))
    if divisor == 0:
        divisor = Decimal(1)
    kind, _, name = res.partition(".")
    r = container.get("resources") or {}
    v = (r.get(kind) or {}).get(name)
    if v is None and kind == "requests":
        v = (r.get("limits") or {}).get(name)
    if v is None:
        v = node_allocatable.get(name, "0") if kind == "limits" else "0"
    q = quantity.parse_quantity(str(v))
    return str(int((q / divisor).to_integral_value(rounding=ROUND_CEILING)))


async def _source_data(fetch: Fetch, cache: dict[tuple[str, str], Obj | None], kind: str,
                       ns: str, name: str) -> Obj | None:
    key = (kind, name)
    if key not in cache:
        cache[key] = await fetch(kind, ns, name)
    return cache[key]


def _data(obj: Obj, kind: str) -> dict[str, str]:
    if kind == "secrets":
        out = {k: base64.b64decode(v).decode(errors="replace") for k, v in (obj.get("data") or {}).items()}
        out.update(obj.get("stringData") or {})
        return out
    out = dict(obj.get("data") or {})
    for k, v in (obj.get("binaryData") or {}).items():
        out.setdefault(k, base64.b64decode(v).decode(errors="replace"))
    return out


async def make_environment(pod: Obj, container: Obj, fetch: Fetch, host_ip: str, pod_ips: list[str],
                           node_allocatable: Mapping[str, str] | None = None,
                           services: Iterable[Obj] | None = ()) -> list[tuple[str, str]]:
    """makeEnvironmentVariables: envFrom first, then env (later wins), ``$(VAR)`` in values
    expanded against what came before and the service variables, which follow unless a
    declared variable has their name. ``services`` is the node's view of every Service
    (None: not read yet, which fails the container config as the kubelet does). Raises
    :class:`EnvError` for missing required sources."""
    ns = (pod.get("metadata") or {}).get("namespace", "default")
    if services is None:
        raise EnvError(SERVICES_NOT_SYNCED)
    links = (pod.get("spec") or {}).get("enableServiceLinks")
    svc_env = service_env(services, ns, links is None or bool(links))
    cache: dict[tuple[str, str], Obj | None] = {}
    env: dict[str, str] = {}
    order: list[str] = []

    def put(k: str, v: str) -> None:
        if k not in env:
            order.append(k)
        env[k] = v

    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        for kind, field_name in (("configmaps", "configMapRef"), ("secrets", "secretRef")):
            ref = src.get(field_name)
            if not ref:
                continue
            obj = await _source_data(fetch, cache, kind, ns, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    continue
                what = "configmap" if kind == "configmaps" else "secret"
                raise EnvError(f'{what} "{ref.get("name", "")}" not found')
            for k, v in _data(obj, kind).items():
                put(prefix + k, v)
    for e in container.get("env") or []:
        name = e.get("name", "")
        if "value" in e or not e.get("valueFrom"):
            put(name, expand(e.get("value", "") or "", env, svc_env))
            continue
        vf = e["valueFrom"]
        if vf.get("fieldRef"):
            put(name, _field_path_value(pod, vf["fieldRef"].get("fieldPath", ""), host_ip, pod_ips))
        elif vf.get("resourceFieldRef"):
            rf = vf["resourceFieldRef"]
            target = container
            if rf.get("containerName"):
                every = (pod["spec"].get("containers") or []) + (pod["spec"].get("initContainers") or [])
                target = next((c for c in every if c.get("name") == rf["containerName"]), container)
            put(name, _resource_value(target, rf, node_allocatable or {}))
        else:
            for kind, field_name in (("configmaps", "configMapKeyRef"), ("secrets", "secretKeyRef")):
                ref = vf.get(field_name)
                if not ref:
                    continue
                what = "configmap" if kind == "configmaps" else "secret"
                obj = await _source_data(fetch, cache, kind, ns, ref.get("name", ""))
                if obj is None:
                    if ref.get("optional"):
                        break
                    raise EnvError(f'{what} "{ref.get("name", "")}" not found')
                data = _data(obj, kind)
                key = ref.get("key", "")
                if key not in data:
                    if ref.get("optional"):
                        break
                    raise EnvError(f"couldn't find key {key} in {what.capitalize() if what == 'secret' else 'ConfigMap'} "
                                   f"{ns}/{ref.get('name', '')}")
                put(name, data[key])
                break
    return [(k, env[k]) for k in order] + [(k, v) for k, v in svc_env.items() if k not in env]
