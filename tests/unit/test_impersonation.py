"""Impersonation modes and messages, against a rule-table authorizer."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from kubelite.apiserver.auth import UserInfo
from kubelite.apiserver.authorizer import ALLOW, NO_OPINION, Attributes
from kubelite.apiserver.impersonation import Refused, impersonate, wanted_user

ALICE = UserInfo("alice", ("devs", "system:authenticated"))
GET_PODS = Attributes(user=ALICE, verb="list", namespace="default", api_version="v1", resource="pods")


class Rules:
    """Allows exactly the (verb, group, resource, name) tuples given ("*" matches anything)."""

    def __init__(self, *allowed: tuple[str, str, str, str]) -> None:
        self.allowed = allowed
        self.asked: list[tuple[str, str, str, str, str]] = []

    async def authorize(self, a: Attributes) -> tuple[str, str]:
        self.asked.append((a.verb, a.api_group, a.resource, a.subresource, a.name))
        for verb, group, resource, name in self.allowed:
            if verb == a.verb and group in ("*", a.api_group) and resource in ("*", a.resource) and \
                    name in ("*", a.name):
                return ALLOW, ""
        return NO_OPINION, ""


def headers_request(*pairs: tuple[str, str]) -> web.Request:
    return make_mocked_request("GET", "/api/v1/namespaces/default/pods", headers=CIMultiDict(pairs))


def test_headers_without_a_user_are_a_bad_request():
    assert wanted_user(headers_request()) is None
    with pytest.raises(Refused) as ei:
        wanted_user(headers_request(("Impersonate-Group", "g1")))
    assert ei.value.err.code == 400
    assert ei.value.err.message == ('requested &user.DefaultInfo{Name:"", UID:"", Groups:[]string{"g1"}, '
                                    'Extra:map[string][]string(nil)} without impersonating a user name')


def test_extra_headers_are_lowercased_and_unescaped():
    w = wanted_user(headers_request(("Impersonate-User", "bob"), ("Impersonate-Extra-Acme.io%2fReason", "x"),
                                    ("Impersonate-Extra-acme.io%2Freason", "y")))
    assert w is not None and w.extra == {"acme.io/reason": ["x", "y"]}


async def test_legacy_impersonation_of_a_user_and_groups():
    rules = Rules(("impersonate", "", "users", "bob"), ("impersonate", "", "groups", "*"))
    w = wanted_user(headers_request(("Impersonate-User", "bob"), ("Impersonate-Group", "qa")))
    user, constraint = await impersonate(rules, ALICE, GET_PODS, w)
    assert (user.name, user.groups, constraint) == ("bob", ("qa", "system:authenticated"), "")
    # the constrained user-info mode was asked first, on the request itself
    assert rules.asked[0] == ("impersonate-on:user-info:list", "", "pods", "", "")


async def test_constrained_user_info_mode():
    rules = Rules(("impersonate-on:user-info:list", "", "pods", "*"),
                  ("impersonate:user-info", "authentication.k8s.io", "users", "bob"))
    user, constraint = await impersonate(rules, ALICE, GET_PODS, wanted_user(headers_request(
        ("Impersonate-User", "bob"))))
    assert (user.name, constraint) == ("bob", "impersonate:user-info")


async def test_service_account_gets_its_groups():
    rules = Rules(("impersonate", "", "serviceaccounts", "builder"))
    user, _ = await impersonate(rules, ALICE, GET_PODS, wanted_user(headers_request(
        ("Impersonate-User", "system:serviceaccount:ci:builder"))))
    assert user.groups == ("system:serviceaccounts", "system:serviceaccounts:ci", "system:authenticated")


async def test_anonymous_gets_unauthenticated():
    rules = Rules(("impersonate", "", "users", "system:anonymous"))
    user, _ = await impersonate(rules, ALICE, GET_PODS, wanted_user(headers_request(
        ("Impersonate-User", "system:anonymous"))))
    assert user.groups == ("system:unauthenticated",)


async def test_refusal_is_the_first_modes_error():
    with pytest.raises(Refused) as ei:
        await impersonate(Rules(), ALICE, GET_PODS, wanted_user(headers_request(("Impersonate-User", "bob"))))
    assert ei.value.err.code == 403
    assert ei.value.err.message == ('pods is forbidden: User "alice" cannot impersonate-on:user-info:list resource '
                                    '"pods" in API group "" in the namespace "default"')


async def test_legacy_refusal_when_no_constrained_mode_applies_first():
    rules = Rules(("impersonate-on:user-info:list", "", "pods", "*"))
    with pytest.raises(Refused) as ei:
        await impersonate(rules, ALICE, GET_PODS, wanted_user(headers_request(("Impersonate-User", "bob"))))
    assert ei.value.err.message == ('users.authentication.k8s.io "bob" is forbidden: User "alice" cannot '
                                    'impersonate:user-info resource "users" in API group "authentication.k8s.io" '
                                    'at the cluster scope')


async def test_constrained_modes_refuse_masters_and_groups_of_service_accounts():
    rules = Rules(("impersonate-on:user-info:list", "", "pods", "*"),
                  ("impersonate:user-info", "authentication.k8s.io", "*", "*"))
    with pytest.raises(Refused) as ei:
        await impersonate(rules, ALICE, GET_PODS, wanted_user(headers_request(
            ("Impersonate-User", "bob"), ("Impersonate-Group", "system:masters"))))
    assert ei.value.err.message.endswith("impersonating the system:masters group is not allowed")
    # legacy may still allow it
    rules = Rules(("impersonate", "", "users", "bob"), ("impersonate", "", "groups", "system:masters"))
    user, _ = await impersonate(rules, ALICE, GET_PODS, wanted_user(headers_request(
        ("Impersonate-User", "bob"), ("Impersonate-Group", "system:masters"))))
    assert "system:masters" in user.groups


async def test_uid_and_extra_are_checked_one_by_one():
    rules = Rules(("impersonate", "", "users", "bob"), ("impersonate", "authentication.k8s.io", "uids", "u-1"),
                  ("impersonate", "authentication.k8s.io", "userextras", "x"))
    w = wanted_user(headers_request(("Impersonate-User", "bob"), ("Impersonate-Uid", "u-1"),
                                    ("Impersonate-Extra-scopes", "x")))
    user, _ = await impersonate(rules, ALICE, GET_PODS, w)
    assert (user.uid, user.extra) == ("u-1", {"scopes": ["x"]})
    assert ("impersonate", "authentication.k8s.io", "userextras", "scopes", "x") in rules.asked


async def test_node_impersonation_needs_the_nodes_resource():
    rules = Rules(("impersonate-on:arbitrary-node:list", "", "pods", "*"),
                  ("impersonate:arbitrary-node", "authentication.k8s.io", "nodes", "n1"))
    user, constraint = await impersonate(rules, ALICE, GET_PODS, wanted_user(headers_request(
        ("Impersonate-User", "system:node:n1"))))
    assert (user.groups, constraint) == (("system:nodes", "system:authenticated"), "impersonate:arbitrary-node")
