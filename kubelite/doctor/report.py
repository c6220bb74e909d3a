"""What ``kubelite doctor`` says about a pod: findings (a stable reason, the cause in plain
words, what was seen, what to change) and their text. The same value feeds the CLI
(text or ``-o json``) and, later, the dashboard's pod page."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any

WIDTH = 100
SEVERITIES = ("error", "warning", "info")


@dataclass(frozen=True)
class Finding:
    reason: str  # stable: Unschedulable, InsufficientResources, ImageNotFound, CrashLoopBackOff, …
    severity: str  # error: keeps the pod from running/ready; warning: it runs but restarts; info: wait
    container: str  # "" for the whole pod
    cause: str  # plain words
    fix: str
    evidence: tuple[str, ...] = ()  # what was seen: event and status messages, log lines

    def to_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "severity": self.severity, "container": self.container, "cause": self.cause,
                "fix": self.fix, "evidence": list(self.evidence)}


@dataclass(frozen=True)
class Diagnosis:
    namespace: str
    name: str
    status: str  # kubectl's STATUS column
    ready: str  # kubectl's READY column ("0/1")
    restarts: int
    node: str
    summary: str  # one sentence
    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def healthy(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "name": self.name, "status": self.status, "ready": self.ready,
                "restarts": self.restarts, "node": self.node, "healthy": self.healthy, "summary": self.summary,
                "findings": [f.to_dict() for f in self.findings]}

    def text(self) -> str:
        node = f", node {self.node}" if self.node else ""
        out = [f"pod/{self.name} in namespace {self.namespace}: {self.status} "
               f"({self.ready} ready, {self.restarts} restart{'' if self.restarts == 1 else 's'}{node})"]
        out += _wrap(self.summary, "  ", "  ")
        for f in self.findings:
            who = f' container "{f.container}"' if f.container else ""
            out.append("")
            out += _wrap(f"{f.severity} {f.reason}{who}", "  ", "    ")
            out += _wrap(f"cause: {f.cause}", "    ", "           ")
            for i, e in enumerate(f.evidence):
                out += _wrap(f"{'seen:' if i == 0 else '     '}  {e}", "    ", "           ")
            out += _wrap(f"fix:   {f.fix}", "    ", "           ")
        return "\n".join(out) + "\n"


def _wrap(text: str, first: str, rest: str) -> list[str]:
    lines: list[str] = []
    for i, para in enumerate(text.split("\n")):
        lines += textwrap.wrap(para, WIDTH, initial_indent=first if i == 0 else rest, subsequent_indent=rest,
                               break_on_hyphens=False, break_long_words=False) or [first if i == 0 else rest]
    return lines
