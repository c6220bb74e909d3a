"""persistentVolumeClaim volumes: the claim → its bound PersistentVolume → that volume's source
on this node (the kubelet's volumemanager desired-state populator, getPVCExtractPV, and the
hostPath/local plugins' SetUp).

A volume of the built-in local-path provisioner (``pv.kubernetes.io/provisioned-by:
rancher.io/local-path``) is a directory under this node's ``<data-dir>/storage``, which the
agent publishes in the Node annotation ``kubelite.io/local-path-dir``: the directory is made
here, on first mount, mode 0777 as local-path-provisioner's helper makes it. Other hostPath
volumes get the hostPath type checks; ``local`` volumes must exist. A source this node cannot
mount is refused with the reason (a FailedMount event), never replaced by something else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kubelite.kinds.storage import LOCAL_PATH_DIR_ANNOTATION, LOCAL_PATH_PROVISIONER, PV_SOURCES

Obj = dict[str, Any]
STORAGE_DIR = "storage"
__all__ = ["LOCAL_PATH_DIR_ANNOTATION", "claim_read_only", "claim_volume_path", "storage_dir"]


def _d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def claim_read_only(pod: Obj, volume_name: str) -> bool:
    """``persistentVolumeClaim.readOnly``: every mount of that volume is read-only."""
    for v in _d(pod.get("spec")).get("volumes") or []:
        if _d(v).get("name") == volume_name:
            return bool(_d(_d(v).get("persistentVolumeClaim")).get("readOnly"))
    return False


def storage_dir(data_dir: Path) -> Path:
    return Path(data_dir) / STORAGE_DIR


def _local_path_dir(path: str, root: Path) -> None:
    p = Path(path)
    if p.resolve().parent != root.resolve():
        raise OSError(f"{path} is not a directory of {root}")
    if not p.is_dir():
        p.mkdir(mode=0o777, parents=True, exist_ok=True)
        os.chmod(p, 0o777)


async def claim_volume_path(volume: Obj, namespace: str, fetch: Any, data_dir: Path, hostpath_check: Any,
                            mount_nfs: Any = None) -> str:
    """The host path to bind-mount for a pod volume ``{persistentVolumeClaim: {claimName}}``.
    ``fetch(plural, namespace, name)`` reads the claim and the volume; ``hostpath_check(path,
    type)`` is the hostPath plugin's type check; ``await mount_nfs(pv name, nfs source,
    read only)`` mounts an NFS volume's source (None: this agent has no NFS support, such a
    volume is refused). Raises ``OSError``/``ValueError`` with the kubelet's wording of what is
    wrong."""
    src = _d(volume.get("persistentVolumeClaim"))
    claim_name = str(src.get("claimName") or "")
    key = f"{namespace}/{claim_name}"
    claim = await fetch("persistentvolumeclaims", namespace, claim_name)
    if claim is None:
        raise ValueError(f"error processing PVC {key}: failed to fetch PVC from API server: "
                         f'persistentvolumeclaims "{claim_name}" not found')
    if _d(claim.get("metadata")).get("deletionTimestamp"):
        raise ValueError(f"error processing PVC {key}: can't start pod because PVC {key} is being deleted")
    pv_name = str(_d(claim.get("spec")).get("volumeName") or "")
    if _d(claim.get("status")).get("phase") != "Bound" or not pv_name:
        raise ValueError(f"error processing PVC {key}: PVC is not bound")
    pv = await fetch("persistentvolumes", "", pv_name)
    if pv is None:
        raise ValueError(f"error processing PVC {key}: failed to fetch PV {pv_name} from API server: "
                         f'persistentvolumes "{pv_name}" not found')
    spec = _d(pv.get("spec"))
    if _d(spec.get("claimRef")).get("uid") != _d(claim.get("metadata")).get("uid"):
        raise ValueError(f"error processing PVC {key}: failed to fetch PV {pv_name} from API server: "
                         f"pv.Spec.ClaimRef.UID does not match claim UID")
    if (spec.get("volumeMode") or "Filesystem") != "Filesystem":
        raise ValueError(f"error processing PVC {key}: volume {pv_name} has volumeMode {spec.get('volumeMode')}, "
                         f"which this node does not support")
    kinds = [k for k in PV_SOURCES if spec.get(k) is not None]
    if kinds == ["hostPath"]:
        hp = _d(spec["hostPath"])
        path = str(hp.get("path") or "")
        ann = _d(_d(pv.get("metadata")).get("annotations"))
        if ann.get("pv.kubernetes.io/provisioned-by") == LOCAL_PATH_PROVISIONER:
            _local_path_dir(path, storage_dir(data_dir))
        else:
            hostpath_check(path, hp.get("type") or "")
        return path
    if kinds == ["local"]:
        path = str(_d(spec["local"]).get("path") or "")
        if not Path(path).exists():
            raise ValueError(f"path {path!r} does not exist")
        return path
    if kinds == ["nfs"] and mount_nfs is not None:
        return str(await mount_nfs(pv_name, _d(spec["nfs"]), bool(src.get("readOnly"))))
    raise ValueError(f"volume {pv_name} has a {', '.join(kinds) or 'missing'} source, which this node cannot mount")
