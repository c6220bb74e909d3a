"""Service ClusterIP and NodePort allocation, kept in the datastore.

Upstream (pkg/registry/core/service/ipallocator, portallocator) kept each range as one
``RangeAllocation`` object — a bitmap under ``/registry/ranges/serviceips`` and
``/registry/ranges/servicenodeports`` — changed with a compare-and-swap; since 1.33
(MultiCIDRServiceAllocator, GA) ClusterIPs are networking.k8s.io/v1 IPAddress objects, one per
address, within ServiceCIDR objects. kubelite keeps the older, equally safe design (one bitmap
per range, every change a guaranteed update on its revision: two servers never hand out the
same address) and does not serve IPAddress/ServiceCIDR. At start-up the bitmaps are rebuilt
from the stored Services (upstream's repair controllers), so nothing a crash left half done
stays allocated.

Both ranges keep upstream's two bands: dynamic allocation takes the upper part of the range
first and leaves the lower part (16..256 addresses, 16..128 ports) to clients that ask for a
specific value, falling back to it only when the upper part is full.
"""

from __future__ import annotations

import base64
import ipaddress
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from kubelite.store.base import ConflictError, KeyExistsError, Store

T = TypeVar("T")
SERVICE_IPS_KEY = "/registry/ranges/serviceips"
NODE_PORTS_KEY = "/registry/ranges/servicenodeports"
_MAX_RETRIES = 50

ERR_ALLOCATED = "provided IP is already allocated"
ERR_PORT_ALLOCATED = "provided port is already allocated"
ERR_FULL = "range is full"


class AllocationError(Exception):
    """ipallocator / portallocator errors; ``str()`` is upstream's text."""


def _static_band(size: int, lo: int, hi: int, step: int) -> int:
    """calculateRangeOffset: how much of the range's start is kept for static allocation."""
    if size < lo:
        return 0
    return min(max(lo, size // step), hi)


class Bitmap:
    """A fixed-size set of offsets."""

    def __init__(self, size: int, bits: int = 0) -> None:
        self.size = size
        self.bits = bits & ((1 << size) - 1)

    def has(self, i: int) -> bool:
        return bool(self.bits >> i & 1)

    def set(self, i: int) -> None:
        self.bits |= 1 << i

    def clear(self, i: int) -> None:
        self.bits &= ~(1 << i)

    def used(self) -> int:
        return self.bits.bit_count()

    def next_free(self, static_band: int, rng: random.Random) -> int | None:
        """A free offset, searched from a random start in the dynamic band, then in the static one."""
        for lo, hi in ((static_band, self.size), (0, static_band)):
            n = hi - lo
            if n <= 0:
                continue
            start = rng.randrange(n)
            for k in range(n):
                i = lo + (start + k) % n
                if not self.has(i):
                    return i
        return None

    def encode(self) -> str:
        return base64.b64encode(self.bits.to_bytes((self.size + 7) // 8, "little")).decode()

    @classmethod
    def decode(cls, size: int, data: str) -> Bitmap:
        try:
            raw = base64.b64decode(data)
        except (ValueError, TypeError):
            raw = b""
        return cls(size, int.from_bytes(raw, "little"))


@dataclass(frozen=True)
class IPRange:
    """--service-cidr: the usable addresses (IPv4: not the network nor the broadcast address)."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network

    @classmethod
    def parse(cls, cidr: str) -> IPRange:
        net = ipaddress.ip_network(cidr, strict=False)
        if net.version == 4 and net.prefixlen > 30 or net.version == 6 and net.prefixlen > 126:
            raise ValueError(f"the service cluster IP range {cidr} is too small")
        if net.version == 6 and net.prefixlen < 108:
            raise ValueError(f"the service cluster IP range {cidr} is too large (at most /108 for IPv6)")
        if net.version == 4 and net.prefixlen < 12:
            raise ValueError(f"the service cluster IP range {cidr} is too large (at most /12 for IPv4)")
        return cls(net)

    @property
    def family(self) -> str:
        return "IPv4" if self.network.version == 4 else "IPv6"

    @property
    def base(self) -> int:
        return int(self.network.network_address) + 1

    @property
    def size(self) -> int:
        return self.network.num_addresses - 2

    def __str__(self) -> str:
        return str(self.network)

    def offset(self, ip: str) -> int:
        """The offset of ``ip``; AllocationError(ErrNotInRange) outside the range."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            addr = None
        i = int(addr) - self.base if addr is not None and addr.version == self.network.version else -1
        if not 0 <= i < self.size:
            raise AllocationError(f"the provided IP ({ip}) is not in the valid range. The range of valid IPs "
                                  f"is {self.network}")
        return i

    def address(self, offset: int) -> str:
        return str(ipaddress.ip_address(self.base + offset))

    def first(self) -> str:
        """The first address: the `kubernetes` Service's (upstream's GetIndexedIP(range, 1))."""
        return self.address(0)


@dataclass(frozen=True)
class PortRange:
    """--service-node-port-range."""

    base: int = 30000
    size: int = 2768

    @classmethod
    def parse(cls, text: str) -> PortRange:
        lo, sep, hi = text.partition("-")
        try:
            a, b = int(lo), int(hi if sep else lo)
        except ValueError:
            raise ValueError(f"invalid port range {text!r}: expected BEGIN-END") from None
        if not 0 < a <= b <= 65535:
            raise ValueError(f"invalid port range {text!r}")
        return cls(a, b - a + 1)

    def __str__(self) -> str:
        return f"{self.base}-{self.base + self.size - 1}"

    def offset(self, port: int) -> int:
        i = port - self.base
        if not 0 <= i < self.size:
            raise AllocationError(f"provided port is not in the valid range. The range of valid ports is {self}")
        return i


class _Range:
    """One bitmap in the datastore, changed only by compare-and-swap."""

    def __init__(self, store: Store, key: str, spec: str, size: int, static_band: int) -> None:
        self.store = store
        self.key = key
        self.spec = spec
        self.size = size
        self.static_band = static_band
        self.rng = random.Random()

    def _doc(self, bm: Bitmap) -> bytes:
        return orjson.dumps({"apiVersion": "v1", "kind": "RangeAllocation",
                             "metadata": {"name": self.key.rsplit("/", 1)[1]}, "range": self.spec,
                             "data": bm.encode()})

    def _load(self, value: bytes | None) -> Bitmap:
        if value is None:
            return Bitmap(self.size)
        doc: Any = orjson.loads(value)
        if not isinstance(doc, dict) or doc.get("range") != self.spec:
            return Bitmap(self.size)  # another range was configured: rebuilt by repair()
        return Bitmap.decode(self.size, str(doc.get("data") or ""))

    async def transact(self, fn: Callable[[Bitmap], T], dry_run: bool = False) -> T:
        for _ in range(_MAX_RETRIES):
            kv = await self.store.get(self.key)
            bm = self._load(kv.value if kv is not None else None)
            before = bm.bits
            result = fn(bm)
            if dry_run or bm.bits == before and kv is not None:
                return result
            try:
                if kv is None:
                    await self.store.create(self.key, self._doc(bm))
                else:
                    await self.store.update(self.key, self._doc(bm), kv.mod_revision)
            except (ConflictError, KeyExistsError):
                continue
            return result
        raise AllocationError("the allocation range is being modified too often; please try again")

    async def replace(self, bm: Bitmap) -> None:
        def put(cur: Bitmap) -> None:
            cur.bits = bm.bits

        await self.transact(put)

    async def snapshot(self) -> Bitmap:
        kv = await self.store.get(self.key)
        return self._load(kv.value if kv is not None else None)


class ServiceIPs:
    """The ClusterIP allocator of one --service-cidr."""

    def __init__(self, store: Store, cidr: str) -> None:
        self.range = IPRange.parse(cidr)
        self._r = _Range(store, SERVICE_IPS_KEY, str(self.range), self.range.size,
                         _static_band(self.range.size, 16, 256, 16))

    @property
    def family(self) -> str:
        return self.range.family

    async def allocate(self, ip: str, dry_run: bool = False) -> str:
        """Allocate ``ip``, or the next free address for ``""``; returns the address."""
        def take(bm: Bitmap) -> str:
            if ip:
                i = self.range.offset(ip)
                if bm.has(i):
                    raise AllocationError(ERR_ALLOCATED)
            else:
                found = bm.next_free(self._r.static_band, self._r.rng)
                if found is None:
                    raise AllocationError(ERR_FULL)
                i = found
            bm.set(i)
            return self.range.address(i)

        return await self._r.transact(take, dry_run)

    async def release(self, ips: list[str]) -> None:
        def give(bm: Bitmap) -> None:
            for ip in ips:
                try:
                    bm.clear(self.range.offset(ip))
                except AllocationError:
                    pass  # not ours (another range was configured)

        if ips:
            await self._r.transact(give)

    async def allocated(self) -> list[str]:
        bm = await self._r.snapshot()
        return [self.range.address(i) for i in range(bm.size) if bm.has(i)]

    async def rebuild(self, ips: list[str]) -> None:
        bm = Bitmap(self.range.size)
        for ip in ips:
            try:
                bm.set(self.range.offset(ip))
            except AllocationError:
                pass
        await self._r.replace(bm)


class NodePorts:
    """The NodePort allocator of one --service-node-port-range."""

    def __init__(self, store: Store, ports: str = "30000-32767") -> None:
        self.range = PortRange.parse(ports)
        self._r = _Range(store, NODE_PORTS_KEY, str(self.range), self.range.size,
                         _static_band(self.range.size, 16, 128, 32))

    async def allocate(self, wanted: list[int], dynamic: int, dry_run: bool = False) -> list[int]:
        """Allocate every port of ``wanted`` and ``dynamic`` more; returns the dynamic ones.
        Raises AllocationError(index into wanted, text) for the first that cannot be had."""
        def take(bm: Bitmap) -> list[int]:
            for n, port in enumerate(wanted):
                try:
                    i = self.range.offset(port)
                except AllocationError as exc:
                    raise PortError(n, str(exc)) from None
                if bm.has(i):
                    raise PortError(n, ERR_PORT_ALLOCATED)
                bm.set(i)
            out = []
            for _ in range(dynamic):
                found = bm.next_free(self._r.static_band, self._r.rng)
                if found is None:
                    raise AllocationError(ERR_FULL)
                bm.set(found)
                out.append(self.range.base + found)
            return out

        return await self._r.transact(take, dry_run)

    async def release(self, ports: list[int]) -> None:
        def give(bm: Bitmap) -> None:
            for p in ports:
                try:
                    bm.clear(self.range.offset(p))
                except AllocationError:
                    pass

        if ports:
            await self._r.transact(give)

    async def allocated(self) -> list[int]:
        bm = await self._r.snapshot()
        return [self.range.base + i for i in range(bm.size) if bm.has(i)]

    async def rebuild(self, ports: list[int]) -> None:
        bm = Bitmap(self.range.size)
        for p in ports:
            try:
                bm.set(self.range.offset(p))
            except AllocationError:
                pass
        await self._r.replace(bm)


class PortError(AllocationError):
    def __init__(self, index: int, text: str) -> None:
        super().__init__(text)
        self.index = index


__all__ = ["AllocationError", "Bitmap", "IPRange", "NodePorts", "PortError", "PortRange", "ServiceIPs"]
