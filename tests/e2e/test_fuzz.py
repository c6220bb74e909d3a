"""A short schemathesis run over the served OpenAPI (pods, configmaps, secrets, namespaces,
nodes, events): no answer is a 5xx, no connection is dropped, and the official Python client
lists every kind after each write the server accepted. The long run is bench/fuzz_api.py."""

from __future__ import annotations

import pytest

from tests.e2e import apifuzz
from tests.e2e.harness import ServerProcess

EXAMPLES = 7  # per operation: a few hundred requests in all


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = ServerProcess(tmp_path_factory.mktemp("fuzz") / "data").start()
    s.kubectl("create", "namespace", "fuzz")
    yield s
    s.stop()


def test_fuzz_served_api(srv):
    res = apifuzz.run(srv.kubeconfig, EXAMPLES, seed=1)
    print("\n" + res.summary())
    assert res.requests >= 200
    assert not res.dropped, res.dropped[:5]
    assert not res.server_errors, res.server_errors[:5]
    assert not res.client_failures, res.client_failures[:5]
    assert srv.proc is not None and srv.proc.poll() is None  # the server is still up
