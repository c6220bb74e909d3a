"""``kubelite advise``: the Pods chapter's design review of manifests, offline.

``advise(docs)`` reviews every pod spec in the documents and returns a :class:`Report`
(``.findings``, ``.to_text()``, ``.to_json()``); ``load(paths)`` reads manifests as
``kubectl -f`` does. See :mod:`kubelite.advise.checks` for the codes and
:mod:`kubelite.advise.report` for the JSON schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO

from kubelite.advise.checks import Finding, review
from kubelite.advise.manifests import Document, ManifestError, pod_subjects, read
from kubelite.advise.report import Report, Reviewed


def advise(docs: Iterable[Document]) -> Report:
    subjects, others = pod_subjects(docs)
    reviewed = []
    for s in subjects:
        colo, findings = review(s)
        reviewed.append(Reviewed(s, colo, tuple(findings)))
    return Report(tuple(reviewed), tuple(others))


def load(paths: Iterable[str], recursive: bool = False, stdin: IO[str] | None = None) -> list[Document]:
    return read(paths, recursive, stdin)


__all__ = ["Document", "Finding", "ManifestError", "Report", "advise", "load"]
