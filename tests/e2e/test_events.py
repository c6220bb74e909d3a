"""Components record events through the API; repeats are deduplicated; describe shows them."""

from __future__ import annotations

import asyncio
import json

from kubelite.client.api import Client
from kubelite.client.events import WARNING, EventRecorder


def test_recorded_events_dedup_and_show_in_describe(server):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "evpod"},
           "spec": {"containers": [{"name": "c", "image": "kubelite.local/busybox:latest"}]}}
    server.kubectl("apply", "-f", "-", input=json.dumps(pod))
    stored = json.loads(server.kubectl("get", "pod", "evpod", "-o", "json").stdout)

    async def record() -> list:
        async with Client.from_kubeconfig(server.kubeconfig) as c:
            rec = EventRecorder(c, "default-scheduler")
            out = []
            for _ in range(3):
                out.append(await rec.record(stored, WARNING, "FailedScheduling",
                                            "0/1 nodes are available: 1 Insufficient cpu."))
            return out

    events = asyncio.run(record())
    assert [e["count"] for e in events] == [1, 2, 3]
    assert len({e["metadata"]["name"] for e in events}) == 1
    out = server.kubectl("describe", "pod", "evpod").stdout
    ev_lines = out[out.index("Events:"):].splitlines()
    assert ev_lines[1].split() == ["Type", "Reason", "Age", "From", "Message"]
    row = ev_lines[3].split()
    assert row[:2] == ["Warning", "FailedScheduling"]
    assert "(x3 over" in ev_lines[3] and "default-scheduler" in ev_lines[3]
    assert "0/1 nodes are available: 1 Insufficient cpu." in ev_lines[3]
    listed = server.kubectl("get", "events", "--field-selector", "involvedObject.name=evpod").stdout.splitlines()
    assert listed[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert "pod/evpod" in listed[1]
    v1 = json.loads(server.kubectl("get", "events.v1.events.k8s.io", "-o", "json").stdout)
    mine = [e for e in v1["items"] if e["regarding"]["name"] == "evpod"]
    assert mine and mine[0]["reason"] == "FailedScheduling" and mine[0]["deprecatedCount"] == 3
    server.kubectl("delete", "pod", "evpod")
