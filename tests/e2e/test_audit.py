"""The audit log: one Metadata-level event per mutating request, never a secret value."""

from __future__ import annotations

import json

from tests.e2e.harness import ServerProcess, wait_until


def test_scripted_session_audited(tmp_path):
    srv = ServerProcess(tmp_path / "data").start()
    try:
        log = srv.data_dir / "audit" / "audit.log"
        before = len(log.read_text().splitlines()) if log.exists() else 0
        srv.kubectl("create", "namespace", "aud")
        srv.kubectl("-n", "aud", "create", "secret", "generic", "s", "--from-literal=password=TOPSECRET-VALUE")
        srv.kubectl("-n", "aud", "create", "configmap", "c", "--from-literal=k=v")
        srv.kubectl("-n", "aud", "label", "configmap", "c", "x=y")
        srv.kubectl("-n", "aud", "get", "secret", "s", "-o", "yaml")  # a read: not audited
        srv.kubectl("-n", "aud", "delete", "configmap", "c")
        def ours() -> list[dict]:
            events = [json.loads(x) for x in log.read_text().splitlines()[before:]]
            return [e for e in events if e.get("objectRef", {}).get("namespace") == "aud"
                    or e.get("objectRef", {}).get("resource") == "namespaces"]

        wait_until(lambda: len(ours()) >= 5, 10, 0.1, "audit events")
        ours = ours()
        assert [(e["verb"], e["objectRef"]["resource"]) for e in ours] == [
            ("create", "namespaces"), ("create", "secrets"), ("create", "configmaps"), ("patch", "configmaps"),
            ("delete", "configmaps")]
        for e in ours:
            assert e["apiVersion"] == "audit.k8s.io/v1" and e["kind"] == "Event"
            assert e["level"] == "Metadata" and e["stage"] == "ResponseComplete"
            assert e["user"]["username"] == "kubelite-admin"
            assert e["responseStatus"]["code"] in (200, 201)
            assert e["auditID"] and e["requestReceivedTimestamp"] and e["stageTimestamp"]
        text = log.read_text()
        assert "TOPSECRET-VALUE" not in text
        assert "VE9QU0VDUkVULVZBTFVF" not in text  # nor its base64
    finally:
        srv.stop()
