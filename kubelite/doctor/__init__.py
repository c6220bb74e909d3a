"""``kubelite doctor``: why a pod is not Running/Ready, and what to change.

``diagnose(Evidence) -> Diagnosis`` is pure (:mod:`kubelite.doctor.diagnose`); ``gather``
(:mod:`kubelite.doctor.collect`) reads the evidence through the API. ``Diagnosis.text()`` is
what the CLI prints (and the dashboard's pod page can show); ``.to_dict()`` its JSON.
"""

from __future__ import annotations

from kubelite.doctor.diagnose import diagnose
from kubelite.doctor.evidence import Evidence
from kubelite.doctor.report import Diagnosis, Finding

__all__ = ["Diagnosis", "Evidence", "Finding", "diagnose"]
