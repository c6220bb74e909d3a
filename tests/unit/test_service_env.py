"""Service environment variables (kubelet getServiceEnvVarMap + envvars.FromServices) and their
place in a container's environment."""

from __future__ import annotations

import asyncio

import pytest

from kubelite.agent import podenv


def svc(ns: str, name: str, ip: str, *ports: dict) -> dict:
    return {"metadata": {"namespace": ns, "name": name}, "spec": {"clusterIP": ip, "ports": list(ports)}}


SERVICES = [
    svc("default", "kubernetes", "10.43.0.1", {"name": "https", "port": 443, "protocol": "TCP"}),
    svc("web", "kuard-svc", "10.43.0.20", {"name": "http", "port": 80}, {"port": 53, "protocol": "UDP"}),
    svc("web", "headless", "None", {"port": 80}),
    svc("other", "db", "10.43.0.30", {"port": 5432}),
]


def test_variables_of_the_namespace_and_the_master_service():
    env = podenv.service_env(SERVICES, "web", True)
    assert env["KUBERNETES_SERVICE_HOST"] == "10.43.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["KUBERNETES_PORT"] == "tcp://10.43.0.1:443"
    assert env["KUBERNETES_PORT_443_TCP"] == "tcp://10.43.0.1:443"
    assert env["KUBERNETES_PORT_443_TCP_PROTO"] == "tcp"
    assert env["KUBERNETES_PORT_443_TCP_PORT"] == "443"
    assert env["KUBERNETES_PORT_443_TCP_ADDR"] == "10.43.0.1"
    assert env["KUARD_SVC_SERVICE_HOST"] == "10.43.0.20"
    assert env["KUARD_SVC_SERVICE_PORT"] == "80"
    assert env["KUARD_SVC_SERVICE_PORT_HTTP"] == "80"
    assert env["KUARD_SVC_PORT"] == "tcp://10.43.0.20:80"  # the first port only
    assert env["KUARD_SVC_PORT_53_UDP"] == "udp://10.43.0.20:53"
    assert env["KUARD_SVC_PORT_53_UDP_PROTO"] == "udp"
    assert not any(k.startswith(("HEADLESS_", "DB_")) for k in env)  # no cluster IP; another namespace


def test_enable_service_links_false_keeps_only_the_master_service():
    env = podenv.service_env(SERVICES, "web", False)
    assert env["KUBERNETES_SERVICE_HOST"] == "10.43.0.1"
    assert not any(k.startswith("KUARD_SVC") for k in env)


def test_ipv6_cluster_ip_is_bracketed():
    env = podenv.service_env([svc("a", "v6", "fd00::10", {"port": 80})], "a", True)
    assert env["V6_PORT"] == "tcp://[fd00::10]:80"


async def _nothing(kind: str, ns: str, name: str):
    return None


def _pod(links: bool | None) -> dict:
    spec: dict = {"containers": []}
    if links is not None:
        spec["enableServiceLinks"] = links
    return {"metadata": {"namespace": "web", "name": "p"}, "spec": spec}


def test_declared_variables_win_and_may_expand_service_ones():
    ct = {"name": "c", "env": [{"name": "KUARD_SVC_SERVICE_PORT", "value": "8080"},
                               {"name": "URL", "value": "http://$(KUARD_SVC_SERVICE_HOST):$(KUARD_SVC_SERVICE_PORT)"}]}
    env = asyncio.run(podenv.make_environment(_pod(None), ct, _nothing, "10.0.0.1", ["10.42.0.5"], services=SERVICES))
    names = [k for k, _ in env]
    assert names[:2] == ["KUARD_SVC_SERVICE_PORT", "URL"]  # declared first, service ones after
    d = dict(env)
    assert d["URL"] == "http://10.43.0.20:8080" and d["KUARD_SVC_SERVICE_PORT"] == "8080"
    assert names.count("KUARD_SVC_SERVICE_PORT") == 1 and d["KUBERNETES_SERVICE_HOST"] == "10.43.0.1"


def test_services_not_read_yet_fail_the_container_config():
    with pytest.raises(podenv.EnvError, match="services have not yet been read at least once"):
        asyncio.run(podenv.make_environment(_pod(False), {"name": "c"}, _nothing, "", [], services=None))
