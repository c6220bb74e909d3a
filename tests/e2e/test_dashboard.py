"""The dashboard in a real browser: headless Debian chromium driven by Playwright (through its
``executable_path``: Playwright downloads no browser here), against `kubelite server` as users
run it (API, scheduler, agent). The user's session: log in with a token, watch a pod go
Pending → Running live, follow its log, run `date` in its terminal, apply a bad manifest and
read Kubernetes' validation message, delete the pod and see Terminating then gone; a `view`
user sees no terminal button and is refused (403) when forcing one.

Each test saves a screenshot under build/screenshots/; ``KUBELITE_SCREENSHOTS=docs/screenshots``
refreshes the ones the README shows (committed, so that a test run leaves the checkout as it was).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import ROOT, wait_until
from tests.e2e.test_agent_support import BUSYBOX, full_cluster, get_pod

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DASHBOARD_BUILT = (ROOT / "build" / "dashboard" / "index.html").is_file() or bool(os.environ.get("KUBELITE_DASHBOARD_DIR"))
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is needed (make setup-test)"),
    pytest.mark.skipif(not DASHBOARD_BUILT, reason="the dashboard is not built (make setup)"),
]
NODE = "kl-e2e-dashboard"
POD = "dash-web"
VIEWER = "dash-viewer"
SHOTS = Path(os.environ.get("KUBELITE_SCREENSHOTS") or ROOT / "build" / "screenshots")
TIMEOUT = 60_000  # ms: pods start on a shared two-core machine
# prints a numbered line every second; busybox sh as PID 1 ignores SIGTERM, so a deletion
# stays Terminating for the grace period (seen below) before the kill
LOOP = "i=0; while true; do echo dashboard line $i; i=$((i+1)); sleep 1; done"
POD_MANIFEST = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": POD, "labels": {"app": POD}},
    "spec": {"terminationGracePeriodSeconds": 4,
             "containers": [{"name": "main", "image": BUSYBOX, "command": ["sh", "-c", LOOP],
                             "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}}}]},
}
BAD_MANIFEST = """apiVersion: v1
kind: Pod
metadata:
  name: dash-bad
spec:
  containers:
  - name: main
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with full_cluster(tmp_path_factory.mktemp("dashboard") / "data", NODE) as (server, _view):
        from kubelite.apiserver.auth import read_admin_token

        admin = read_admin_token(server.data_dir)
        server.kubectl("create", "serviceaccount", VIEWER)
        server.kubectl("create", "rolebinding", VIEWER, "--clusterrole=view", f"--serviceaccount=default:{VIEWER}")
        viewer = server.kubectl("create", "token", VIEWER).stdout.strip()
        yield server, admin, viewer


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(TIMEOUT)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert not errors, f"errors in the page: {errors}"


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def login(page, server, token: str) -> None:
    page.goto(f"{server.url}/dashboard/")
    page.fill("#token", token)
    page.click("#login-button")
    page.wait_for_selector("#nav:not([hidden])")


def test_static_files_are_public_but_no_data_without_credentials(cluster):
    from tests.e2e.harness import raw_request

    server, _, _ = cluster
    status, _, body = raw_request(server, "GET", "/dashboard/", auth=False)
    assert status == 200 and b"app.js" in body
    assert raw_request(server, "GET", "/api/v1/namespaces/default/pods", auth=False)[0] == 401
    assert raw_request(server, "POST", "/dashboard/api/diagnose", b"{}", auth=False)[0] == 401


def test_login(cluster, page):
    server, admin, _ = cluster
    page.goto(f"{server.url}/dashboard/")
    page.fill("#token", "not-a-token")
    page.click("#login-button")
    page.wait_for_selector("#login-error:not([hidden])")
    assert "Unauthorized" in page.inner_text("#login-error")
    shot(page, "login")
    page.fill("#token", admin)
    page.click("#login-button")
    page.wait_for_selector("#nav:not([hidden])")
    assert page.inner_text("#whoami") == "kubelite-admin"
    # the token lives in this tab's sessionStorage: a reload stays logged in, a new tab does not
    page.reload()
    page.wait_for_selector("#nav:not([hidden])")
    assert page.evaluate("Object.keys(sessionStorage)") == ["kubelite.dashboard.token"]


def test_a_revoked_token_goes_back_to_the_login_page(cluster, page):
    server = cluster[0]
    server.kubectl("create", "serviceaccount", "dash-temp")
    server.kubectl("create", "clusterrolebinding", "dash-temp", "--clusterrole=view", "--serviceaccount=default:dash-temp")
    try:
        login(page, server, server.kubectl("create", "token", "dash-temp").stdout.strip())
        page.goto(f"{server.url}/dashboard/#/nodes")  # polls metrics.k8s.io: a request every 10 s
        # view grants no nodes: the page says what the server said
        page.wait_for_selector("main p.error:not([hidden])")
        assert ('nodes is forbidden: User "system:serviceaccount:default:dash-temp" cannot list resource "nodes"'
                in page.inner_text("main p.error"))
        server.kubectl("delete", "serviceaccount", "dash-temp")  # its tokens stop authenticating
        page.wait_for_selector("#login-error:not([hidden])", timeout=30_000)
        assert "log in again" in page.inner_text("#login-error")
        assert page.evaluate("Object.keys(sessionStorage)") == []
    finally:
        server.kubectl("delete", "clusterrolebinding", "dash-temp")


def test_login_with_the_kubeconfigs_client_certificate(cluster, browser):
    """No token: the browser presents the kubeconfig's client certificate on the TLS connection."""
    import base64

    import yaml
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    server = cluster[0]
    user = yaml.safe_load(server.kubeconfig.read_text())["users"][0]["user"]
    cert = base64.b64decode(user["client-certificate-data"])
    cn = x509.load_pem_x509_certificate(cert).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    ctx = browser.new_context(ignore_https_errors=True, client_certificates=[
        {"origin": server.url, "cert": cert, "key": base64.b64decode(user["client-key-data"])}])
    try:
        pg = ctx.new_page()
        pg.set_default_timeout(TIMEOUT)
        pg.goto(f"{server.url}/dashboard/#/namespaces")
        pg.wait_for_selector('tr[data-namespace="default"]')
        assert pg.inner_text("#whoami") == cn
        assert pg.evaluate("Object.keys(sessionStorage)") == []
    finally:
        ctx.close()


def test_pod_goes_pending_to_running_live(cluster, page):
    server, admin, _ = cluster
    login(page, server, admin)
    page.goto(f"{server.url}/dashboard/#/pods/default")
    page.wait_for_selector("#pods, #pods-empty")
    # every phase the row shows, recorded in the page (the same document throughout: no reload)
    page.evaluate("""pod => {
        window.__seen = [];
        const note = () => {
            const row = document.querySelector(`tr[data-pod="${pod}"]`);
            const phase = row && row.dataset.phase;
            if (phase && window.__seen[window.__seen.length - 1] !== phase) window.__seen.push(phase);
        };
        new MutationObserver(note).observe(document.getElementById('main'), {subtree: true, childList: true, attributes: true});
    }""", POD)
    server.kubectl("apply", "-f", "-", input=json.dumps(POD_MANIFEST))
    page.wait_for_selector(f'tr[data-pod="{POD}"][data-phase="Running"]')
    seen = page.evaluate("window.__seen")
    assert seen[0] == "Pending" and seen[-1] == "Running", seen
    row = page.inner_text(f'tr[data-pod="{POD}"]')
    pod = get_pod(server, POD)
    assert pod is not None
    assert NODE in row and pod["status"]["podIP"] in row and "1/1" in row
    assert "phase-Running" in page.get_attribute(f'tr[data-pod="{POD}"]', "class")
    shot(page, "pods")


def _line_numbers(text: str) -> list[int]:
    return [int(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("dashboard line ")]


def test_pod_page_log_follows(cluster, page):
    server, admin, _ = cluster
    login(page, server, admin)
    page.goto(f"{server.url}/dashboard/#/pod/default/{POD}")
    page.wait_for_selector("#containers")
    page.wait_for_function("() => /dashboard line \\d+/.test(document.getElementById('log')?.textContent || '')")
    first = max(_line_numbers(page.inner_text("#log")))
    # new lines arrive on the same stream (follow=true), without a reload
    page.wait_for_function("""n => [...(document.getElementById('log').textContent.matchAll(/dashboard line (\\d+)/g))]
        .some(m => Number(m[1]) >= n)""", arg=first + 3)
    numbers = _line_numbers(page.inner_text("#log"))
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), "lines repeated or out of order"
    assert page.inner_text("#log-state") == "following"
    assert "main" in page.inner_text("#containers") and "Running" in page.inner_text("#containers")
    assert "ContainersReady\tTrue" in page.inner_text("#conditions")
    assert "Scheduled" in page.inner_text("#events") and "Started" in page.inner_text("#events")
    page.wait_for_function("() => /Running and Ready|Running/.test(document.getElementById('doctor').textContent)")
    # CPU/memory from metrics.k8s.io: the sparklines appear once the metrics server has a sample
    page.wait_for_selector("#cpu svg polyline", timeout=90_000)
    assert page.inner_text("#memory .spark-value").endswith("Mi")
    shot(page, "pod")


def test_nodes_and_namespaces(cluster, page):
    server, admin, _ = cluster
    login(page, server, admin)
    page.goto(f"{server.url}/dashboard/#/nodes")
    row = f'tr[data-node="{NODE}"]'
    page.wait_for_selector(row)
    assert "Ready" in page.inner_text(f"{row} .status")
    # requested: the pods bound to the node (dash-web asks for 100m and 32Mi)
    assert page.inner_text(f"{row} .req-cpu").startswith("100m")
    assert page.inner_text(f"{row} .req-mem").startswith("32Mi")
    # used: metrics.k8s.io's NodeMetrics (once the node was scraped twice)
    page.wait_for_function("s => /^\\d+m/.test(document.querySelector(s + ' .used-cpu').textContent)", arg=row,
                           timeout=90_000)
    assert page.inner_text(f"{row} .used-mem").split("Mi")[0].isdigit()
    shot(page, "nodes")
    page.click('#nav a[data-view="namespaces"]')
    page.wait_for_selector('tr[data-namespace="kube-system"]')
    assert "Active" in page.inner_text('tr[data-namespace="default"]')


def test_terminal_runs_date(cluster, page):
    server, admin, _ = cluster
    login(page, server, admin)
    page.goto(f"{server.url}/dashboard/#/pod/default/{POD}")
    page.click("#open-terminal")
    page.wait_for_selector('#terminal[data-state="open"]')
    page.click("#terminal")
    page.keyboard.type("date -u +DATE=%Y-%m-%d\n")
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    page.wait_for_function("d => (document.querySelector('#terminal .xterm-rows')?.textContent || '').includes('DATE=' + d)",
                           arg=today)
    shot(page, "terminal")


def test_apply_bad_manifest_shows_the_validation_message(cluster, page):
    server, admin, _ = cluster
    login(page, server, admin)
    page.goto(f"{server.url}/dashboard/#/apply")
    page.fill("#manifest", BAD_MANIFEST)
    page.click("#apply")
    page.wait_for_selector("#apply-result pre.error")
    shown = page.inner_text("#apply-result")
    # what kubectl's server-side apply prints for the same manifest
    k = server.kubectl("apply", "--server-side", "-f", "-", input=BAD_MANIFEST, check=False)
    assert k.returncode != 0
    assert 'Pod "dash-bad" is invalid: spec.containers[0].image: Required value' in k.stderr
    assert 'Error from server (Invalid): Pod "dash-bad" is invalid: spec.containers[0].image: Required value' in shown
    assert get_pod(server, "dash-bad") is None
    shot(page, "apply")
    # create: strict field validation, kubectl create's message
    unknown = BAD_MANIFEST.replace("dash-bad", "dash-unknown").replace("  - name: main\n",
                                                                         "  - name: main\n    image: x\n  containerz: []\n")
    page.select_option("#apply-mode", "create")
    page.fill("#manifest", unknown)
    page.click("#apply")
    page.wait_for_selector("#apply-result pre.error")
    assert ('Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.containerz"'
            in page.inner_text("#apply-result"))
    # a good manifest of two documents is applied, as kubectl prints it
    page.select_option("#apply-mode", "apply")
    page.fill("#manifest", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dash-cm\ndata:\n  a: b\n---\n"
                           "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dash-cm2\n")
    page.click("#apply")
    page.wait_for_function("() => document.querySelectorAll('#apply-result pre.ok').length === 2")
    assert page.inner_text("#apply-result").splitlines() == ["configmap/dash-cm serverside-applied",
                                                             "configmap/dash-cm2 serverside-applied"]
    cm = json.loads(server.kubectl("get", "configmap", "dash-cm", "-o", "json", "--show-managed-fields").stdout)
    assert cm["data"] == {"a": "b"}
    assert any(m["manager"] == "kubelite-dashboard" and m["operation"] == "Apply" for m in cm["metadata"]["managedFields"])
    server.kubectl("delete", "configmap", "dash-cm", "dash-cm2")


def _normalized(text: str) -> str:
    return re.sub(r"\d+", "N", text).strip()


def test_pod_page_shows_the_doctors_text(cluster, page):
    server, admin, _ = cluster
    sick = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dash-sick"},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [
                {"name": "main", "image": BUSYBOX, "command": ["sleep", "3600"],
                 "envFrom": [{"configMapRef": {"name": "dash-missing-config"}}]}]}}
    server.kubectl("apply", "-f", "-", input=json.dumps(sick))
    try:
        login(page, server, admin)
        page.goto(f"{server.url}/dashboard/#/pod/default/dash-sick")
        page.wait_for_function("() => /dash-missing-config/.test(document.getElementById('doctor').textContent)")

        def cli() -> str:
            p = subprocess.run([sys.executable, "-m", "kubelite", "doctor", "--kubeconfig", str(server.kubeconfig),
                                "dash-sick"], cwd=ROOT, capture_output=True, text=True, timeout=60)
            return p.stdout

        # the same words as `kubelite doctor dash-sick` (ages aside), once both saw the same events
        wait_until(lambda: _normalized(page.inner_text("#doctor")) == _normalized(cli()), 60, 1.0,
                   "the pod page's doctor text to match kubelite doctor's")
        assert "dash-missing-config" in cli()
    finally:
        server.kubectl("delete", "pod", "dash-sick", "--grace-period=1", "--wait=false")


def test_delete_shows_terminating_then_gone(cluster, page):
    server, admin, _ = cluster
    login(page, server, admin)
    # the pods list, in a second tab (which logs in too: the token is kept per tab), records the
    # statuses its row shows
    listing = page.context.new_page()
    listing.set_default_timeout(TIMEOUT)
    login(listing, server, admin)
    listing.goto(f"{server.url}/dashboard/#/pods/default")
    listing.wait_for_selector(f'tr[data-pod="{POD}"][data-status="Running"]')
    listing.evaluate("""pod => {
        window.__seen = [];
        new MutationObserver(() => {
            const row = document.querySelector(`tr[data-pod="${pod}"]`);
            const status = row ? row.dataset.status : 'gone';
            if (window.__seen[window.__seen.length - 1] !== status) window.__seen.push(status);
        }).observe(document.getElementById('main'), {subtree: true, childList: true, attributes: true});
    }""", POD)
    page.goto(f"{server.url}/dashboard/#/pod/default/{POD}")
    page.wait_for_selector('#pod-status[data-status="Running"]')
    page.click("#delete")
    page.wait_for_selector('#pod-status[data-status="Terminating"]')
    shot(page, "terminating")
    page.wait_for_selector("#gone")
    assert page.inner_text("#pod-status") == "Deleted"
    assert get_pod(server, POD) is None
    listing.wait_for_function("() => window.__seen[window.__seen.length - 1] === 'gone'")
    seen = listing.evaluate("window.__seen")
    while seen and seen[0] == "Running":  # (the list re-renders every few seconds for the ages)
        seen.pop(0)
    assert seen == ["Terminating", "gone"]


def test_view_user_has_no_terminal_and_is_refused_exec(cluster, page):
    server, _, viewer = cluster
    server.kubectl("apply", "-f", "-", input=json.dumps({**POD_MANIFEST, "metadata": {"name": "dash-view"}}))
    wait_until(lambda: ((get_pod(server, "dash-view") or {}).get("status") or {}).get("phase") == "Running",
               90, 0.5, "dash-view Running")
    socket_errors: list[str] = []
    page.on("websocket", lambda ws: ws.on("socketerror", lambda e: socket_errors.append(str(e))))
    login(page, server, viewer)
    assert page.inner_text("#whoami") == f"system:serviceaccount:default:{VIEWER}"
    page.goto(f"{server.url}/dashboard/#/pod/default/dash-view")
    page.wait_for_selector('#pod-status[data-status="Running"]')
    page.wait_for_function("() => /may not exec/.test(document.getElementById('terminal-pane').textContent)")
    assert not page.is_visible("#open-terminal")
    assert not page.is_visible("#delete")
    # the log is readable (view may get pods/log)
    page.wait_for_function("() => /dashboard line \\d+/.test(document.getElementById('log')?.textContent || '')")
    # forcing the terminal: the exec request is refused by RBAC
    page.goto(f"{server.url}/dashboard/#/pod/default/dash-view?terminal=1")
    page.wait_for_selector("#terminal-error:not([hidden])")
    assert page.get_attribute("#terminal-error", "data-code") == "403"
    msg = page.inner_text("#terminal-error")
    assert (f'pods "dash-view" is forbidden: User "system:serviceaccount:default:{VIEWER}" cannot create resource '
            '"pods/exec" in API group "" in the namespace "default"') in msg
    shot(page, "viewer")
    # and the WebSocket itself (the viewer's token in its subprotocol) was answered 403
    status = page.evaluate("""async ([pod, token]) => {
        const b64 = btoa(token).replace(/\\+/g, '-').replace(/\\//g, '_').replace(/=+$/, '');
        const ws = new WebSocket(`wss://${location.host}/api/v1/namespaces/default/pods/${pod}/exec?command=date&stdout=true`,
            ['v5.channel.k8s.io', 'base64url.bearer.authorization.k8s.io.' + b64]);
        return await new Promise(r => { ws.onopen = () => r('open'); ws.onclose = () => r('closed'); });
    }""", ["dash-view", viewer])
    assert status == "closed"
    wait_until(lambda: any("403" in e for e in socket_errors), 10, 0.1, "a 403 on the WebSocket handshake")
    server.kubectl("delete", "pod", "dash-view", "--grace-period=1", "--wait=false")
