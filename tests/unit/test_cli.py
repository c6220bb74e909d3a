"""The `kubelite` command line: every flag has help, --version, --log-level, and the README
starts with the two commands that set everything up."""

from __future__ import annotations

import argparse
import logging
import re
from pathlib import Path

import pytest

from kubelite.cli import common
from kubelite.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def _walk(p: argparse.ArgumentParser, path: str = "kubelite"):
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            helped = {id(action.choices[a.dest]) for a in action._choices_actions if a.help}
            for name, child in {id(c): (n, c) for n, c in reversed(action.choices.items())}.values():
                yield path, name, "sub-command", id(child) in helped  # aliases share the parser
                yield from _walk(child, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            name = "/".join(action.option_strings) or action.dest
            # help=argparse.SUPPRESS hides a flag on purpose; help=None is a flag nobody explained
            yield path, name, "flag" if action.option_strings else "argument", bool(action.help)


def test_every_flag_and_sub_command_has_help():
    missing = [f"{path} {name} ({what})" for path, name, what, ok in _walk(build_parser()) if not ok]
    assert missing == []


def test_the_walk_sees_every_sub_command():
    seen = {f"{path} {name}" for path, name, what, _ in _walk(build_parser()) if what == "sub-command"}
    assert {"kubelite server", "kubelite agent", "kubelite kubeconfig", "kubelite kubeconfig create",
            "kubelite uninstall", "kubelite token", "kubelite images", "kubelite certs"} <= seen


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out.strip()
    assert re.fullmatch(r"kubelite v\d+\.\d+\.\d+\S* \(Kubernetes v1\.37\.\d+ compatible\)", out), out
    from importlib import metadata

    assert out.startswith(f"kubelite v{metadata.version('kubelite')} ")


@pytest.mark.parametrize("argv", [
    ["--log-level", "debug", "uninstall", "--data-dir", "X"],
    ["uninstall", "--log-level", "debug", "--data-dir", "X"],
    ["--log-level=error", "uninstall", "--log-level=debug", "--data-dir", "X"],
])
def test_log_level_before_or_after_the_sub_command(argv, tmp_path, monkeypatch, restore_logging):
    argv = [str(tmp_path) if a == "X" else a for a in argv]
    seen = []
    monkeypatch.setattr("kubelite.cli.uninstall.uninstall",
                        lambda data_dir, purge: (seen.append(logging.getLogger("kubelite").getEffectiveLevel()),
                                                 (0, []))[1])
    assert main(argv) == 0
    assert seen == [logging.DEBUG]


def test_log_level_is_checked(capsys, restore_logging):
    with pytest.raises(SystemExit):
        main(["--log-level", "loud", "uninstall"])
    assert "invalid choice: 'loud'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="invalid choice: 'loud'"):
        main(["--log-level", "loud", "kubectl", "get", "ns"])
    assert common.take_log_level(["--log-level", "warning", "kubectl", "version"]) == ("warning",
                                                                                     ["kubectl", "version"])


def test_readme_starts_with_make_run_and_make_test():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```(?:sh|bash|console)?\n(.*?)```", text, re.S)
    commands = [ln.split("#")[0].strip() for b in blocks for ln in b.splitlines() if ln.split("#")[0].strip()]
    assert commands[:2] == ["make run", "make test"]


def test_cluster_dns_flags(tmp_path, capsys):
    from kubelite.config import ServerConfig

    assert ServerConfig().cluster_dns_ip == "10.43.0.10"  # k3s: the 10th address of --service-cidr
    assert ServerConfig(service_cidr="10.96.0.0/12").cluster_dns_ip == "10.96.0.10"
    assert ServerConfig(cluster_dns="10.43.0.53").cluster_dns_ip == "10.43.0.53"
    args = build_parser().parse_args(["server", "--cluster-dns", "10.43.0.53", "--cluster-domain", "k8s.test",
                                      "--disable", "coredns"])
    assert (args.cluster_dns, args.cluster_domain, args.disable) == ("10.43.0.53", "k8s.test", ["coredns"])
    assert main(["server", "--data-dir", str(tmp_path), "--disable-agent", "--cluster-dns", "10.44.0.10"]) == 1
    assert "--cluster-dns 10.44.0.10: the provided IP (10.44.0.10) is not in the valid range" in capsys.readouterr().err
    assert main(["agent", "--data-dir", str(tmp_path), "--cluster-dns", "nope"]) == 1
    assert "--cluster-dns: invalid IP address 'nope'" in capsys.readouterr().err
