"""The advice for a set of manifests, as text for people and JSON for CI.

JSON schema (``apiVersion: advise.kubelite.io/v1``, ``kind: AdviceReport``); keys are sorted,
objects are in input order (``source``, then ``index``), findings sorted by (source, index,
object, code, container, field), so the same input always gives the same bytes::

    {
      "apiVersion": "advise.kubelite.io/v1",
      "kind": "AdviceReport",
      "objects": [{                      # every object that carries a pod spec
        "source": "examples/kuard-pod.yaml",   # the file as given, or "STDIN"
        "index": 0,                      # the object's position in its source (List items count)
        "object": "Pod/kuard",           # Kind/name
        "apiVersion": "v1",
        "namespace": "",                 # as written in the manifest ("" when not set)
        "podSpec": "spec",               # where the pod spec is ("spec.template.spec", …)
        "containers": ["kuard"],         # the long-running containers (containers + sidecars)
        "colocation": {
          "verdict": "single-container" | "one-pod" | "separate-pods",
          "groups": [["kuard"]],         # containers that must stay on one machine
          "ties": [{"kind": "volume" | "ipc" | "localhost" | "probe" | "processNamespace"
                             | "adapter" | "network",
                    "containers": ["a", "b"], "binding": true, "detail": "…"}],
          "databases": [{"container": "mysql", "product": "MySQL", "port": 3306,
                         "evidence": "image mysql:8.0"}],
          "summary": "…"                 # one sentence, the same as the text output
        },
        "findings": 3                    # how many of the findings below are this object's
      }],
      "skipped": [{"source": "…", "index": 1, "object": "Service/web"}],  # no pod spec
      "findings": [{
        "code": "KL020",                 # stable: see kubelite.advise.checks
        "severity": "error" | "warning" | "info",
        "source": "…", "index": 0, "object": "Pod/kuard", "namespace": "",
        "container": "kuard",            # "" when the finding is about the whole Pod
        "field": "spec.containers[0].livenessProbe",
        "message": "…",                  # what is wrong, one sentence
        "why": "…",                      # the chapter's reasoning
        "suggestion": "…"                # what to do instead
      }],
      "summary": {"objects": 1, "skipped": 0, "findings": 3, "error": 0, "warning": 3, "info": 0}
    }
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from typing import Any

from kubelite.advise.checks import SEVERITIES, Finding
from kubelite.advise.colocation import Colocation
from kubelite.advise.manifests import Document, PodSubject

API_VERSION = "advise.kubelite.io/v1"
WIDTH = 100


@dataclass(frozen=True)
class Reviewed:
    subject: PodSubject
    colocation: Colocation
    findings: tuple[Finding, ...]


def _q(names: tuple[str, ...] | list[str]) -> str:
    q = [f'"{n}"' for n in names]
    return q[0] if len(q) == 1 else ", ".join(q[:-1]) + " and " + q[-1]


def colocation_summary(c: Colocation) -> str:
    if c.verdict == "single-container":
        return "one container"
    binding = [t for t in c.ties if t.binding]
    if c.verdict == "one-pod":
        why = "; ".join(t.detail for t in binding)
        return f"one Pod is right: {_q(c.containers)} would not work correctly on different machines — {why}"
    split = " | ".join(" + ".join(g) for g in c.groups)
    return f"would work as separate Pods: {split}"


@dataclass(frozen=True)
class Report:
    reviewed: tuple[Reviewed, ...]
    skipped: tuple[Document, ...]

    @property
    def findings(self) -> list[Finding]:
        return sorted((f for r in self.reviewed for f in r.findings), key=Finding.sort_key)

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in SEVERITIES}
        for f in self.findings:
            out[f.severity] += 1
        return out

    # ---------------------------------------------------------------------------- JSON
    def to_dict(self) -> dict[str, Any]:
        objects = []
        for r in self.reviewed:
            s, c = r.subject, r.colocation
            objects.append({
                "source": s.source, "index": s.index, "object": s.object_ref, "apiVersion": s.api_version,
                "namespace": s.namespace, "podSpec": s.path, "containers": list(c.containers),
                "colocation": {
                    "verdict": c.verdict, "groups": [list(g) for g in c.groups],
                    "ties": [{"kind": t.kind, "containers": list(t.containers), "binding": t.binding,
                              "detail": t.detail} for t in c.ties],
                    "databases": [{"container": d.container, "product": d.product, "port": d.port,
                                   "evidence": d.evidence} for d in c.databases],
                    "summary": colocation_summary(c)},
                "findings": len(r.findings)})
        findings = self.findings
        return {
            "apiVersion": API_VERSION, "kind": "AdviceReport", "objects": objects,
            "skipped": [{"source": d.source, "index": d.index,
                         "object": f"{d.obj.get('kind')}/{(d.obj.get('metadata') or {}).get('name', '')}"}
                        for d in self.skipped],
            "findings": [f.to_dict() for f in findings],
            "summary": {"objects": len(objects), "skipped": len(self.skipped), "findings": len(findings),
                        **self.counts()}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    # ---------------------------------------------------------------------------- text
    def to_text(self) -> str:
        out: list[str] = []
        explained: set[str] = set()
        for r in self.reviewed:
            s = r.subject
            ns = f" (namespace {s.namespace})" if s.namespace else ""
            out.append(f"{s.source}: {s.object_ref}{ns}")
            if r.colocation.verdict != "single-container":
                out += _wrap(colocation_summary(r.colocation), "  ", "    ")
            if not r.findings:
                out.append("  no findings")
            for f in r.findings:
                out += _wrap(f"{f.severity} {f.code}: {f.message}", "  ", "      ")
                if f.code in explained:
                    out.append(f"      (why: as for {f.code} above)")
                else:
                    out += _wrap(f"why: {f.why}", "      ", "           ")
                    explained.add(f.code)
                out += _wrap(f"fix: {f.suggestion}", "      ", "           ")
            out.append("")
        c = self.counts()
        total = sum(c.values())
        parts = [f"{c[s]} {s}{'' if c[s] == 1 or s == 'info' else 's'}" for s in SEVERITIES]
        n = len(self.reviewed)
        out.append(f"{n} pod spec{'' if n == 1 else 's'} reviewed, {total} finding{'' if total == 1 else 's'} "
                   f"({', '.join(parts)})")
        return "\n".join(out) + "\n"


def _wrap(text: str, first: str, rest: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=first, subsequent_indent=rest, break_on_hyphens=False,
                         break_long_words=False) or [first]
