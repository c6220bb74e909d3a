"""Micro-benchmark (not a test): apply.update_managed_fields for a typical Pod.

Scenarios, all on the kuard pod (one container with ports, resources and probes) after
PodStrategy.default / prepare_for_create, as the registry hands it to the field tracker:

  a. create                     (old is None)
  b. update: label change       (managedFields carried over from the live object)
     update: image change
  c. status update              (subresource "status", manager kubelet)

Prints µs per call (best of --repeat runs of --number calls each): "warm" is the steady
state of a server creating pods from one template; "cold" clears apply's FieldsV1 memos
before every call (every object a new shape) where the implementation has them.

    .venv/bin/python bench/managed_fields.py [--number 2000] [--repeat 5] [--profile]
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

from kubelite.api import apply
from kubelite.api import schema as sch
from kubelite.kinds.pods import PodStrategy

POD = sch.definition("io.k8s.api.core.v1.Pod")
T0, T1, T2 = "2024-05-01T00:00:00Z", "2024-05-01T00:00:01Z", "2024-05-01T00:00:02Z"


def kuard_pod() -> dict:
    probe = {"failureThreshold": 3, "initialDelaySeconds": 5, "periodSeconds": 10, "timeoutSeconds": 1}
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kuard", "namespace": "default", "labels": {"app": "kuard"}},
        "spec": {"containers": [{
            "name": "kuard", "image": "kubelite.local/kuard-amd64:blue",
            "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
            "resources": {"requests": {"cpu": "500m", "memory": "128Mi"},
                          "limits": {"cpu": "1000m", "memory": "256Mi"}},
            "livenessProbe": {"httpGet": {"path": "/healthy", "port": 8080}, **probe},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, **probe},
        }]},
    }
    s = PodStrategy()
    s.default(pod)
    s.prepare_for_create(pod)
    pod["metadata"].update(uid="4d3c1f7e-0000-4000-8000-000000000001", creationTimestamp=T0,
                           generation=1)
    return pod


def created() -> dict:
    pod = kuard_pod()
    apply.update_managed_fields(None, pod, "kubectl-create", POD, "v1", T0)
    pod["metadata"]["resourceVersion"] = "1"
    return pod


def scenarios() -> dict[str, tuple[dict | None, dict, str, str]]:
    """name -> (old, new template, manager, subresource)."""
    live = created()
    label = copy.deepcopy(live)
    label["metadata"]["labels"]["tier"] = "frontend"
    image = copy.deepcopy(live)
    image["spec"]["containers"][0]["image"] = "kubelite.local/kuard-amd64:green"
    status = copy.deepcopy(live)
    status["status"] = {
        "phase": "Running", "qosClass": "Burstable", "hostIP": "10.0.0.2", "podIP": "10.244.0.5",
        "podIPs": [{"ip": "10.244.0.5"}], "hostIPs": [{"ip": "10.0.0.2"}], "startTime": T1,
        "conditions": [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": T1}
                       for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                 "PodScheduled")],
        "containerStatuses": [{
            "name": "kuard", "image": "kubelite.local/kuard-amd64:blue", "imageID": "sha256:abc",
            "containerID": "containerd://123", "ready": True, "started": True, "restartCount": 0,
            "state": {"running": {"startedAt": T1}}, "lastState": {},
        }],
    }
    return {
        "a. create": (None, kuard_pod(), "kubectl-create", ""),
        "b. update (label)": (live, label, "kubectl-edit", ""),
        "b. update (image)": (live, image, "kubectl-edit", ""),
        "c. status update": (live, status, "kubelet", "status"),
    }


def _clear_memos() -> None:
    for name in ("_DECODED", "_ENCODED"):
        memo = getattr(apply, name, None)
        if memo is not None:
            memo.clear()


def run(old: dict | None, tmpl: dict, manager: str, sub: str, number: int, repeat: int,
        cold: bool = False, fn: Callable = apply.update_managed_fields) -> float:
    best = float("inf")
    for _ in range(repeat):
        news = [copy.deepcopy(tmpl) for _ in range(number)]
        t = time.perf_counter()
        if cold:
            for new in news:
                _clear_memos()
                fn(old, new, manager, POD, "v1", T2, sub)
        else:
            for new in news:
                fn(old, new, manager, POD, "v1", T2, sub)
        best = min(best, time.perf_counter() - t)
    return best / number * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--number", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="cProfile each scenario once")
    args = ap.parse_args()
    for name, (old, tmpl, manager, sub) in scenarios().items():
        if args.profile:
            import cProfile
            import pstats
            pr = cProfile.Profile()
            news = [copy.deepcopy(tmpl) for _ in range(args.number)]
            pr.enable()
            for new in news:
                apply.update_managed_fields(old, new, manager, POD, "v1", T2, sub)
            pr.disable()
            print(f"==== {name}")
            pstats.Stats(pr).sort_stats("tottime").print_stats(12)
            continue
        warm = run(old, tmpl, manager, sub, args.number, args.repeat)
        cold = run(old, tmpl, manager, sub, args.number, args.repeat, cold=True)
        print(f"{name:<22} warm {warm:8.1f} µs/call   cold {cold:8.1f} µs/call")


if __name__ == "__main__":
    main()
