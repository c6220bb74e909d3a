"""The package layering (ARCHITECTURE.md) holds: the API server knows no component, the node
agent knows no API server internals, and only the CLI starts the launcher."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "kubelite"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def _offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted((PKG / package).rglob("*.py")):
        for mod in sorted(_imports(path)):
            if any(mod == f or mod.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(ROOT)} imports {mod}")
    return bad


def test_apiserver_imports_no_component():
    assert _offenders("apiserver", ("kubelite.cli", "kubelite.controllers", "kubelite.agent", "kubelite.auth",
                                    "kubelite.admission", "kubelite.scheduler", "kubelite.launcher")) == []


def test_agent_imports_nothing_of_the_api_server():
    assert _offenders("agent", ("kubelite.apiserver", "kubelite.auth", "kubelite.controllers", "kubelite.admission",
                                "kubelite.launcher")) == []


def test_agent_does_not_load_the_api_server_even_indirectly():
    """Every agent module imported in a fresh interpreter leaves no kubelite.apiserver module loaded."""
    mods = sorted("kubelite.agent." + p.stem for p in (PKG / "agent").glob("*.py") if p.stem != "__init__")
    code = ("import importlib, sys\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            "print('\\n'.join(sorted(m for m in sys.modules if m.startswith(('kubelite.apiserver', 'kubelite.auth',"
            " 'kubelite.controllers', 'kubelite.admission')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == ""


def test_only_the_cli_starts_the_launcher():
    offenders = []
    for package in ("api", "apiserver", "kinds", "store", "client", "controllers", "agent", "auth", "admission",
                    "scheduler", "tls", "net"):
        offenders += _offenders(package, ("kubelite.launcher",))
    assert offenders == []


def test_kinds_and_client_import_no_component():
    components = ("kubelite.cli", "kubelite.controllers", "kubelite.agent", "kubelite.auth", "kubelite.admission",
                  "kubelite.scheduler", "kubelite.launcher")
    assert _offenders("kinds", components) == []
    assert _offenders("client", (*components, "kubelite.apiserver")) == []


def test_devcluster_drives_processes_not_components():
    """kubelite/devcluster starts `kubelite server` and `kubelite agent` as processes; the CLI
    imports it, never the other way round."""
    assert _offenders("devcluster", ("kubelite.cli", "kubelite.launcher", "kubelite.apiserver",
                                     "kubelite.controllers", "kubelite.scheduler")) == []
