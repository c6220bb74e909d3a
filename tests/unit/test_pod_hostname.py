"""The pod's hostname and domain (kubelet GeneratePodHostNameAndDomain, GetNodenameForKernel) in its
sandbox config and managed /etc/hosts."""

from __future__ import annotations

import pytest

from kubelite.agent import crispec


def pod(name: str = "web", ns: str = "shop", **spec) -> dict:
    return {"metadata": {"name": name, "namespace": ns, "uid": "u1"}, "spec": {"containers": [], **spec}}


def test_hostname_subdomain_and_fqdn():
    p = pod(hostname="h", subdomain="sub", setHostnameAsFQDN=True)
    assert crispec.pod_hostname_and_domain(p) == ("h", "sub.shop.svc.cluster.local")
    assert crispec.sandbox_config(p, 0, "/l", "/c").hostname == "h.sub.shop.svc.cluster.local"
    assert "10.42.0.5\th.sub.shop.svc.cluster.local\th" in crispec.etc_hosts(p, ["10.42.0.5"])
    # without a subdomain there is no domain: setHostnameAsFQDN changes nothing
    assert crispec.sandbox_config(pod(setHostnameAsFQDN=True), 0, "/l", "/c").hostname == "web"
    assert crispec.sandbox_config(pod(subdomain="sub"), 0, "/l", "/c").hostname == "web"


def test_long_names_are_truncated_and_a_long_fqdn_is_refused():
    long = "a" * 62 + "-" + "b" * 10
    assert crispec.pod_hostname_and_domain(pod(long))[0] == "a" * 62  # cut at 63, then the trailing "-"
    p = pod("x" * 40, subdomain="sub", setHostnameAsFQDN=True)
    fqdn = "x" * 40 + ".sub.shop.svc.cluster.local"
    with pytest.raises(crispec.SandboxConfigError) as exc:
        crispec.sandbox_config(p, 0, "/l", "/c")
    assert str(exc.value) == (f"failed to construct FQDN from pod hostname and cluster domain, FQDN {fqdn} is too "
                              f"long (64 characters is the max, {len(fqdn)} characters requested)")


def test_hostname_override_wins_and_has_no_domain():
    p = pod(hostname="h", subdomain="sub", hostnameOverride="db-primary.example", setHostnameAsFQDN=True)
    assert crispec.pod_hostname_and_domain(p) == ("db-primary.example", "")
    assert crispec.sandbox_config(p, 0, "/l", "/c").hostname == "db-primary.example"
    assert "10.42.0.5\tdb-primary.example\n" in crispec.etc_hosts(p, ["10.42.0.5"])


def _errors(**spec) -> list[str]:
    from kubelite.kinds import _pod_validation

    full = {"containers": [{"name": "c", "image": "i", "imagePullPolicy": "IfNotPresent",
                            "terminationMessagePolicy": "File"}],
            "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "terminationGracePeriodSeconds": 30, **spec}
    return [str(e) for e in _pod_validation.validate_pod_spec(full, "p", _pod_validation.Path("spec"))]


def test_hostname_override_validation():
    assert _errors(hostnameOverride="db-primary.example") == []
    assert any(e.startswith('spec.hostnameOverride: Invalid value: "Bad_Name"') for e in _errors(hostnameOverride="Bad_Name"))
    assert "spec.hostnameOverride: Too long: may not be more than 64 bytes" in _errors(hostnameOverride="a." * 40 + "b")
    assert "spec.hostnameOverride: Forbidden: may not be specified when setHostnameAsFQDN is true" in \
        _errors(hostnameOverride="h", setHostnameAsFQDN=True)
    assert "spec.hostnameOverride: Forbidden: may not be specified when hostNetwork is true" in \
        _errors(hostnameOverride="h", hostNetwork=True)


def test_host_aliases_and_the_host_network_hosts_file(tmp_path):
    aliases = [{"ip": "127.0.0.5", "hostnames": ["a.test", "b.test"]}, {"ip": "10.0.0.1", "hostnames": ["c.test"]}]
    p = {"metadata": {"name": "h", "namespace": "default"}, "spec": {"hostAliases": aliases}}
    assert crispec.etc_hosts(p, ["10.42.0.5"]).endswith(
        "10.42.0.5\th\n\n# Entries added by HostAliases.\n127.0.0.5\ta.test\tb.test\n10.0.0.1\tc.test\n")
    node_hosts = tmp_path / "hosts"
    node_hosts.write_text("127.0.0.1\tlocalhost\n192.168.1.2\tnode\n")
    p["spec"]["hostNetwork"] = True
    assert crispec.etc_hosts(p, [], node_hosts=str(node_hosts)) == (
        "# Kubernetes-managed hosts file (host network).\n127.0.0.1\tlocalhost\n192.168.1.2\tnode\n"
        "\n# Entries added by HostAliases.\n127.0.0.5\ta.test\tb.test\n10.0.0.1\tc.test\n")
