"""The node's side of the local-path provisioner (the claim → PV → source resolution is the
persistentVolumeClaim plugin of agent/volumes.py).

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

from kubelite.kinds.storage import LOCAL_PATH_DIR_ANNOTATION, LOCAL_PATH_PROVISIONER

Obj = dict[str, Any]
STORAGE_DIR = "storage"
__all__ = ["LOCAL_PATH_DIR_ANNOTATION", "LOCAL_PATH_PROVISIONER", "local_path_dir", "storage_dir"]


def storage_dir(data_dir: Path) -> Path:
    return Path(data_dir) / STORAGE_DIR


def local_path_dir(path: str, root: Path) -> None:
    p = Path(path)
    if p.resolve().parent != root.resolve():
        raise OSError(f"{path} is not a directory of {root}")
    if not p.is_dir():
        p.mkdir(mode=0o777, parents=True, exist_ok=True)
        os.chmod(p, 0o777)
