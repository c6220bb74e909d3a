"""The dashboard's server side: its static files (public), the doctor's text (authenticated
users only) and the WebSocket bearer subprotocol browsers log in with."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from kubelite.apiserver.app import status_errors
from kubelite.apiserver.auth import USER, Authenticator, BadCredential, auth_middleware, websocket_bearer
from kubelite.dashboard import dashboard_middleware

FIXTURES = Path(__file__).parent / "doctor_fixtures"
TOKEN = "dash-token-0123456789"


def _protocol(token: str) -> str:
    return "base64url.bearer.authorization.k8s.io." + base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


@pytest.fixture
def built(tmp_path: Path) -> Path:
    root = tmp_path / "dashboard"
    root.mkdir()
    (root / "index.html").write_text("<!doctype html><title>kubelite</title>")
    (root / "app.js").write_text("console.log('hi')")
    (root / ".hidden").write_text("secret")
    (tmp_path / "outside.txt").write_text("outside")
    return root


def _app(tmp_path: Path, root: Path) -> web.Application:
    tokens = tmp_path / "tokens.csv"
    tokens.write_text(f'{TOKEN},alice,uid-alice,"devs"\n')
    authn = Authenticator(tokens)

    async def echo(request: web.Request) -> web.StreamResponse:
        return web.json_response({"user": request[USER].name,
                                  "protocols": request.headers.getall("Sec-WebSocket-Protocol", [])})

    app = web.Application(middlewares=[status_errors, dashboard_middleware(authn, root), auth_middleware(authn)])
    app.router.add_route("*", "/{rest:.*}", echo)
    return app


async def test_static_files_are_public_and_confined(tmp_path: Path, built: Path) -> None:
    async with TestClient(TestServer(_app(tmp_path, built))) as c:
        r = await c.get("/dashboard", allow_redirects=False)
        assert r.status == 301 and r.headers["Location"] == "/dashboard/"
        r = await c.get("/dashboard/")
        assert r.status == 200 and "kubelite" in await r.text()
        assert r.headers["Content-Type"].startswith("text/html")
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        r = await c.get("/dashboard/app.js")
        assert r.status == 200 and "javascript" in r.headers["Content-Type"]
        for path in ("/dashboard/.hidden", "/dashboard/missing.js", "/dashboard/..%2foutside.txt",
                     "/dashboard/%2e%2e%2foutside.txt"):
            assert (await c.get(path)).status == 404, path
        assert (await c.post("/dashboard/app.js")).status == 405
        # anything else still needs credentials
        assert (await c.get("/api/v1/pods")).status == 401


async def test_not_built_says_how(tmp_path: Path) -> None:
    async with TestClient(TestServer(_app(tmp_path, tmp_path / "none"))) as c:
        r = await c.get("/dashboard/")
        assert r.status == 503 and "make setup" in await r.text()


async def test_diagnose_needs_a_user_and_answers_with_doctors_text(tmp_path: Path, built: Path) -> None:
    evidence = json.loads((FIXTURES / "e2e-recorded.json").read_text())["dr-crash"]
    async with TestClient(TestServer(_app(tmp_path, built))) as c:
        r = await c.post("/dashboard/api/diagnose", json=evidence)
        assert r.status == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        r = await c.post("/dashboard/api/diagnose", json=evidence, headers=auth)
        assert r.status == 200, await r.text()
        body = await r.json()
        from kubelite.doctor import Evidence, diagnose

        assert body["text"] == diagnose(Evidence.from_dict(evidence)).text()
        r = await c.post("/dashboard/api/diagnose", data=b"[1]", headers={**auth, "Content-Type": "application/json"})
        assert r.status == 400 and (await r.json())["kind"] == "Status"
        r = await c.post("/dashboard/api/diagnose", data=json.dumps(evidence), headers={**auth, "Content-Type": "text/plain"})
        assert r.status == 415


def _ws_request(*protocols: str) -> web.Request:
    from aiohttp.test_utils import make_mocked_request

    headers = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Protocol": ", ".join(protocols)}
    return make_mocked_request("GET", "/api/v1/namespaces/default/pods/p/exec", headers=headers)


def test_websocket_bearer_protocol() -> None:
    assert websocket_bearer(_ws_request(_protocol(TOKEN), "v5.channel.k8s.io")) == (TOKEN, ["v5.channel.k8s.io"])
    assert websocket_bearer(_ws_request("v5.channel.k8s.io")) is None
    for bad in ((_protocol(TOKEN),), (_protocol(TOKEN), _protocol(TOKEN), "v4.channel.k8s.io"),
                ("base64url.bearer.authorization.k8s.io.***", "v4.channel.k8s.io")):
        with pytest.raises(BadCredential):
            websocket_bearer(_ws_request(*bad))


async def test_websocket_bearer_authenticates_and_is_removed(tmp_path: Path, built: Path) -> None:
    async with TestClient(TestServer(_app(tmp_path, built))) as c:
        headers = {"Upgrade": "websocket", "Connection": "Upgrade",
                   "Sec-WebSocket-Protocol": f"v5.channel.k8s.io, {_protocol(TOKEN)}, v4.channel.k8s.io"}
        r = await c.get("/api/v1/namespaces/default/pods/p/exec", headers=headers)
        body = await r.json()
        assert body == {"user": "alice", "protocols": ["v5.channel.k8s.io, v4.channel.k8s.io"]}
        headers["Sec-WebSocket-Protocol"] = f"v5.channel.k8s.io, {_protocol('wrong')}"
        assert (await c.get("/api/v1/namespaces/default/pods/p/exec", headers=headers)).status == 401
