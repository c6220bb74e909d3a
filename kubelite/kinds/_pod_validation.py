"""Pod validation: ValidatePodCreate / ValidatePodSpec / ValidatePodUpdate / ValidatePodStatusUpdate.

Mirrors pkg/apis/core/validation/validation.go (v1.37), with the same field paths, error
types and detail messages. Objects are v1 JSON dicts, already defaulted.
"""

from __future__ import annotations

import json
import re
from typing import Any

from kubelite.api import field as fld
from kubelite.api import meta, quantity
from kubelite.api.field import FieldError, Path

INT32_MAX = 2147483647
IS_NEGATIVE = "must be greater than or equal to 0"
FIELD_IMMUTABLE = "field is immutable"
FILE_MODE_ERROR = "must be a number between 0 and 0777 (octal), both inclusive"

UPDATABLE_POD_SPEC_FIELDS = (
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
)

Errs = list[FieldError]


class _Raw:
    """A bad value that Go prints with %v/%s, i.e. without quotes."""

    def __init__(self, s: str) -> None:
        self.s = s

    def __str__(self) -> str:
        return self.s


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _l(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def inclusive_range(lo: int, hi: int) -> str:
    return f"must be between {lo} and {hi}, inclusive"


HOSTNAME_OVERRIDE_MAX = 64  # the kernel's nodename field


def _dns_label(value: str, path: Path) -> Errs:
    return [fld.invalid(path, value, m) for m in meta.is_dns1123_label(value)]


def _dns_subdomain(value: str, path: Path) -> Errs:
    return [fld.invalid(path, value, m) for m in meta.is_dns1123_subdomain(value)]


def _qualified_name(value: str, path: Path) -> Errs:
    return [fld.invalid(path, value, m) for m in meta.is_qualified_name(value)]


def _nonneg(value: Any, path: Path) -> Errs:
    if isinstance(value, int) and value < 0:
        return [fld.invalid(path, value, IS_NEGATIVE)]
    return []


def validate_labels(labels: Any, path: Path) -> Errs:
    """metav1 validation.ValidateLabels (errors reported on the map's path)."""
    return meta.validate_labels(labels, path)


def _is_valid_ip(path: Path, value: str) -> Errs:
    return [fld.invalid(path, value, m) for m in meta.is_valid_ip(value)]


# ----------------------------------------------------------------------------- volumes
def _local_descending_path(target: str, path: Path) -> Errs:
    errs: Errs = []
    if target.startswith("/"):
        errs.append(fld.invalid(path, target, "must be a relative path"))
    errs += _no_backsteps(target, path)
    return errs


def _no_backsteps(target: str, path: Path) -> Errs:
    if ".." in target.split("/"):
        return [fld.invalid(path, target, "must not contain '..'")]
    return []


def _local_non_reserved_path(target: str, path: Path) -> Errs:
    errs = _local_descending_path(target, path)
    if target.startswith("..") and not target.startswith("../"):
        errs.append(fld.invalid(path, target, "must not start with '..'"))
    return errs


def _mode(v: Any, path: Path) -> Errs:
    if isinstance(v, int) and (v > 0o777 or v < 0):
        return [fld.invalid(path, v, FILE_MODE_ERROR)]
    return []


def _key_to_path(kp: dict[str, Any], path: Path) -> Errs:
    errs: Errs = []
    if not kp.get("key"):
        errs.append(fld.required(path.child("key")))
    if not kp.get("path"):
        errs.append(fld.required(path.child("path")))
    errs += _local_non_reserved_path(kp.get("path") or "", path.child("path"))
    errs += _mode(kp.get("mode"), path.child("mode"))
    return errs


_VOLUME_DOWNWARD_FIELDS = ("metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace",
                           "metadata.uid")
_ENV_DOWNWARD_FIELDS = ("metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
                        "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP",
                        "status.podIPs")
_RESOURCE_FIELDS = ("limits.cpu", "limits.ephemeral-storage", "limits.memory", "requests.cpu",
                    "requests.ephemeral-storage", "requests.memory")


def _object_field_selector(fs: dict[str, Any], valid: tuple[str, ...], path: Path) -> Errs:
    if not fs.get("apiVersion"):
        return [fld.required(path.child("apiVersion"))]
    fp = fs.get("fieldPath") or ""
    if not fp:
        return [fld.required(path.child("fieldPath"))]
    if fs["apiVersion"] != "v1":
        return [fld.invalid(path.child("fieldPath"), fp,
                            f'error converting fieldPath: unsupported pod version: {fs["apiVersion"]}')]
    m = re.match(r"^(metadata\.annotations|metadata\.labels)\['(.*)'\]$", fp)
    if m or "[" in fp:
        if m is None:
            base = fp.split("[", 1)[0]
            return [fld.invalid(path, base, "does not support subscript")]
        base, sub = m.group(1), m.group(2)
        return _qualified_name(sub.lower() if base == "metadata.annotations" else sub, path)
    if fp not in valid:
        return [fld.not_supported(path.child("fieldPath"), fp, list(valid))]
    return []


def _resource_field_selector(rf: dict[str, Any], path: Path, volume: bool) -> Errs:
    errs: Errs = []
    res = rf.get("resource") or ""
    if volume and not rf.get("containerName"):
        errs.append(fld.required(path.child("containerName")))
    elif not res:
        errs.append(fld.required(path.child("resource")))
    elif res not in _RESOURCE_FIELDS and not res.startswith(("requests.hugepages-", "limits.hugepages-")):
        errs.append(fld.not_supported(path.child("resource"), res, list(_RESOURCE_FIELDS)))
    return errs


def _downward_file(f: dict[str, Any], path: Path) -> Errs:
    errs: Errs = []
    if not f.get("path"):
        errs.append(fld.required(path.child("path")))
    errs += _local_non_reserved_path(f.get("path") or "", path.child("path"))
    if isinstance(f.get("fieldRef"), dict):
        errs += _object_field_selector(f["fieldRef"], _VOLUME_DOWNWARD_FIELDS, path.child("fieldRef"))
        if f.get("resourceFieldRef") is not None:
            errs.append(fld.invalid(path, "resource", "fieldRef and resourceFieldRef can not be specified simultaneously"))
    elif isinstance(f.get("resourceFieldRef"), dict):
        errs += _resource_field_selector(f["resourceFieldRef"], path.child("resourceFieldRef"), True)
    else:
        errs.append(fld.required(path, "one of fieldRef and resourceFieldRef is required"))
    errs += _mode(f.get("mode"), path.child("mode"))
    return errs


def _projected(p: dict[str, Any], path: Path) -> Errs:
    errs = _mode(p.get("defaultMode"), path.child("defaultMode"))
    all_paths: set[str] = set()
    for i, src in enumerate(_l(p.get("sources"))):
        src = _d(src)
        n = 0
        sp = path.child("sources").index(i)
        for kind, name_key in (("secret", "name"), ("configMap", "name")):
            s = src.get(kind)
            if isinstance(s, dict):
                n += 1
                if not s.get(name_key):
                    errs.append(fld.required(sp.child(kind, name_key)))
                for j, kp in enumerate(_l(s.get("items"))):
                    kp = _d(kp)
                    errs += _key_to_path(kp, sp.child(kind, "items").index(j))
                    if kp.get("path"):
                        if kp["path"] in all_paths:
                            errs.append(fld.invalid(path, s.get("name", ""), "conflicting duplicate paths"))
                        all_paths.add(kp["path"])
        dapi = src.get("downwardAPI")
        if isinstance(dapi, dict):
            n += 1
            for item in _l(dapi.get("items")):
                item = _d(item)
                errs += _downward_file(item, sp.child("downwardAPI"))
                if item.get("path"):
                    if item["path"] in all_paths:
                        errs.append(fld.invalid(path, item["path"], "conflicting duplicate paths"))
                    all_paths.add(item["path"])
        sat = src.get("serviceAccountToken")
        if isinstance(sat, dict):
            n += 1
            exp = sat.get("expirationSeconds")
            if isinstance(exp, int) and exp < 600:
                errs.append(fld.invalid(sp.child("serviceAccountToken", "expirationSeconds"), exp,
                                        "may not specify a duration less than 10 minutes"))
            if isinstance(exp, int) and exp > 1 << 32:
                errs.append(fld.invalid(sp.child("serviceAccountToken", "expirationSeconds"), exp,
                                        "may not specify a duration larger than 2^32 seconds"))
            if not sat.get("path"):
                errs.append(fld.required(path.child("path")))
            else:
                errs += _local_non_reserved_path(sat["path"], path.child("path"))
        if isinstance(src.get("clusterTrustBundle"), dict):
            n += 1
        if isinstance(src.get("podCertificate"), dict):
            n += 1
        if n > 1:
            errs.append(fld.forbidden(sp, "may not specify more than 1 volume type per source"))
    return errs


_HOST_PATH_TYPES = ("", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate",
                    "Socket")

# (json name, path name used in nested errors) in upstream's checking order
_VOLUME_ORDER = (
    ("emptyDir", "emptyDir"), ("hostPath", "hostPath"), ("gitRepo", "gitRepo"),
    ("gcePersistentDisk", "persistentDisk"), ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("secret", "secret"), ("nfs", "nfs"), ("iscsi", "iscsi"), ("glusterfs", "glusterfs"),
    ("flocker", "flocker"), ("persistentVolumeClaim", "persistentVolumeClaim"), ("rbd", "rbd"),
    ("cinder", "cinder"), ("cephfs", "cephfs"), ("quobyte", "quobyte"), ("downwardAPI", "downwardAPI"),
    ("fc", "fc"), ("flexVolume", "flexVolume"), ("configMap", "configMap"), ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"), ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"), ("azureDisk", "azureDisk"), ("storageos", "storageos"),
    ("projected", "projected"), ("scaleIO", "scaleIO"), ("csi", "csi"), ("ephemeral", "ephemeral"),
    ("image", "image"),
)
# the Forbidden path upstream uses for a second source (with its typos)
_SECOND_SOURCE_PATH = {"cephfs": "cephFS", "downwardAPI": "downwarAPI"}


def _volume_source(v: dict[str, Any], path: Path) -> Errs:
    errs: Errs = []
    n = 0
    for key, sub in _VOLUME_ORDER:
        src = v.get(key)
        if src is None:
            continue
        if n > 0 and key != "emptyDir":
            errs.append(fld.forbidden(path.child(_SECOND_SOURCE_PATH.get(key, key)),
                                      "may not specify more than 1 volume type"))
            continue
        n += 1
        src = _d(src)
        p = path.child(sub)
        if key == "emptyDir":
            sl = src.get("sizeLimit")
            if sl is not None:
                try:
                    if quantity.parse_quantity(sl) < 0:
                        errs.append(fld.forbidden(p.child("sizeLimit"), "SizeLimit field must be a valid resource quantity"))
                except ValueError:
                    errs.append(fld.forbidden(p.child("sizeLimit"), "SizeLimit field must be a valid resource quantity"))
            med = src.get("medium")
            if med not in (None, "", "Memory") and not str(med).startswith("HugePages"):
                pass
        elif key == "hostPath":
            if not src.get("path"):
                errs.append(fld.required(p.child("path")))
            else:
                errs += _no_backsteps(src["path"], p.child("path"))
                t = src.get("type")
                if t is not None and t not in _HOST_PATH_TYPES:
                    errs.append(fld.not_supported(p.child("type"), t, list(_HOST_PATH_TYPES)))
        elif key == "gitRepo":
            if not src.get("repository"):
                errs.append(fld.required(p.child("repository")))
            errs += _local_descending_path(src.get("directory") or "", p.child("directory"))
        elif key == "secret":
            if not src.get("secretName"):
                errs.append(fld.required(p.child("secretName")))
            errs += _mode(src.get("defaultMode"), p.child("defaultMode"))
            for i, kp in enumerate(_l(src.get("items"))):
                errs += _key_to_path(_d(kp), p.child("items").index(i))
        elif key == "configMap":
            if not src.get("name"):
                errs.append(fld.required(p.child("name")))
            errs += _mode(src.get("defaultMode"), p.child("defaultMode"))
            for i, kp in enumerate(_l(src.get("items"))):
                errs += _key_to_path(_d(kp), p.child("items").index(i))
        elif key == "nfs":
            if not src.get("server"):
                errs.append(fld.required(p.child("server")))
            if not src.get("path"):
                errs.append(fld.required(p.child("path")))
            if not str(src.get("path") or "").startswith("/"):
                errs.append(fld.invalid(p.child("path"), src.get("path") or "", "must be an absolute path"))
        elif key == "persistentVolumeClaim":
            if not src.get("claimName"):
                errs.append(fld.required(p.child("claimName")))
        elif key == "downwardAPI":
            errs += _mode(src.get("defaultMode"), p.child("defaultMode"))
            for item in _l(src.get("items")):
                errs += _downward_file(_d(item), p)
        elif key == "projected":
            errs += _projected(src, p)
        elif key == "csi":
            if not src.get("driver"):
                errs.append(fld.required(p.child("driver")))
        elif key == "image":
            if not src.get("reference"):
                errs.append(fld.required(p.child("reference")))
            pp = src.get("pullPolicy")
            errs += _pull_policy(pp or "", p.child("pullPolicy"))
    if n == 0:
        errs.append(fld.required(path, "must specify a volume type"))
    return errs


def validate_volumes(volumes: Any, pod_name: str, path: Path) -> tuple[dict[str, dict[str, Any]], Errs]:
    errs: Errs = []
    names: set[str] = set()
    vols: dict[str, dict[str, Any]] = {}
    created_pvcs = {f"{pod_name}-{_d(v).get('name', '')}" for v in _l(volumes)
                    if pod_name and _d(v).get("ephemeral") is not None}
    for i, v in enumerate(_l(volumes)):
        v = _d(v)
        ip = path.index(i)
        name = v.get("name") or ""
        el = _volume_source(v, ip)
        if not name:
            el.append(fld.required(ip.child("name")))
        else:
            el += _dns_label(name, ip.child("name"))
        if name in names:
            el.append(fld.duplicate(ip.child("name"), name))
        if not el:
            names.add(name)
            vols[name] = v
        else:
            errs += el
        pvc = v.get("persistentVolumeClaim")
        if isinstance(pvc, dict) and pvc.get("claimName") in created_pvcs:
            errs.append(fld.invalid(ip.child("persistentVolumeClaim", "claimName"), pvc["claimName"],
                                    "must not reference a PVC that gets created for an ephemeral volume"))
    return vols, errs


# ----------------------------------------------------------------------------- containers
_PROTOCOLS = ("SCTP", "TCP", "UDP")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")


def _pull_policy(policy: str, path: Path) -> Errs:
    if policy in _PULL_POLICIES:
        return []
    if not policy:
        return [fld.required(path)]
    return [fld.not_supported(path, policy, list(_PULL_POLICIES))]


def _ports(ports: Any, path: Path) -> Errs:
    errs: Errs = []
    names: set[str] = set()
    for i, p in enumerate(_l(ports)):
        p = _d(p)
        ip = path.index(i)
        name = p.get("name") or ""
        if name:
            msgs = meta.is_valid_port_name(name)
            if msgs:
                errs += [fld.invalid(ip.child("name"), name, m) for m in msgs]
            elif name in names:
                errs.append(fld.duplicate(ip.child("name"), name))
            else:
                names.add(name)
        cp = p.get("containerPort") or 0
        if cp == 0:
            errs.append(fld.required(ip.child("containerPort")))
        else:
            errs += [fld.invalid(ip.child("containerPort"), cp, m) for m in meta.is_valid_port_num(cp)]
        hp = p.get("hostPort") or 0
        if hp != 0:
            errs += [fld.invalid(ip.child("hostPort"), hp, m) for m in meta.is_valid_port_num(hp)]
        proto = p.get("protocol") or ""
        if not proto:
            errs.append(fld.required(ip.child("protocol")))
        elif proto not in _PROTOCOLS:
            errs.append(fld.not_supported(ip.child("protocol"), proto, list(_PROTOCOLS)))
    return errs


def _env_name(name: str) -> list[str]:
    return meta.is_env_var_name(name)


def _env(env: Any, path: Path) -> Errs:
    errs: Errs = []
    for i, e in enumerate(_l(env)):
        e = _d(e)
        ip = path.index(i)
        name = e.get("name") or ""
        if not name:
            errs.append(fld.required(ip.child("name")))
        else:
            errs += [fld.invalid(ip.child("name"), name, m) for m in _env_name(name)]
        vf = e.get("valueFrom")
        if vf is None:
            continue
        vf = _d(vf)
        vp = ip.child("valueFrom")
        n = 0
        if isinstance(vf.get("fieldRef"), dict):
            n += 1
            errs += _object_field_selector(vf["fieldRef"], _ENV_DOWNWARD_FIELDS, vp.child("fieldRef"))
        if isinstance(vf.get("resourceFieldRef"), dict):
            n += 1
            errs += _resource_field_selector(vf["resourceFieldRef"], vp.child("resourceFieldRef"), False)
        for kind in ("configMapKeyRef", "secretKeyRef"):
            ref = vf.get(kind)
            if isinstance(ref, dict):
                n += 1
                kp = vp.child(kind)
                errs += [fld.invalid(kp.child("name"), ref.get("name") or "", m)
                         for m in meta.name_is_dns_subdomain(ref.get("name") or "", False)]
                if not ref.get("key"):
                    errs.append(fld.required(kp.child("key")))
                else:
                    errs += [fld.invalid(kp.child("key"), ref["key"], m) for m in _config_map_key(ref["key"])]
        for kind in ("fileKeyRef",):
            if isinstance(vf.get(kind), dict):
                n += 1
        if n == 0:
            errs.append(fld.invalid(vp, "", "must specify one of: `fieldRef`, `resourceFieldRef`, "
                                            "`configMapKeyRef` or `secretKeyRef`"))
        elif e.get("value"):
            errs.append(fld.invalid(vp, "", "may not be specified when `value` is not empty"))
        elif n > 1:
            errs.append(fld.invalid(vp, "", "may not have more than one field specified at a time"))
    return errs


_CONFIG_MAP_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")


def _config_map_key(key: str) -> list[str]:
    f = getattr(meta, "is_config_map_key", None)
    if f is not None:
        return list(f(key))
    msgs = []
    if len(key) > 253:
        msgs.append("must be no more than 253 characters")
    if not _CONFIG_MAP_KEY_RE.match(key):
        msgs.append("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. "
                    "'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")
    if key == ".":
        msgs.append("must not be '.'")
    elif key == "..":
        msgs.append("must not be '..'")
    elif key.startswith(".."):
        msgs.append("must not start with '..'")
    return msgs


def _env_from(env_from: Any, path: Path) -> Errs:
    errs: Errs = []
    for i, e in enumerate(_l(env_from)):
        e = _d(e)
        ip = path.index(i)
        if e.get("prefix"):
            errs += [fld.invalid(ip.child("prefix"), e["prefix"], m) for m in _env_name(e["prefix"])]
        n = 0
        for kind in ("configMapRef", "secretRef"):
            ref = e.get(kind)
            if isinstance(ref, dict):
                n += 1
                if not ref.get("name"):
                    errs.append(fld.required(ip.child(kind, "name")))
                else:
                    errs += [fld.invalid(ip.child(kind, "name"), ref["name"], m)
                             for m in meta.name_is_dns_subdomain(ref["name"], True)]
        if n == 0:
            errs.append(fld.invalid(path, "", "must specify one of: `configMapRef` or `secretRef`"))
        elif n > 1:
            errs.append(fld.invalid(path, "", "may not have more than one field specified at a time"))
    return errs


def _volume_mounts(mounts: Any, devices: dict[str, str], vols: dict[str, dict[str, Any]],
                   container: dict[str, Any], path: Path) -> Errs:
    errs: Errs = []
    mountpoints: set[str] = set()
    privileged = bool(_d(container.get("securityContext")).get("privileged"))
    for i, m in enumerate(_l(mounts)):
        m = _d(m)
        ip = path.index(i)
        name = m.get("name") or ""
        mp = m.get("mountPath") or ""
        if not name:
            errs.append(fld.required(ip.child("name")))
        if name not in vols:
            errs.append(fld.not_found(ip.child("name"), name))
        if not mp:
            errs.append(fld.required(ip.child("mountPath")))
        if mp in mountpoints:
            errs.append(fld.invalid(ip.child("mountPath"), mp, "must be unique"))
        mountpoints.add(mp)
        if name in devices:
            errs.append(fld.invalid(ip.child("name"), name, "must not already exist in volumeDevices"))
        if mp in devices.values():
            errs.append(fld.invalid(ip.child("mountPath"), mp, "must not already exist as a path in volumeDevices"))
        if name in vols and vols[name].get("image") is not None:
            if m.get("subPath"):
                errs.append(fld.invalid(ip.child("subPath"), m["subPath"], "not allowed in image volume sources"))
            if m.get("subPathExpr"):
                errs.append(fld.invalid(ip.child("subPathExpr"), m["subPathExpr"], "not allowed in image volume sources"))
        if m.get("subPath"):
            errs += _local_descending_path(m["subPath"], path.child("subPath"))
        if m.get("subPathExpr"):
            if m.get("subPath"):
                errs.append(fld.invalid(ip.child("subPathExpr"), m["subPathExpr"],
                                        "subPathExpr and subPath are mutually exclusive"))
            errs += _local_descending_path(m["subPathExpr"], path.child("subPathExpr"))
        prop = m.get("mountPropagation")
        if prop is not None:
            pp = path.child("mountPropagation")
            supported = ["Bidirectional", "HostToContainer", "None"]
            if prop not in supported:
                errs.append(fld.not_supported(pp, prop, supported))
            if prop == "Bidirectional" and not privileged:
                errs.append(fld.forbidden(pp, "Bidirectional mount propagation is available only to privileged containers"))
        rro = m.get("recursiveReadOnly")
        if rro is not None:
            rp = path.child("recursiveReadOnly")
            if rro in ("Enabled", "IfPossible"):
                if not m.get("readOnly"):
                    errs.append(fld.forbidden(rp, "may only be specified when readOnly is true"))
                if prop not in (None, "None"):
                    errs.append(fld.forbidden(rp, "may only be specified when mountPropagation is None or not specified"))
            elif rro != "Disabled":
                errs.append(fld.not_supported(rp, rro, ["Disabled", "Enabled", "IfPossible"]))
    return errs


_STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")
_STANDARD_RESOURCES = (
    "cpu", "memory", "ephemeral-storage", "requests.cpu", "requests.memory", "requests.ephemeral-storage",
    "limits.cpu", "limits.memory", "limits.ephemeral-storage", "pods", "services", "replicationcontrollers",
    "resourcequotas", "secrets", "persistentvolumeclaims", "configmaps", "requests.storage", "storage",
)


def _is_hugepages(name: str) -> bool:
    return name.startswith("hugepages-")


def _is_native(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def _overcommit_allowed(name: str) -> bool:
    return _is_native(name) and not _is_hugepages(name)


def _is_extended(name: str) -> bool:
    if _is_native(name) or name.startswith("requests."):
        return False
    return not meta.is_qualified_name("requests." + name)


def _resource_name(name: str, path: Path) -> Errs:
    errs = [fld.invalid(path, name, m) for m in meta.is_qualified_name(name)]
    if errs:
        return errs
    if "/" not in name and not (name in _STANDARD_RESOURCES or _is_hugepages(name)
                                or name.startswith("requests.hugepages-")):
        errs.append(fld.invalid(path, name, "must be a standard resource type or fully qualified"))
    return errs


def _container_resource_name(name: str, path: Path) -> Errs:
    errs = _resource_name(name, path)
    if "/" not in name:
        if not (name in _STANDARD_CONTAINER_RESOURCES or _is_hugepages(name)):
            errs.append(fld.invalid(path, name, "must be a standard resource for containers"))
    elif not _is_native(name) and not _is_extended(name):
        errs.append(fld.invalid(path, name, "doesn't follow extended resource name standard"))
    return errs


def _parse(v: Any) -> Any:
    try:
        return quantity.parse_quantity(v)
    except (ValueError, TypeError, ArithmeticError):
        return None


def _qstr(v: Any) -> str:
    try:
        return quantity.canonicalize(v)
    except (ValueError, TypeError, ArithmeticError):
        return str(v)


def _quantity_value(name: str, v: Any, path: Path) -> Errs:
    errs: Errs = []
    q = _parse(v)
    if q is None:
        return [fld.invalid(path, str(v), quantity.ERR_FORMAT_WRONG)]
    if q < 0:
        errs.append(fld.invalid(path, _qstr(v), IS_NEGATIVE))
    if _is_extended(name) and (q * 1000) % 1000 != 0:
        errs.append(fld.invalid(path, _Raw(_qstr(v)), "must be an integer"))
    return errs


def validate_resource_requirements(res: Any, claim_names: set[str], path: Path) -> Errs:
    res = _d(res)
    errs: Errs = []
    lim_path, req_path = path.child("limits"), path.child("requests")
    limits, requests = _d(res.get("limits")), _d(res.get("requests"))
    lim_cpu_mem = req_cpu_mem = lim_huge = req_huge = False
    for name, v in limits.items():
        p = lim_path.key(name)
        errs += _container_resource_name(name, p)
        errs += _quantity_value(name, v, p)
        if _is_hugepages(name):
            lim_huge = True
        if name in ("cpu", "memory"):
            lim_cpu_mem = True
    for name, v in requests.items():
        p = req_path.key(name)
        errs += _container_resource_name(name, p)
        errs += _quantity_value(name, v, p)
        q = _parse(v)
        if name in limits:
            lq = _parse(limits[name])
            if q is not None and lq is not None:
                if q != lq and not _overcommit_allowed(name):
                    errs.append(fld.invalid(req_path, _qstr(v), f"must be equal to {name} limit of {_qstr(limits[name])}"))
                elif q > lq:
                    errs.append(fld.invalid(req_path, _qstr(v),
                                            f"must be less than or equal to {name} limit of {_qstr(limits[name])}"))
        elif not _overcommit_allowed(name):
            errs.append(fld.required(lim_path, "Limit must be set for non overcommitable resources"))
        if _is_hugepages(name):
            req_huge = True
        if name in ("cpu", "memory"):
            req_cpu_mem = True
    if not lim_cpu_mem and not req_cpu_mem and (req_huge or lim_huge):
        errs.append(fld.forbidden(path, "HugePages require cpu or memory"))
    seen: set[str] = set()
    for i, c in enumerate(_l(res.get("claims"))):
        name = _d(c).get("name") or ""
        if not name:
            errs.append(fld.required(path.child("claims").index(i)))
            continue
        key = name + ("/" + _d(c)["request"] if _d(c).get("request") else "")
        if key in seen:
            errs.append(fld.duplicate(path.child("claims").index(i), key))
        seen.add(key)
        if name not in claim_names:
            e = fld.not_found(path.child("claims").index(i), name)
            e.detail = "must be one of the names in pod.spec.resourceClaims" + (
                " which is empty" if not claim_names else ": " + ", ".join(sorted(claim_names)))
            errs.append(e)
    return errs


_HANDLER_TYPES = ("exec", "httpGet", "tcpSocket", "grpc", "sleep")


def _port_num_or_name(port: Any, path: Path) -> Errs:
    if isinstance(port, bool) or port is None:
        return [fld.invalid(path, 0, inclusive_range(1, 65535))]
    if isinstance(port, int):
        return [fld.invalid(path, port, m) for m in meta.is_valid_port_num(port)]
    if isinstance(port, str):
        return [fld.invalid(path, port, m) for m in meta.is_valid_port_name(port)]
    return [FieldError(fld.INTERNAL, str(path), fld.OMIT, f"unknown type: {type(port).__name__}")]


def _handler(h: dict[str, Any], allowed: tuple[str, ...], grace: Any, path: Path) -> Errs:
    errs: Errs = []
    n = 0
    for t in _HANDLER_TYPES:
        if t not in allowed or h.get(t) is None:
            continue
        p = path.child(t)
        if n > 0:
            errs.append(fld.forbidden(p, "may not specify more than 1 handler type"))
            continue
        n += 1
        v = _d(h[t])
        if t == "exec":
            if not _l(v.get("command")):
                errs.append(fld.required(p.child("command")))
        elif t == "httpGet":
            if not v.get("path"):
                errs.append(fld.required(p.child("path")))
            errs += _port_num_or_name(v.get("port"), p.child("port"))
            if v.get("scheme") not in ("HTTP", "HTTPS"):
                errs.append(fld.not_supported(p.child("scheme"), v.get("scheme") or "", ["HTTP", "HTTPS"]))
            for hdr in _l(v.get("httpHeaders")):
                hn = _d(hdr).get("name") or ""
                errs += [fld.invalid(p.child("httpHeaders"), hn, m) for m in meta.is_http_header_name(hn)]
        elif t == "tcpSocket":
            errs += _port_num_or_name(v.get("port"), p.child("port"))
        elif t == "grpc":
            errs += _port_num_or_name(v.get("port") or 0, p.child("port"))
        elif t == "sleep":
            secs = v.get("seconds") or 0
            if isinstance(grace, int) and (secs < 0 or secs > grace):
                errs.append(fld.invalid(p, secs, "must be non-negative and less than terminationGracePeriodSeconds "
                                                 f"({grace})"))
    if n == 0:
        errs.append(fld.required(path, "must specify a handler type"))
    return errs


def _probe(probe: Any, grace: Any, path: Path, kind: str) -> Errs:
    if probe is None:
        return []
    p = _d(probe)
    errs = _handler(p, ("exec", "httpGet", "tcpSocket", "grpc"), grace, path)
    for k in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        errs += _nonneg(p.get(k, 0), path.child(k))
    tg = p.get("terminationGracePeriodSeconds")
    if isinstance(tg, int) and tg <= 0:
        errs.append(fld.invalid(path.child("terminationGracePeriodSeconds"), tg, "must be greater than 0"))
    if kind in ("liveness", "startup") and p.get("successThreshold", 1) != 1:
        errs.append(fld.invalid(path.child("successThreshold"), p.get("successThreshold"), "must be 1"))
    if kind == "readiness" and tg is not None:
        errs.append(fld.invalid(path.child("terminationGracePeriodSeconds"), tg,
                                "must not be set for readinessProbes"))
    return errs


def _lifecycle(lc: dict[str, Any], grace: Any, path: Path) -> Errs:
    errs: Errs = []
    for k in ("postStart", "preStop"):
        if lc.get(k) is not None:
            errs += _handler(_d(lc[k]), ("exec", "httpGet", "tcpSocket", "sleep"), grace, path.child(k))
    return errs  # stopSignal needs the pod's OS: validate_stop_signals


_RT = ["SIGRTMIN"] + [f"SIGRTMIN+{i}" for i in range(1, 16)] + [f"SIGRTMAX-{i}" for i in range(14, 0, -1)] + ["SIGRTMAX"]
STOP_SIGNALS_LINUX = sorted([
    "SIGABRT", "SIGALRM", "SIGBUS", "SIGCHLD", "SIGCLD", "SIGCONT", "SIGFPE", "SIGHUP", "SIGILL", "SIGINT", "SIGIO",
    "SIGIOT", "SIGKILL", "SIGPIPE", "SIGPOLL", "SIGPROF", "SIGPWR", "SIGQUIT", "SIGSEGV", "SIGSTKFLT", "SIGSTOP",
    "SIGSYS", "SIGTERM", "SIGTRAP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGUSR1", "SIGUSR2", "SIGVTALRM",
    "SIGWINCH", "SIGXCPU", "SIGXFSZ", *_RT])
STOP_SIGNALS_WINDOWS = ["SIGKILL", "SIGTERM"]


def validate_stop_signals(spec: dict[str, Any], path: Path) -> Errs:
    """validateStopSignal for every container's lifecycle.stopSignal: only with spec.os.name,
    and one the OS has (Windows: SIGKILL and SIGTERM)."""
    errs: Errs = []
    os_name = _d(spec.get("os")).get("name") if spec.get("os") is not None else None
    for key in ("containers", "initContainers"):
        for i, c in enumerate(_l(spec.get(key))):
            lc = _d(_d(c).get("lifecycle"))
            if lc.get("stopSignal") is None:
                continue
            sig, p = lc["stopSignal"], path.child(key).index(i).child("lifecycle").child("stopSignal")
            if os_name is None:
                errs.append(fld.forbidden(p, "may not be set for containers with empty `spec.os.name`"))
            elif sig == "":
                errs.append(fld.required(p))
            elif os_name == "windows" and sig not in STOP_SIGNALS_WINDOWS:
                errs.append(fld.not_supported(p, sig, STOP_SIGNALS_WINDOWS))
            elif os_name == "linux" and sig not in STOP_SIGNALS_LINUX:
                errs.append(fld.not_supported(p, sig, STOP_SIGNALS_LINUX))
    return errs


_CAP_RE = None


def _security_context(sc: Any, path: Path) -> Errs:
    if not isinstance(sc, dict):
        return []
    errs: Errs = []
    for k in ("runAsUser", "runAsGroup"):
        v = sc.get(k)
        if isinstance(v, int) and not (0 <= v <= INT32_MAX):
            errs.append(fld.invalid(path.child(k), v, inclusive_range(0, INT32_MAX)))
    pm = sc.get("procMount")
    if pm is not None and pm not in ("Default", "Unmasked"):
        errs.append(fld.not_supported(path.child("procMount"), pm, ["Default", "Unmasked"]))
    if sc.get("allowPrivilegeEscalation") is False:
        if sc.get("privileged"):
            errs.append(fld.invalid(path, sc, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true"))
        caps = _d(sc.get("capabilities"))
        if "CAP_SYS_ADMIN" in _l(caps.get("add")) or "SYS_ADMIN" in _l(caps.get("add")):
            errs.append(fld.invalid(path, sc, "cannot set `allowPrivilegeEscalation` to false and "
                                              "`capabilities.Add` CAP_SYS_ADMIN"))
    errs += _seccomp(sc.get("seccompProfile"), path.child("seccompProfile"))
    errs += _apparmor(sc.get("appArmorProfile"), path.child("appArmorProfile"))
    return errs


_APPARMOR_TYPES = ["Localhost", "RuntimeDefault", "Unconfined"]


def _apparmor(p: Any, path: Path) -> Errs:
    """validateAppArmorProfileField."""
    if not isinstance(p, dict):
        return []
    t = p.get("type") or ""
    lp = p.get("localhostProfile")
    errs: Errs = []
    if t == "Localhost":
        if lp is None or (isinstance(lp, str) and lp.strip() == lp == ""):
            errs.append(fld.required(path.child("localhostProfile"), "must be set when AppArmor type is Localhost"))
        elif isinstance(lp, str):
            if lp.strip() != lp:
                errs.append(fld.invalid(path.child("localhostProfile"), lp, "must not be padded with whitespace"))
            elif len(lp) > 4095:
                errs.append(fld.too_long(path.child("localhostProfile"), 4095))
    elif t in ("RuntimeDefault", "Unconfined"):
        if lp is not None:
            errs.append(fld.invalid(path.child("localhostProfile"), lp, "can only be set when AppArmor type is "
                                                                        "Localhost"))
    elif t == "":
        errs.append(fld.required(path.child("type"), "type is required when appArmorProfile is set"))
    else:
        errs.append(fld.not_supported(path.child("type"), t, _APPARMOR_TYPES))
    return errs


def _seccomp(sp: Any, path: Path) -> Errs:
    if not isinstance(sp, dict):
        return []
    t = sp.get("type") or ""
    errs: Errs = []
    if t == "Localhost":
        if not sp.get("localhostProfile"):
            errs.append(fld.required(path.child("localhostProfile"), "must be set when seccomp type is Localhost"))
    elif sp.get("localhostProfile") is not None:
        errs.append(fld.invalid(path.child("localhostProfile"), sp["localhostProfile"],
                                "can only be set when seccomp type is Localhost"))
    tp = path.child("type")
    if t == "":
        errs.append(fld.required(tp, "type is required when seccompProfile is set"))
    elif t not in ("Localhost", "RuntimeDefault", "Unconfined"):
        errs.append(fld.not_supported(tp, t, ["Localhost", "RuntimeDefault", "Unconfined"]))
    return errs


def _container_common(c: dict[str, Any], vols: dict[str, dict[str, Any]], claim_names: set[str], path: Path,
                      restart_policy: str) -> Errs:
    errs: Errs = []
    name = c.get("name") or ""
    if not name:
        errs.append(fld.required(path.child("name")))
    else:
        errs += _dns_label(name, path.child("name"))
    if not c.get("image"):
        errs.append(fld.required(path.child("image")))
    tmp = c.get("terminationMessagePolicy") or ""
    if tmp not in ("File", "FallbackToLogsOnError"):
        if not tmp:
            errs.append(fld.required(path.child("terminationMessagePolicy")))
        else:
            errs.append(fld.not_supported(path.child("terminationMessagePolicy"), tmp, ["File", "FallbackToLogsOnError"]))
    mounts = {_d(m).get("name", ""): _d(m).get("mountPath", "") for m in _l(c.get("volumeMounts"))}
    devices = {_d(m).get("name", ""): _d(m).get("devicePath", "") for m in _l(c.get("volumeDevices"))}
    errs += _ports(c.get("ports"), path.child("ports"))
    errs += _env(c.get("env"), path.child("env"))
    errs += _env_from(c.get("envFrom"), path.child("envFrom"))
    errs += _volume_mounts(c.get("volumeMounts"), devices, vols, c, path.child("volumeMounts"))
    errs += _volume_devices(c.get("volumeDevices"), mounts, vols, path.child("volumeDevices"))
    errs += _pull_policy(c.get("imagePullPolicy") or "", path.child("imagePullPolicy"))
    errs += validate_resource_requirements(c.get("resources"), claim_names, path.child("resources"))
    errs += _resize_policy(c.get("resizePolicy"), path.child("resizePolicy"), restart_policy)
    errs += _security_context(c.get("securityContext"), path.child("securityContext"))
    return errs


def _resize_policy(policies: Any, path: Path, restart_policy: str) -> Errs:
    errs: Errs = []
    seen: set[str] = set()
    for i, p in enumerate(_l(policies)):
        p = _d(p)
        rn, rp = p.get("resourceName") or "", p.get("restartPolicy") or ""
        if rn in seen:
            errs.append(fld.duplicate(path.index(i), rn))
        seen.add(rn)
        if rn not in ("cpu", "memory"):
            errs.append(fld.required(path) if not rn else fld.not_supported(path, rn, ["cpu", "memory"]))
        if rp not in ("NotRequired", "RestartContainer"):
            errs.append(fld.required(path) if not rp else
                        fld.not_supported(path, rp, ["NotRequired", "RestartContainer"]))
        if restart_policy == "Never" and rp != "NotRequired":
            errs.append(fld.invalid(path, rp, "must be 'NotRequired' when `restartPolicy` is 'Never'"))
    return errs


def _volume_devices(devices: Any, mounts: dict[str, str], vols: dict[str, dict[str, Any]], path: Path) -> Errs:
    errs: Errs = []
    paths: set[str] = set()
    names: set[str] = set()
    for i, d in enumerate(_l(devices)):
        d = _d(d)
        ip = path.index(i)
        name, dp = d.get("name") or "", d.get("devicePath") or ""
        matched = name in vols
        is_pvc = matched and (vols[name].get("persistentVolumeClaim") is not None
                              or vols[name].get("ephemeral") is not None)
        if not name:
            errs.append(fld.required(ip.child("name")))
        if name in names:
            errs.append(fld.invalid(ip.child("name"), name, "must be unique"))
        if matched and not is_pvc:
            errs.append(fld.invalid(ip.child("name"), name,
                                    "can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode"))
        if not matched:
            errs.append(fld.not_found(ip.child("name"), name))
        if not dp:
            errs.append(fld.required(ip.child("devicePath")))
        if dp in paths:
            errs.append(fld.invalid(ip.child("devicePath"), dp, "must be unique"))
        if dp and _no_backsteps(dp, ip):
            errs.append(fld.invalid(ip.child("devicePath"), dp, "can not contain backsteps ('..')"))
        else:
            paths.add(dp)
        if name in mounts:
            errs.append(fld.invalid(ip.child("name"), name, "must not already exist in volumeMounts"))
        if dp in mounts.values():
            errs.append(fld.invalid(ip.child("devicePath"), dp, "must not already exist as a path in volumeMounts"))
        if name:
            names.add(name)
    return errs


def _host_port_conflicts(containers: list[Any], path: Path) -> Errs:
    errs: Errs = []
    seen: set[str] = set()
    for ci, c in enumerate(containers):
        for pi, p in enumerate(_l(_d(c).get("ports"))):
            p = _d(p)
            hp = p.get("hostPort") or 0
            if not hp:
                continue
            s = f"{p.get('protocol') or ''}/{p.get('hostIP') or ''}/{hp}"
            if s in seen:
                errs.append(fld.duplicate(path.index(ci).child("ports").index(pi).child("hostPort"), s))
            else:
                seen.add(s)
    return errs


def _containers(containers: Any, vols: dict[str, dict[str, Any]], claim_names: set[str], grace: Any,
                path: Path, restart_policy: str) -> Errs:
    cs = _l(containers)
    if not cs:
        return [fld.required(path)]
    errs: Errs = []
    names: set[str] = set()
    for i, c in enumerate(cs):
        c = _d(c)
        p = path.index(i)
        errs += _container_common(c, vols, claim_names, p, restart_policy)
        name = c.get("name") or ""
        if name in names:
            errs.append(fld.duplicate(p.child("name"), name))
        else:
            names.add(name)
        if c.get("lifecycle") is not None:
            errs += _lifecycle(_d(c["lifecycle"]), grace, p.child("lifecycle"))
        errs += _probe(c.get("livenessProbe"), grace, p.child("livenessProbe"), "liveness")
        errs += _probe(c.get("readinessProbe"), grace, p.child("readinessProbe"), "readiness")
        errs += _probe(c.get("startupProbe"), grace, p.child("startupProbe"), "startup")
        errs += _container_restart_policy(c, p, init=False)
    errs += _host_port_conflicts(cs, path)
    return errs


_CONTAINER_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_MAX_RESTART_RULES = 20
_MAX_RESTART_RULE_EXIT_CODES = 255


def _container_restart_policy(c: dict[str, Any], path: Path, init: bool) -> Errs:
    """validateContainerRestartPolicy / validateContainerRestartPolicyRules with the
    ContainerRestartRules gate on (beta, on by default since 1.35)."""
    errs: Errs = []
    rp = c.get("restartPolicy")
    if rp is not None and rp not in _CONTAINER_RESTART_POLICIES:
        errs.append(fld.not_supported(path.child("restartPolicy"), rp, list(_CONTAINER_RESTART_POLICIES)))
    rules = _l(c.get("restartPolicyRules"))
    rpath = path.child("restartPolicyRules")
    if not rules:
        return errs
    if init and rp == "Always":
        errs.append(fld.forbidden(rpath, "restartPolicyRules are not allowed for init containers with restart "
                                         "policy Always"))
    if rp is None:
        errs.append(fld.required(path.child("restartPolicy"), "must specify restartPolicy when restart rules are used"))
    if len(rules) > _MAX_RESTART_RULES:
        errs.append(fld.too_many(rpath, len(rules), _MAX_RESTART_RULES))
    for i, rule in enumerate(rules):
        rule = _d(rule)
        ip = rpath.index(i)
        action = rule.get("action") or ""
        if action != "Restart":
            errs.append(fld.required(ip.child("action")) if not action else
                        fld.not_supported(ip.child("action"), action, ["Restart"]))
        codes = rule.get("exitCodes")
        if codes is None:
            errs.append(fld.required(ip.child("exitCodes"), "must be specified"))
            continue
        codes = _d(codes)
        op = codes.get("operator") or ""
        if op not in ("In", "NotIn"):
            errs.append(fld.required(ip.child("exitCodes", "operator")) if not op else
                        fld.not_supported(ip.child("exitCodes", "operator"), op, ["In", "NotIn"]))
        values = _l(codes.get("values"))
        vpath = ip.child("exitCodes", "values")
        if len(values) > _MAX_RESTART_RULE_EXIT_CODES:
            errs.append(fld.too_many(vpath, len(values), _MAX_RESTART_RULE_EXIT_CODES))
        seen: set[Any] = set()
        for j, v in enumerate(values):
            if v in seen:
                errs.append(fld.duplicate(vpath.index(j), v))
            seen.add(v)
    return errs


def _init_containers(inits: Any, regular: Any, vols: dict[str, dict[str, Any]], claim_names: set[str],
                     grace: Any, path: Path, restart_policy: str) -> Errs:
    errs: Errs = []
    names = {_d(c).get("name") or "" for c in _l(regular)}
    for i, c in enumerate(_l(inits)):
        c = _d(c)
        p = path.index(i)
        errs += _container_common(c, vols, claim_names, p, restart_policy)
        always = c.get("restartPolicy") == "Always"
        errs += _container_restart_policy(c, p, init=True)
        name = c.get("name") or ""
        if name in names:
            errs.append(fld.duplicate(p.child("name"), name))
        elif name:
            names.add(name)
        errs += _host_port_conflicts([c], path)
        if always:
            if c.get("lifecycle") is not None:
                errs += _lifecycle(_d(c["lifecycle"]), grace, p.child("lifecycle"))
            errs += _probe(c.get("livenessProbe"), grace, p.child("livenessProbe"), "liveness")
            errs += _probe(c.get("readinessProbe"), grace, p.child("readinessProbe"), "readiness")
            errs += _probe(c.get("startupProbe"), grace, p.child("startupProbe"), "startup")
        else:
            for k in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe"):
                if c.get(k) is not None:
                    errs.append(fld.forbidden(p.child(k), "may not be set for init containers without restartPolicy=Always"))
    return errs


# ----------------------------------------------------------------------------- pod spec
_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def validate_tolerations(tols: Any, path: Path) -> Errs:
    errs: Errs = []
    for i, t in enumerate(_l(tols)):
        t = _d(t)
        ip = path.index(i)
        key = t.get("key") or ""
        op = t.get("operator") or ""
        if key:
            errs += [fld.invalid(ip.child("key"), key, m) for m in meta.is_qualified_name(key)]
        if not key and op != "Exists":
            errs.append(fld.invalid(ip.child("operator"), op,
                                    'operator must be Exists when `key` is empty, which means "match all values '
                                    'and all keys"'))
        if t.get("tolerationSeconds") is not None and t.get("effect") != "NoExecute":
            errs.append(fld.invalid(ip.child("effect"), t.get("effect") or "",
                                    "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        val = t.get("value") or ""
        if op in ("Equal", ""):
            msgs = meta.is_valid_label_value(val)
            if msgs:
                errs.append(fld.invalid(ip.child("operator"), val, ";".join(msgs)))
        elif op == "Exists":
            if val:
                errs.append(fld.invalid(ip.child("operator"), val, "value must be empty when `operator` is 'Exists'"))
        else:
            errs.append(fld.not_supported(ip.child("operator"), op, ["Equal", "Exists"]))
        eff = t.get("effect") or ""
        if eff and eff not in _TAINT_EFFECTS:
            errs.append(fld.not_supported(ip.child("effect"), eff, list(_TAINT_EFFECTS)))
    return errs


def _pod_security_context(sc: Any, path: Path) -> Errs:
    if not isinstance(sc, dict):
        return []
    errs: Errs = []
    for k in ("fsGroup", "runAsUser", "runAsGroup"):
        v = sc.get(k)
        if isinstance(v, int) and not (0 <= v <= INT32_MAX):
            errs.append(fld.invalid(path.child(k), v, inclusive_range(0, INT32_MAX)))
    for i, g in enumerate(_l(sc.get("supplementalGroups"))):
        if isinstance(g, int) and not (0 <= g <= INT32_MAX):
            errs.append(fld.invalid(path.child("supplementalGroups").index(i), g, inclusive_range(0, INT32_MAX)))
    if sc.get("shareProcessNamespace") and sc.get("hostPID"):
        errs.append(fld.invalid(path.child("shareProcessNamespace"), True,
                                "ShareProcessNamespace and HostPID cannot both be enabled"))
    fgp = sc.get("fsGroupChangePolicy")
    if fgp is not None and fgp not in ("Always", "OnRootMismatch"):
        errs.append(fld.not_supported(path.child("fsGroupChangePolicy"), fgp, ["Always", "OnRootMismatch"]))
    errs += _seccomp(sc.get("seccompProfile"), path.child("seccompProfile"))
    errs += _apparmor(sc.get("appArmorProfile"), path.child("appArmorProfile"))
    names: set[str] = set()
    for i, s in enumerate(_l(sc.get("sysctls"))):
        n = _d(s).get("name") or ""
        np = path.child("sysctls").index(i).child("name")
        if not n:
            errs.append(fld.required(np))
        elif not (len(n) <= 253 and re.match(r"^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$", n)):
            errs.append(fld.invalid(np, n, "must have at most 253 characters and match regex "
                                           "^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$"))
        elif n in names:
            errs.append(fld.duplicate(np, n))
        names.add(n)
    return errs


def _dns_config(cfg: Any, policy: str, path: Path) -> Errs:
    errs: Errs = []
    if policy == "None":
        if cfg is None:
            return [fld.required(path, "must provide `dnsConfig` when `dnsPolicy` is None")]
        if not _l(_d(cfg).get("nameservers")):
            return [fld.required(path.child("nameservers"),
                                 "must provide at least one DNS nameserver when `dnsPolicy` is None")]
    if isinstance(cfg, dict):
        ns = _l(cfg.get("nameservers"))
        if len(ns) > 3:
            errs.append(fld.invalid(path.child("nameservers"), ns, "must not have more than 3 nameservers"))
        for i, n in enumerate(ns):
            errs += _is_valid_ip(path.child("nameservers").index(i), str(n))
        searches = _l(cfg.get("searches"))
        if len(searches) > 32:
            errs.append(fld.invalid(path.child("searches"), searches, "must not have more than 32 search paths"))
        if len(" ".join(str(s) for s in searches)) > 2048:
            errs.append(fld.invalid(path.child("searches"), searches,
                                    "must not have more than 2048 characters (including spaces) in the search list"))
        for i, s in enumerate(searches):
            s = str(s)
            if s != ".":
                s = s.removesuffix(".")
                errs += [fld.invalid(path.child("searches").index(i), s, m)
                         for m in meta.is_dns1123_subdomain(s.replace("_", "a"))]
        for i, o in enumerate(_l(cfg.get("options"))):
            if not _d(o).get("name"):
                errs.append(fld.required(path.child("options").index(i), "must not be empty"))
    return errs


def validate_pod_spec(spec: dict[str, Any], pod_name: str, path: Path) -> Errs:
    errs: Errs = []
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is None:
        errs.append(fld.required(path.child("terminationGracePeriodSeconds")))
    restart = spec.get("restartPolicy") or ""
    vols, verrs = validate_volumes(spec.get("volumes"), pod_name, path.child("volumes"))
    errs += verrs
    claim_names = {str(_d(c).get("name")) for c in _l(spec.get("resourceClaims")) if _d(c).get("name")}
    seen_claims: set[str] = set()
    for i, c in enumerate(_l(spec.get("resourceClaims"))):
        c = _d(c)
        cp = path.child("resourceClaims").index(i)
        n = c.get("name") or ""
        if not n:
            errs.append(fld.required(cp.child("name")))
        elif n in seen_claims:
            errs.append(fld.duplicate(cp.child("name"), n))
        else:
            errs += _dns_label(n, cp.child("name"))
            seen_claims.add(n)
    errs += _containers(spec.get("containers"), vols, claim_names, grace, path.child("containers"), restart)
    errs += _init_containers(spec.get("initContainers"), spec.get("containers"), vols, claim_names, grace,
                             path.child("initContainers"), restart)
    errs += _ephemeral_containers(spec, vols, claim_names, path.child("ephemeralContainers"), restart)
    if spec.get("hostNetwork"):
        for i, c in enumerate(_l(spec.get("containers"))):
            for j, p in enumerate(_l(_d(c).get("ports"))):
                p = _d(p)
                if (p.get("hostPort") or 0) != (p.get("containerPort") or 0):
                    errs.append(fld.invalid(path.child("containers").index(i).child("ports").index(j).child("hostPort"),
                                            p.get("hostPort") or 0, "must match `containerPort` when `hostNetwork` is true"))
    if restart not in _RESTART_POLICIES:
        errs.append(fld.required(path.child("restartPolicy")) if not restart else
                    fld.not_supported(path.child("restartPolicy"), restart, list(_RESTART_POLICIES)))
    dns = spec.get("dnsPolicy") or ""
    if dns not in _DNS_POLICIES:
        errs.append(fld.required(path.child("dnsPolicy")) if not dns else
                    fld.not_supported(path.child("dnsPolicy"), dns, list(_DNS_POLICIES)))
    errs += validate_labels(spec.get("nodeSelector"), path.child("nodeSelector"))
    errs += _pod_security_context(spec.get("securityContext"), path.child("securityContext"))
    for i, ips in enumerate(_l(spec.get("imagePullSecrets"))):
        if set(_d(ips)) - {"name"}:
            errs.append(fld.invalid(path.child("imagePullSecrets").index(i), _Raw(json.dumps(ips)), "only name may be set"))
    errs += _dns_config(spec.get("dnsConfig"), dns, path.child("dnsConfig"))
    for i, g in enumerate(_l(spec.get("readinessGates"))):
        errs += _qualified_name(_d(g).get("conditionType") or "", path.child("readinessGates").index(i).child("conditionType"))
    seen: set[str] = set()
    for i, g in enumerate(_l(spec.get("schedulingGates"))):
        n = _d(g).get("name") or ""
        errs += _qualified_name(n, path.child("schedulingGates").index(i))
        if n in seen:
            errs.append(fld.duplicate(path.child("schedulingGates").index(i), n))
        seen.add(n)
    if spec.get("hostUsers") is False:
        for k, label in (("hostNetwork", "hostNetwork"), ("hostPID", "HostPID"), ("hostIPC", "HostIPC")):
            if spec.get(k):
                errs.append(fld.forbidden(path.child(label), "when `pod.Spec.HostUsers` is false"))
    else:  # ValidateSecurityContext with hostUsers: an unmasked /proc only inside a user namespace
        for key in ("initContainers", "containers", "ephemeralContainers"):
            for i, c in enumerate(_l(spec.get(key))):
                if _d(_d(c).get("securityContext")).get("procMount") == "Unmasked":
                    errs.append(fld.invalid(path.child(key).index(i).child("securityContext").child("procMount"),
                                            "Unmasked", "`hostUsers` must be false to use `Unmasked`"))
    san = spec.get("serviceAccountName") or ""
    if san:
        errs += [fld.invalid(path.child("serviceAccountName"), san, m) for m in meta.name_is_dns_subdomain(san, False)]
    node = spec.get("nodeName") or ""
    if node:
        errs += [fld.invalid(path.child("nodeName"), node, m) for m in meta.name_is_dns_subdomain(node, False)]
    ads = spec.get("activeDeadlineSeconds")
    if isinstance(ads, int) and (ads < 1 or ads > INT32_MAX):
        errs.append(fld.invalid(path.child("activeDeadlineSeconds"), ads, inclusive_range(1, INT32_MAX)))
    if spec.get("hostname"):
        errs += _dns_label(spec["hostname"], path.child("hostname"))
    if spec.get("subdomain"):
        errs += _dns_label(spec["subdomain"], path.child("subdomain"))
    errs += validate_stop_signals(spec, path)
    override = spec.get("hostnameOverride")
    if isinstance(override, str):  # HostnameOverride (beta, on since 1.35): a subdomain the kernel can hold
        hp = path.child("hostnameOverride")
        errs += _dns_subdomain(override, hp)
        if len(override) > HOSTNAME_OVERRIDE_MAX:
            errs.append(fld.too_long(hp, HOSTNAME_OVERRIDE_MAX))
        if spec.get("setHostnameAsFQDN") is True:
            errs.append(fld.forbidden(hp, "may not be specified when setHostnameAsFQDN is true"))
        if spec.get("hostNetwork") is True:
            errs.append(fld.forbidden(hp, "may not be specified when hostNetwork is true"))
    if _l(spec.get("tolerations")):
        errs += validate_tolerations(spec["tolerations"], path.child("tolerations"))
    for i, ha in enumerate(_l(spec.get("hostAliases"))):
        ha = _d(ha)
        errs += _is_valid_ip(path.child("hostAliases").index(i).child("ip"), ha.get("ip") or "")
        for j, h in enumerate(_l(ha.get("hostnames"))):
            errs += _dns_subdomain(str(h), path.child("hostAliases").index(i).child("hostnames").index(j))
    pcn = spec.get("priorityClassName") or ""
    if pcn:
        errs += [fld.invalid(path.child("priorityClassName"), pcn, m) for m in meta.name_is_dns_subdomain(pcn, False)]
    rcn = spec.get("runtimeClassName")
    if rcn is not None:
        errs += [fld.invalid(path.child("runtimeClassName"), rcn, m) for m in meta.name_is_dns_subdomain(rcn, False)]
    pp = spec.get("preemptionPolicy")
    if pp is not None and pp not in ("PreemptLowerPriority", "Never"):
        errs.append(fld.required(path.child("preemptionPolicy")) if not pp else
                    fld.not_supported(path.child("preemptionPolicy"), pp, ["PreemptLowerPriority", "Never"]))
    if spec.get("overhead") is not None:
        errs += validate_resource_requirements({"limits": spec["overhead"]}, set(), path.child("overhead"))
    os_ = spec.get("os")
    if isinstance(os_, dict):
        name = os_.get("name") or ""
        if not name:
            errs.append(fld.required(path.child("os", "name")))
        elif name not in ("linux", "windows"):
            errs.append(fld.not_supported(path.child("os", "name"), name, ["linux", "windows"]))
    return errs


_ALLOWED_EPHEMERAL = {"name", "image", "command", "args", "workingDir", "envFrom", "env", "volumeMounts",
                      "volumeDevices", "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy",
                      "securityContext", "stdin", "stdinOnce", "tty", "targetContainerName"}


def _ephemeral_containers(spec: dict[str, Any], vols: dict[str, dict[str, Any]], claim_names: set[str],
                          path: Path, restart_policy: str) -> Errs:
    ecs = _l(spec.get("ephemeralContainers"))
    if not ecs:
        return []
    errs: Errs = []
    other = {_d(c).get("name") for c in _l(spec.get("containers")) + _l(spec.get("initContainers"))}
    all_names = set(other)
    for i, ec in enumerate(ecs):
        ec = _d(ec)
        p = path.index(i)
        errs += _container_common(ec, vols, claim_names, p, restart_policy)
        img = ec.get("image") or ""
        if len(img) != len(img.strip()):
            errs.append(fld.invalid(p.child("image"), img, "must not have leading or trailing whitespace"))
        if ec.get("name") in all_names:
            errs.append(fld.duplicate(p.child("name"), ec.get("name") or ""))
        else:
            all_names.add(ec.get("name"))
        t = ec.get("targetContainerName")
        if t and t not in other:
            errs.append(fld.not_found(p.child("targetContainerName"), t))
        for k, v in ec.items():
            if k not in _ALLOWED_EPHEMERAL and v not in (None, {}, [], "", 0, False):
                errs.append(fld.forbidden(p.child(k), "cannot be set for an Ephemeral Container"))
        for j, vm in enumerate(_l(ec.get("volumeMounts"))):
            for k in ("subPath", "subPathExpr"):
                if _d(vm).get(k):
                    errs.append(fld.forbidden(p.child("volumeMounts").index(j).child(k),
                                              "cannot be set for an Ephemeral Container"))
    return errs


def _pod_metadata_and_spec(pod: dict[str, Any]) -> Errs:
    spec_path = Path("spec")
    md = _d(pod.get("metadata"))
    spec = _d(pod.get("spec"))
    errs: Errs = []
    ann = _d(md.get("annotations"))
    if "kubernetes.io/config.mirror" in ann and not spec.get("nodeName"):
        errs.append(fld.invalid(Path("metadata", "annotations").key("kubernetes.io/config.mirror"),
                                ann["kubernetes.io/config.mirror"], "must set spec.nodeName if mirror pod annotation is set"))
    cost = ann.get("controller.kubernetes.io/pod-deletion-cost")
    if cost is not None and not _is_int32(str(cost)):
        errs.append(fld.invalid(Path("metadata", "annotations").key("controller.kubernetes.io/pod-deletion-cost"),
                                cost, "must be a 32bit integer"))
    errs += validate_pod_spec(spec, md.get("name") or "", spec_path)
    if not spec.get("serviceAccountName"):
        for vi, v in enumerate(_l(spec.get("volumes"))):
            for si, s in enumerate(_l(_d(_d(v).get("projected")).get("sources"))):
                if _d(s).get("serviceAccountToken") is not None:
                    errs.append(fld.forbidden(spec_path.child("volumes").index(vi).child("projected", "sources").index(si)
                                              .child("serviceAccountToken"),
                                              "must not be specified when serviceAccountName is not set"))
    for key in ("containers", "initContainers"):
        for i, c in enumerate(_l(spec.get(key))):
            img = _d(c).get("image") or ""
            if len(img) != len(img.strip()):
                errs.append(fld.invalid(spec_path.child(key).index(i).child("image"), img,
                                        "must not have leading or trailing whitespace"))
    return errs


def _is_int32(s: str) -> bool:
    if not re.match(r"^[+-]?[0-9]+$", s):
        return False
    return -(2**31) <= int(s) < 2**31


def validate_pod_create(pod: dict[str, Any]) -> Errs:
    errs = _pod_metadata_and_spec(pod)
    spec = _d(pod.get("spec"))
    if _l(spec.get("ephemeralContainers")):
        errs.append(fld.forbidden(Path("spec", "ephemeralContainers"), "cannot be set on create"))
    if spec.get("nodeName") and _l(spec.get("schedulingGates")):
        errs.append(fld.forbidden(Path("spec", "nodeName"), "cannot be set until all schedulingGates have been cleared"))
    return errs


def validate_pod_ephemeral_containers_update(new: dict[str, Any], old: dict[str, Any]) -> Errs:
    """ValidatePodEphemeralContainersUpdate: the pod is valid with its new ephemeral
    containers, and existing ones are neither removed nor changed (order may change)."""
    errs = _pod_metadata_and_spec(new)
    if "kubernetes.io/config.mirror" in (_d(_d(old.get("metadata")).get("annotations"))):
        return [fld.forbidden(Path(""), "static pods do not support ephemeral containers")]
    spec_path = Path("spec", "ephemeralContainers")
    by_name = {_d(c).get("name"): c for c in _l(_d(new.get("spec")).get("ephemeralContainers"))}
    for oc in _l(_d(old.get("spec")).get("ephemeralContainers")):
        name = _d(oc).get("name")
        nc = by_name.get(name)
        if nc is None:
            errs.append(fld.forbidden(spec_path, f'existing ephemeral containers "{name}" may not be removed\n'))
        elif _norm(nc) != _norm(oc):
            errs.append(fld.forbidden(spec_path, f'existing ephemeral containers "{name}" may not be changed\n'))
    return errs


# ----------------------------------------------------------------------------- update
def _container_updates(new: list[Any], old: list[Any], path: Path) -> tuple[Errs, bool]:
    if len(new) != len(old):
        return [fld.forbidden(path, "pod updates may not add or remove containers")], True
    errs: Errs = []
    for i, c in enumerate(new):
        img = _d(c).get("image") or ""
        if not img:
            errs.append(fld.required(path.index(i).child("image")))
        if len(img.strip()) != len(img):
            errs.append(fld.invalid(path.index(i).child("image"), img, "must not have leading or trailing whitespace"))
    return errs, False


def _only_added_tolerations(new: list[Any], old: list[Any], path: Path) -> Errs:
    for o in old:
        o = _d(o)
        found = False
        for n in new:
            n = _d(n)
            oc = dict(o)
            oc.pop("tolerationSeconds", None)
            nc = dict(n)
            nc.pop("tolerationSeconds", None)
            if _norm(oc) == _norm(nc):
                found = True
                break
        if not found:
            return [fld.forbidden(path, "existing toleration can not be modified except its tolerationSeconds")]
    return validate_tolerations(new, path)


def _norm(v: Any) -> Any:
    """Semantic equality of JSON values: drop empty/zero values (omitempty)."""
    if isinstance(v, dict):
        out = {k: _norm(x) for k, x in v.items()}
        return {k: x for k, x in out.items() if x not in (None, "", 0, False, [], {})}
    if isinstance(v, list):
        return [_norm(x) for x in v]
    return v


_GO_FIELD = {"imagePullSecrets": "ImagePullSecrets", "securityContext": "SecurityContext", "os": "OS",
             "dnsPolicy": "DNSPolicy", "dnsConfig": "DNSConfig", "hostIPC": "HostIPC", "hostPID": "HostPID"}


def _spec_diff(old: dict[str, Any], new: dict[str, Any], type_name: str = "core.PodSpec") -> str:
    """A go-cmp-like rendering of the changed top-level fields of the spec."""
    lines = [f"  {type_name}{{"]
    same = 0
    for k in list(dict.fromkeys(list(old) + list(new))):
        ov, nv = _norm(old.get(k)), _norm(new.get(k))
        if ov == nv:
            same += 1
            continue
        gname = _GO_FIELD.get(k, k[:1].upper() + k[1:])
        if ov not in (None, "", 0, False, [], {}):
            lines.append(f"- \t{gname}: {json.dumps(old.get(k), separators=(',', ':'))},")
        if nv not in (None, "", 0, False, [], {}):
            lines.append(f"+ \t{gname}: {json.dumps(new.get(k), separators=(',', ':'))},")
    if same:
        lines.append(f"  \t... // {same} identical fields")
    lines.append("  }")
    return "\n".join(lines) + "\n"


def validate_pod_update(new: dict[str, Any], old: dict[str, Any]) -> Errs:
    errs = _pod_metadata_and_spec(new)
    ann_path = Path("metadata", "annotations")
    nann, oann = _d(_d(new.get("metadata")).get("annotations")), _d(_d(old.get("metadata")).get("annotations"))
    mirror = "kubernetes.io/config.mirror"
    if mirror in oann and nann.get(mirror) != oann[mirror]:
        errs.append(fld.forbidden(ann_path.key(mirror), "may not remove or update mirror pod annotation"))
    if mirror in nann and mirror not in oann:
        errs.append(fld.forbidden(ann_path.key(mirror), "may not add mirror pod annotation"))
    spec_path = Path("spec")
    ns, os_ = _d(new.get("spec")), _d(old.get("spec"))
    for key in ("containers", "initContainers"):
        cerrs, stop = _container_updates(_l(ns.get(key)), _l(os_.get(key)), spec_path.child(key))
        errs += cerrs
        if stop:
            return errs
    nads, oads = ns.get("activeDeadlineSeconds"), os_.get("activeDeadlineSeconds")
    if nads is not None:
        if not isinstance(nads, int) or nads < 0 or nads > INT32_MAX:
            errs.append(fld.invalid(spec_path.child("activeDeadlineSeconds"), nads, inclusive_range(0, INT32_MAX)))
            return errs
        if isinstance(oads, int) and oads < nads:
            errs.append(fld.invalid(spec_path.child("activeDeadlineSeconds"), nads,
                                    "must be less than or equal to previous value"))
            return errs
    elif oads is not None:
        errs.append(fld.invalid(spec_path.child("activeDeadlineSeconds"), "null",
                                "must not update from a positive integer to nil value"))
    errs += _only_added_tolerations(_l(ns.get("tolerations")), _l(os_.get("tolerations")), spec_path.child("tolerations"))
    ngates = _l(ns.get("schedulingGates"))
    ogates = {_d(g).get("name") for g in _l(os_.get("schedulingGates"))}
    for i, g in enumerate(ngates):
        n = _d(g).get("name")
        if n not in ogates:
            errs.append(fld.forbidden(spec_path.child("schedulingGates").index(i).child("name"),
                                      f"only deletion is allowed, but found new scheduling gate '{n}'"))
    if _norm(ns) == _norm(os_):
        return errs
    munged = dict(ns)
    for key in ("containers", "initContainers"):
        if key in munged:
            munged[key] = [dict(_d(c), image=_d(oc).get("image")) for c, oc in zip(_l(ns[key]), _l(os_.get(key)),
                                                                                  strict=False)]
    for key in ("activeDeadlineSeconds", "schedulingGates", "tolerations"):
        if key in os_:
            munged[key] = os_[key]
        else:
            munged.pop(key, None)
    otg = os_.get("terminationGracePeriodSeconds")
    if isinstance(otg, int) and otg < 0 and munged.get("terminationGracePeriodSeconds") == 1:
        munged["terminationGracePeriodSeconds"] = otg
    if _l(os_.get("schedulingGates")):
        # gated pods: additions to nodeSelector and nodeAffinity may happen (checked loosely here)
        onsel, nnsel = _d(os_.get("nodeSelector")), _d(munged.get("nodeSelector"))
        if all(nnsel.get(k) == v for k, v in onsel.items()):
            if "nodeSelector" in os_:
                munged["nodeSelector"] = os_["nodeSelector"]
            else:
                munged.pop("nodeSelector", None)
    if _norm(munged) != _norm(os_):
        detail = ("pod updates may not change fields other than " + ",".join(UPDATABLE_POD_SPEC_FIELDS) + "\n"
                  + _spec_diff(os_, munged))
        errs.append(fld.forbidden(spec_path, detail))
    return errs


# ----------------------------------------------------------------------------- status
_SYSTEM_CONDITIONS = ("PodScheduled", "Ready", "Initialized")


def _state_transitions(new: list[Any], old: list[Any], path: Path, restart_policy: str,
                       restartable: set[str] | None = None) -> Errs:
    errs: Errs = []
    if restart_policy == "Always":
        return errs
    for i, o in enumerate(old):
        o = _d(o)
        term = _d(o.get("state")).get("terminated")
        if not isinstance(term, dict):
            continue
        if (term.get("exitCode") or 0) != 0 and restart_policy == "OnFailure":
            continue
        if restartable and o.get("name") in restartable:
            continue
        for n in new:
            n = _d(n)
            if n.get("name") == o.get("name") and not isinstance(_d(n.get("state")).get("terminated"), dict):
                errs.append(fld.forbidden(path.index(i).child("state"), "may not be transitioned to non-terminated state"))
    return errs


def validate_pod_status_update(new: dict[str, Any], old: dict[str, Any]) -> Errs:
    errs: Errs = []
    md_path = Path("metadata")
    nst, ost = _d(new.get("status")), _d(old.get("status"))
    ns, os_ = _d(new.get("spec")), _d(old.get("spec"))
    for i, c in enumerate(_l(nst.get("conditions"))):
        t = _d(c).get("type") or ""
        if t in _SYSTEM_CONDITIONS:
            continue
        errs += _qualified_name(t, md_path.child("conditions").index(i).child("Type"))
    sp = Path("status")
    if (ns.get("nodeName") or "") != (os_.get("nodeName") or ""):
        errs.append(fld.forbidden(sp.child("nodeName"), "may not be changed directly"))
    nnn = nst.get("nominatedNodeName") or ""
    if nnn and nnn != (ost.get("nominatedNodeName") or ""):
        errs += [fld.invalid(sp.child("nominatedNodeName"), nnn, m) for m in meta.name_is_dns_subdomain(nnn, False)]
    if (nst.get("qosClass") or "") != (ost.get("qosClass") or ""):
        errs.append(fld.invalid(sp.child("qosClass"), nst.get("qosClass") or "", FIELD_IMMUTABLE))
    rp = os_.get("restartPolicy") or ""
    errs += _state_transitions(_l(nst.get("containerStatuses")), _l(ost.get("containerStatuses")),
                               sp.child("containerStatuses"), rp)
    restartable = {_d(c).get("name") for c in _l(os_.get("initContainers")) if _d(c).get("restartPolicy") == "Always"}
    errs += _state_transitions(_l(nst.get("initContainerStatuses")), _l(ost.get("initContainerStatuses")),
                               sp.child("initContainerStatuses"), rp, restartable)  # type: ignore[arg-type]
    errs += _state_transitions(_l(nst.get("ephemeralContainerStatuses")), _l(ost.get("ephemeralContainerStatuses")),
                               sp.child("ephemeralContainerStatuses"), "Never")
    for key in ("podIPs", "hostIPs"):
        ips = _l(nst.get(key))
        p = sp.child(key)
        if key == "hostIPs" and ips and (nst.get("hostIP") or "") != (_d(ips[0]).get("ip") or ""):
            errs.append(fld.invalid(p.index(0).child("ip"), _d(ips[0]).get("ip") or "", "must be equal to `hostIP`"))
        for i, ip in enumerate(ips):
            errs += _is_valid_ip(p.index(i), _d(ip).get("ip") or "")
        if len(ips) > 1:
            vals = [_d(ip).get("ip") or "" for ip in ips]
            fams = {":" in v for v in vals}
            if len(fams) != 2 or len(vals) > 2:
                errs.append(fld.invalid(p, _Raw(json.dumps(ips)), "may specify no more than one IP for each IP family"))
            seen: set[str] = set()
            for i, v in enumerate(vals):
                if v in seen:
                    errs.append(fld.duplicate(p.index(i), _Raw(json.dumps(ips[i]))))
                seen.add(v)
    return errs


def validate_binding(binding: dict[str, Any]) -> Errs:
    errs: Errs = []
    target = _d(binding.get("target"))
    kind = target.get("kind") or ""
    if kind and kind != "Node":
        errs.append(fld.not_supported(Path("target", "kind"), kind, ["Node", "<empty>"]))
    if not target.get("name"):
        errs.append(fld.required(Path("target", "name")))
    return errs


# ----------------------------------------------------------------------------- resize
def _resources_removed(new: Any, old: Any) -> bool:
    new, old = _d(new), _d(old)
    return len(old) > len(new) or any(k not in new for k in old)


def _container_resize(new: dict[str, Any], old: dict[str, Any], path: Path) -> Errs:
    """validateContainerResize: requests and limits may change, not be removed (memory limit
    decreases are allowed since 1.34: the kubelet checks usage before lowering them)."""
    errs: Errs = []
    nr, orr = _d(new.get("resources")), _d(old.get("resources"))
    if _resources_removed(nr.get("requests"), orr.get("requests")):
        errs.append(fld.forbidden(path.child("requests"), "resource requests cannot be removed"))
    if _resources_removed(nr.get("limits"), orr.get("limits")):
        errs.append(fld.forbidden(path.child("limits"), "resource limits cannot be removed"))
    return errs


def _without_cpu_memory(c: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """dropCPUMemoryResourcesFromContainer: the container with old's cpu and memory values."""
    c = dict(c)
    res = _d(c.get("resources"))
    ores = _d(old.get("resources"))
    out: dict[str, Any] = {k: v for k, v in res.items() if k not in ("requests", "limits")}
    for key in ("limits", "requests"):
        if ores.get(key) is None:
            continue
        rl = {k: v for k, v in _d(res.get(key)).items() if k not in ("cpu", "memory")}
        for name in ("cpu", "memory"):
            if name in _d(ores.get(key)):
                rl[name] = ores[key][name]
        out[key] = rl
    c["resources"] = out
    return c


def _restartable(c: Any) -> bool:
    return _d(c).get("restartPolicy") == "Always"


def validate_pod_resize(new: dict[str, Any], old: dict[str, Any], old_qos: str, new_qos: str) -> Errs:
    """ValidatePodResize: the new pod is valid; only the cpu and memory of app and sidecar
    containers changed; the QoS class stays; static, Windows and pod-level-resources pods are
    refused. ``old_qos`` is the stored status.qosClass (GetPodQOS), ``new_qos`` the new spec's."""
    errs = _pod_metadata_and_spec(new)
    nspec, ospec = _d(new.get("spec")), _d(old.get("spec"))

    def pod_level(spec: dict[str, Any]) -> bool:
        r = _d(spec.get("resources"))
        return bool(_d(r.get("requests")) or _d(r.get("limits")))

    if pod_level(ospec) or pod_level(nspec):
        return [fld.forbidden(Path(""), "pods with pod-level resources cannot be resized")]
    if "kubernetes.io/config.mirror" in _d(_d(old.get("metadata")).get("annotations")):
        return [fld.forbidden(Path(""), "static pods cannot be resized")]
    if _d(ospec.get("os")).get("name") == "windows":
        return [fld.forbidden(Path(""), "windows pods cannot be resized")]
    spec_path = Path("spec")
    if old_qos != new_qos:
        errs.append(fld.invalid(spec_path, old_qos, "Pod QOS Class may not change as a result of resizing"))
    if not _resize_supported(old):
        errs.append(fld.forbidden(spec_path, "Pod running on node without support for resize"))
    oinits, ninits = _l(ospec.get("initContainers")), _l(nspec.get("initContainers"))
    ocs, ncs = _l(ospec.get("containers")), _l(nspec.get("containers"))
    for i, oc in enumerate(oinits):
        if _restartable(oc) and i < len(ninits):
            errs += _container_resize(_d(ninits[i]), _d(oc), spec_path.child("initContainers").index(i)
                                      .child("resources"))
    for i, oc in enumerate(ocs):
        if i < len(ncs):
            errs += _container_resize(_d(ncs[i]), _d(oc), spec_path.child("containers").index(i).child("resources"))
    munged = dict(nspec)
    mc = []
    for i, c in enumerate(ncs):
        c = _d(c)
        if i < len(ocs):
            c = _without_cpu_memory(c, _d(ocs[i]))
            if _norm(c) != _norm(ocs[i]):
                errs.append(fld.forbidden(spec_path, "only cpu and memory resources are mutable"))
        mc.append(c)
    munged["containers"] = mc
    if "initContainers" in nspec:
        mi = []
        for i, c in enumerate(ninits):
            c = _d(c)
            if i < len(oinits):
                if _restartable(c):
                    c = _without_cpu_memory(c, _d(oinits[i]))
                    if _norm(c) != _norm(oinits[i]):
                        errs.append(fld.forbidden(spec_path,
                                                  "only cpu and memory resources for sidecar containers are mutable"))
                elif _norm(c) != _norm(oinits[i]):
                    errs.append(fld.forbidden(spec_path, "resources for non-sidecar init containers are immutable"))
            mi.append(c)
        munged["initContainers"] = mi
    if errs:
        return errs
    if _norm(munged) != _norm(ospec):
        errs.append(fld.forbidden(spec_path, "only cpu and memory resources are mutable"))
    return errs


def _resize_supported(pod: dict[str, Any]) -> bool:
    """isPodResizeRequestSupported: a running container without status.resources means a
    node that cannot resize."""
    for cs in _l(_d(pod.get("status")).get("containerStatuses")):
        cs = _d(cs)
        if _d(cs.get("state")).get("running") is not None:
            return cs.get("resources") is not None
    return True
