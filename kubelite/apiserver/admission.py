"""Admission: the chain of plugins every write passes through (as the apiserver's
mutating and validating admission). Plugins see one :class:`Attributes` per request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from kubelite.kinds.base import Kind, Obj

CREATE = "CREATE"
UPDATE = "UPDATE"
DELETE = "DELETE"
CONNECT = "CONNECT"


@dataclass
class Attributes:
    operation: str
    kind: Kind
    namespace: str
    name: str
    obj: Obj | None  # the new object (CREATE/UPDATE); may be changed by mutating plugins
    old: Obj | None  # the stored object (UPDATE/DELETE)
    subresource: str = ""
    user: Any = None  # kubelite.apiserver.auth.UserInfo, or None for in-process writers
    dry_run: bool = False


class Plugin(Protocol):
    async def admit(self, a: Attributes) -> None:
        """Mutating phase: may change ``a.obj``. Raise a StatusError to refuse."""

    async def validate(self, a: Attributes) -> None:
        """Validating phase, after the kind's own validation. Raise a StatusError to refuse."""


class Chain:
    def __init__(self, plugins: list[Plugin] | None = None) -> None:
        self.plugins: list[Plugin] = list(plugins or [])

    def add(self, plugin: Plugin) -> None:
        self.plugins.append(plugin)

    async def admit(self, a: Attributes) -> None:
        for p in self.plugins:
            await p.admit(a)

    async def validate(self, a: Attributes) -> None:
        for p in self.plugins:
            await p.validate(a)
