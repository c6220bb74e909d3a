"""Live reload of the API server's serving certificate (``kubelite certs rotate`` writes a new
pair; the running server loads it into its SSLContext, so new handshakes present it)."""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from pathlib import Path

from kubelite.tls import pki as pkimod

log = logging.getLogger("kubelite.tls")
RELOAD_INTERVAL = 1.0


def _stamp(*paths: Path) -> tuple:
    out = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            return ()
        out.append((st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(out)


class ServingCertReloader:
    """Loads a renewed serving certificate into the server's live SSLContext (new handshakes
    present it). The pair is first loaded into a scratch context, so a half-written pair
    (certificate and key are replaced one after the other) is skipped until it matches."""

    def __init__(self, ctx: ssl.SSLContext, pki: pkimod.PKI, interval: float = RELOAD_INTERVAL) -> None:
        self.ctx = ctx
        self.cert = pki.server_cert
        self.key = pki.server_key
        self.interval = interval
        self._seen = _stamp(self.cert, self.key)

    def check(self) -> bool:
        """Reload when the files changed; True when a new pair was loaded."""
        now = _stamp(self.cert, self.key)
        if not now or now == self._seen:
            return False
        try:
            scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            scratch.load_cert_chain(str(self.cert), str(self.key))
        except (ssl.SSLError, OSError) as exc:  # mid-rotation: try again next tick
            log.debug("serving certificate not reloadable yet: %s", exc)
            return False
        self.ctx.load_cert_chain(str(self.cert), str(self.key))
        self._seen = now
        log.info("reloaded the serving certificate from %s", self.cert)
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.check()
            except Exception:
                log.exception("reloading the serving certificate")


__all__ = ["RELOAD_INTERVAL", "ServingCertReloader"]
