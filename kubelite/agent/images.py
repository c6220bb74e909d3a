"""Images on the node: pull policies over CRI, and offline imports through ``ctr``.

``ImageManager(cri).ensure_image(image, pull_policy)`` does what the kubelet's image
manager does: ``Never`` → present or ``ErrImageNeverPull``; ``IfNotPresent`` → pull only if
missing; ``Always`` → pull (CRI ``PullImage``), failures are ``ErrImagePull``. It returns
the image ref (the image id, ``sha256:…``) to put into ``CreateContainerRequest.image``
and ``containerStatuses[].imageID``.

Images of the reserved registry host ``kubelite.local`` exist only offline (built by
``python -m kubelite.images.build`` and imported with ``ctr``): for them ``Always`` behaves
like ``IfNotPresent`` when the image is present, since nothing could be pulled anyway.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import shutil
import tarfile
from collections.abc import Mapping
from pathlib import Path

from kubelite.agent.cri import CRI, grpc, pb

log = logging.getLogger(__name__)

NAMESPACE = "k8s.io"
LOCAL_ONLY_REGISTRIES = frozenset({"kubelite.local"})
DEFAULT_BUILD_DIR = Path(__file__).resolve().parents[2] / "build" / "images"


class ImageError(Exception):
    """Base of the image errors; ``reason`` is the container waiting reason the kubelet uses."""

    reason = "ImageError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ErrImagePull(ImageError):
    reason = "ErrImagePull"


class ErrImageNeverPull(ImageError):
    reason = "ErrImageNeverPull"


class InvalidImageName(ImageError):
    reason = "InvalidImageName"


class ErrImageImport(ImageError):
    reason = "ImageImportError"


def registry_host(image: str) -> str:
    name = image.split("@", 1)[0]
    first, sep, _ = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def default_pull_policy(image: str) -> str:
    """The API default: Always for ``:latest`` or untagged (and no digest), else IfNotPresent."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _auth_config(auth: object) -> pb.AuthConfig | None:
    if auth is None or isinstance(auth, pb.AuthConfig):
        return auth
    if isinstance(auth, Mapping):
        keys = {"username", "password", "auth", "server_address", "identity_token", "registry_token"}
        aliases = {"serveraddress": "server_address", "identitytoken": "identity_token",
                   "registrytoken": "registry_token"}
        kw = {}
        for k, v in auth.items():
            k2 = aliases.get(k.lower(), k)
            if k2 in keys and v:
                kw[k2] = str(v)
        return pb.AuthConfig(**kw)
    raise TypeError(f"auth must be a mapping or cri AuthConfig, not {type(auth).__name__}")


class ImageManager:
    def __init__(self, cri: CRI, *, namespace: str = NAMESPACE, ctr: str | None = None,
                 pull_timeout: float | None = None) -> None:
        self.cri = cri
        self.namespace = namespace
        self.ctr = ctr or shutil.which("ctr") or "/usr/bin/ctr"
        self.pull_timeout = pull_timeout
        self._pulls: dict[str, asyncio.Future[str]] = {}

    # ------------------------------------------------------------------ queries
    async def status(self, image: str) -> pb.Image | None:
        """The CRI image record for ``image`` (name, name:tag, or id), or None."""
        resp = await self.cri.image.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=image)))
        return resp.image if resp.HasField("image") and resp.image.id else None

    async def present(self, image: str) -> bool:
        return await self.status(image) is not None

    async def list(self) -> list[pb.Image]:
        resp = await self.cri.image.ListImages(pb.ListImagesRequest())
        return list(resp.images)

    async def remove(self, ref: str) -> bool:
        """Remove an image (CRI semantics: the image and all its tags). False if absent."""
        img = await self.status(ref)
        if img is None:
            return False
        await self.cri.image.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=img.id)))
        return True

    # ------------------------------------------------------------------ pull policy
    async def ensure_image(self, image: str, pull_policy: str | None = None, auth: object = None,
                           sandbox_config: pb.PodSandboxConfig | None = None) -> str:
        """Make ``image`` available per ``pull_policy``; returns its image ref (``sha256:…`` id)."""
        if not image or image != image.strip() or any(c.isspace() for c in image):
            raise InvalidImageName(f'Failed to apply default image tag "{image}": invalid reference format')
        policy = pull_policy or default_pull_policy(image)
        if policy not in ("Always", "IfNotPresent", "Never"):
            raise ValueError(f"unknown imagePullPolicy {policy!r}")
        if policy != "Always" or registry_host(image) in LOCAL_ONLY_REGISTRIES:
            img = await self._status_or_pull_error(image)
            if img is not None:
                return img.id
            if policy == "Never":
                raise ErrImageNeverPull(f'Container image "{image}" is not present with pull policy of Never')
        return await self.pull(image, auth=auth, sandbox_config=sandbox_config)

    async def _status_or_pull_error(self, image: str) -> pb.Image | None:
        try:
            return await self.status(image)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidImageName(f'Failed to inspect image "{image}": {e.details()}') from e
            raise ErrImagePull(f'Failed to inspect image "{image}": {e.details()}') from e

    async def pull(self, image: str, auth: object = None, sandbox_config: pb.PodSandboxConfig | None = None) -> str:
        """CRI PullImage, de-duplicated for concurrent callers; raises ErrImagePull."""
        fut = self._pulls.get(image)
        if fut is not None:
            return await asyncio.shield(fut)
        fut = asyncio.get_running_loop().create_future()
        self._pulls[image] = fut
        try:
            req = pb.PullImageRequest(image=pb.ImageSpec(image=image), auth=_auth_config(auth),
                                      sandbox_config=sandbox_config)
            try:
                resp = await self.cri.image.PullImage(req, timeout=self.pull_timeout)
            except grpc.aio.AioRpcError as e:
                code = "".join(w.capitalize() for w in e.code().name.split("_"))  # Go's codes.Code.String()
                err = ErrImagePull(f"rpc error: code = {code} desc = {e.details()}")
                fut.set_exception(err)
                raise err from e
            except TimeoutError as e:
                err = ErrImagePull(f'failed to pull image "{image}": timed out')
                fut.set_exception(err)
                raise err from e
            fut.set_result(resp.image_ref)
            return resp.image_ref
        except BaseException as e:
            if not fut.done():
                fut.set_exception(ErrImagePull(f'failed to pull image "{image}": {e!r}'))
            raise
        finally:
            self._pulls.pop(image, None)
            if fut.done() and not fut.cancelled():
                fut.exception()  # mark retrieved: no "exception never retrieved" noise

    # ------------------------------------------------------------------ offline archives
    async def import_archive(self, path: str | Path, *, timeout: float = 300.0) -> builtins.list[str]:
        """Import an OCI image-layout or docker-save tar into containerd (``ctr images import``).

        Returns the image names that were imported.
        """
        path = Path(path)
        if not path.is_file():
            raise ErrImageImport(f"no such archive: {path}")
        names = _archive_names(path)
        cmd = [self.ctr, "--address", str(self.cri.socket_path), "-n", self.namespace,
               "images", "import", "--snapshotter", "overlayfs", str(path)]  # unpacks by default
        proc = await asyncio.create_subprocess_exec(*cmd, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise ErrImageImport(f"importing {path} timed out after {timeout:.0f}s") from None
        if proc.returncode != 0:
            raise ErrImageImport(f"ctr images import {path} failed ({proc.returncode}): "
                               f"{(err or out).decode(errors='replace').strip()}")
        if not names:
            for line in out.decode(errors="replace").splitlines():
                if line.startswith("unpacking "):
                    names.append(line.split()[1])
        log.info("imported %s from %s", ", ".join(names) or "(nothing)", path)
        return names

    async def ensure_offline_images(self, build_dir: str | Path | None = None,
                                    references: builtins.list[str] | None = None) -> builtins.list[str]:
        """Import kubelite's offline images (pause, busybox, kuard) that containerd lacks.

        Builds the archives first if ``build_dir`` has none (needs gcc and the source
        tree). Returns the references that were imported.
        """
        from kubelite.images import build as image_build

        build_dir = Path(build_dir) if build_dir else DEFAULT_BUILD_DIR
        refs = references or list(image_build.IMAGES)
        missing = [r for r in refs if not await self.present(r)]
        if not missing:
            return []
        archives = {r: build_dir / image_build.IMAGES[r] for r in missing}
        if any(not p.is_file() for p in archives.values()):
            await asyncio.to_thread(image_build.ensure_built, build_dir)
        imported: list[str] = []
        for ref in missing:
            imported += [n for n in await self.import_archive(archives[ref]) if n == ref] or [ref]
        return imported


def _archive_names(path: Path) -> list[str]:
    """Image names an archive declares (OCI index annotations or docker manifest RepoTags)."""
    try:
        with tarfile.open(path, "r:*") as tar:
            names: list[str] = []
            for member in ("index.json", "manifest.json"):
                try:
                    f = tar.extractfile(member)
                except KeyError:
                    continue
                if f is None:
                    continue
                doc = json.load(f)
                if member == "index.json":
                    for m in doc.get("manifests", []):
                        n = (m.get("annotations") or {}).get("io.containerd.image.name")
                        if n:
                            names.append(n)
                else:
                    for m in doc:
                        names += m.get("RepoTags") or []
                if names:
                    return names
            return names
    except (tarfile.TarError, OSError, ValueError):
        return []
