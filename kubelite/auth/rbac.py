"""RBAC: rule evaluation (plugin/pkg/auth/authorizer/rbac/rbac.go), role resolution
(pkg/registry/rbac/validation/rule.go) and privilege-escalation checks
(ConfirmNoEscalation, Covers, CompactRules).

Roles and bindings are read from informers (watch-fed in-memory caches); the rules of a
user are memoised per (user, namespace) and dropped whenever any RBAC object changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubelite.apiserver.authorizer import ALLOW, NO_OPINION, Attributes, Rules

GROUP = "rbac.authorization.k8s.io"
ALL = "*"


# --------------------------------------------------------------------------- rule matching


def _lst(rule: dict[str, Any], key: str) -> list[str]:
    v = rule.get(key)
    return [x for x in v if isinstance(x, str)] if isinstance(v, list) else []


def verb_matches(rule: dict[str, Any], verb: str) -> bool:
    return any(v == ALL or v == verb for v in _lst(rule, "verbs"))


def api_group_matches(rule: dict[str, Any], group: str) -> bool:
    return any(g == ALL or g == group for g in _lst(rule, "apiGroups"))


def resource_matches(rule: dict[str, Any], combined: str, subresource: str) -> bool:
    for r in _lst(rule, "resources"):
        if r == ALL or r == combined:
            return True
        if subresource and len(r) == len(subresource) + 2 and r.startswith("*/") and r.endswith(subresource):
            return True
    return False


def resource_name_matches(rule: dict[str, Any], name: str) -> bool:
    names = _lst(rule, "resourceNames")
    return not names or name in names


def non_resource_url_matches(rule: dict[str, Any], url: str) -> bool:
    for u in _lst(rule, "nonResourceURLs"):
        if u == ALL or u == url:
            return True
        if u.endswith("*") and url.startswith(u.rstrip("*")):
            return True
    return False


def rule_allows(a: Attributes, rule: dict[str, Any]) -> bool:
    if a.resource_request:
        combined = a.resource + ("/" + a.subresource if a.subresource else "")
        return (verb_matches(rule, a.verb) and api_group_matches(rule, a.api_group)
                and resource_matches(rule, combined, a.subresource) and resource_name_matches(rule, a.name))
    return verb_matches(rule, a.verb) and non_resource_url_matches(rule, a.path)


def rules_allow(a: Attributes, rules: list[dict[str, Any]]) -> bool:
    return any(rule_allows(a, r) for r in rules)


# --------------------------------------------------------------------------- subjects


def service_account_username(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def applies_to_user(user: Any, subject: dict[str, Any], namespace: str) -> bool:
    kind = subject.get("kind")
    name = subject.get("name", "")
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in (user.groups or ())
    if kind == "ServiceAccount":
        sa_ns = subject.get("namespace") or namespace
        if not sa_ns:
            return False
        return service_account_username(sa_ns, name) == user.name
    return False


def _applies(user: Any, binding: dict[str, Any], namespace: str) -> bool:
    subjects = binding.get("subjects")
    return isinstance(subjects, list) and any(
        isinstance(s, dict) and applies_to_user(user, s, namespace) for s in subjects)


# --------------------------------------------------------------------------- resolution


@dataclass
class _Sources:
    roles: Any  # Informer of Role
    cluster_roles: Any
    role_bindings: Any
    cluster_role_bindings: Any

    def generation(self) -> tuple[int, int, int, int]:
        return (self.roles.generation, self.cluster_roles.generation, self.role_bindings.generation,
                self.cluster_role_bindings.generation)


class RuleResolver:
    """validation.DefaultRuleResolver over informers."""

    def __init__(self, roles: Any, cluster_roles: Any, role_bindings: Any, cluster_role_bindings: Any) -> None:
        self.src = _Sources(roles, cluster_roles, role_bindings, cluster_role_bindings)
        self._cache: dict[tuple[str, tuple[str, ...], str], tuple[list[dict[str, Any]], list[str]]] = {}
        self._gen: tuple[int, int, int, int] | None = None

    async def wait_synced(self) -> None:
        for inf in (self.src.roles, self.src.cluster_roles, self.src.role_bindings, self.src.cluster_role_bindings):
            await inf.wait_synced()

    def role_reference_rules(self, role_ref: dict[str, Any], namespace: str) -> tuple[list[dict[str, Any]], str]:
        """(rules, error) of a RoleRef seen from a binding in ``namespace``."""
        kind, name = role_ref.get("kind"), role_ref.get("name", "")
        if kind == "Role":
            role = self.src.roles.get(namespace, name)
            if role is None:
                return [], f'role.{GROUP} "{name}" not found'
            return _rules_of(role), ""
        if kind == "ClusterRole":
            role = self.src.cluster_roles.get("", name)
            if role is None:
                return [], f'clusterrole.{GROUP} "{name}" not found'
            return _rules_of(role), ""
        return [], f"unsupported role reference kind: {kind!r}"

    def rules_for(self, user: Any, namespace: str) -> tuple[list[dict[str, Any]], list[str]]:
        """(rules, errors): every rule that applies to ``user`` in ``namespace`` (cluster-wide when "")."""
        gen = self.src.generation()
        if gen != self._gen:
            self._cache.clear()
            self._gen = gen
        key = (user.name, tuple(user.groups or ()), namespace)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        rules: list[dict[str, Any]] = []
        errs: list[str] = []
        for crb in self.src.cluster_role_bindings.list():
            if not _applies(user, crb, ""):
                continue
            r, err = self.role_reference_rules(crb.get("roleRef") or {}, "")
            rules += r
            if err:
                errs.append(err)
        if namespace:
            for rb in self.src.role_bindings.list(namespace):
                if not _applies(user, rb, namespace):
                    continue
                r, err = self.role_reference_rules(rb.get("roleRef") or {}, namespace)
                rules += r
                if err:
                    errs.append(err)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = (rules, errs)
        return rules, errs


def _rules_of(role: dict[str, Any]) -> list[dict[str, Any]]:
    rules = role.get("rules")
    return [r for r in rules if isinstance(r, dict)] if isinstance(rules, list) else []


class RBACAuthorizer:
    def __init__(self, resolver: RuleResolver) -> None:
        self.resolver = resolver

    async def authorize(self, a: Attributes) -> tuple[str, str]:
        await self.resolver.wait_synced()
        rules, errs = self.resolver.rules_for(a.user, a.namespace)
        if rules_allow(a, rules):
            return ALLOW, ""
        reason = ""
        if errs:
            reason = "RBAC: " + _aggregate(errs)
        return NO_OPINION, reason

    async def rules_for(self, user: Any, namespace: str) -> Rules:
        await self.resolver.wait_synced()
        rules, errs = self.resolver.rules_for(user, namespace)
        out = Rules(incomplete=bool(errs), errors=list(errs))
        for r in rules:
            if _lst(r, "nonResourceURLs"):
                out.non_resource_rules.append({"verbs": _lst(r, "verbs"),
                                               "nonResourceURLs": _lst(r, "nonResourceURLs")})
            else:
                rr: dict[str, Any] = {"verbs": _lst(r, "verbs")}
                for k in ("apiGroups", "resources", "resourceNames"):
                    if _lst(r, k) or k != "resourceNames":
                        rr[k] = _lst(r, k)
                out.resource_rules.append(rr)
        return out


def _aggregate(msgs: list[str]) -> str:
    """utilerrors.NewAggregate(...).Error()."""
    uniq: list[str] = []
    for m in msgs:
        if m not in uniq:
            uniq.append(m)
    if len(uniq) == 1:
        return uniq[0]
    return "[" + ", ".join(uniq) + "]"


# --------------------------------------------------------------------------- escalation


def breakdown_rule(rule: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    verbs = _lst(rule, "verbs")
    names = _lst(rule, "resourceNames")
    for g in _lst(rule, "apiGroups"):
        for r in _lst(rule, "resources"):
            for v in verbs:
                if names:
                    out += [{"apiGroups": [g], "resources": [r], "verbs": [v], "resourceNames": [n]} for n in names]
                else:
                    out.append({"apiGroups": [g], "resources": [r], "verbs": [v]})
    for u in _lst(rule, "nonResourceURLs"):
        for v in verbs:
            out.append({"nonResourceURLs": [u], "verbs": [v]})
    return out


def _has_all(have: list[str], want: list[str]) -> bool:
    return set(want) <= set(have)


def _resource_covers_all(have: list[str], want: list[str]) -> bool:
    if ALL in have or _has_all(have, want):
        return True
    for path in want:
        if path in have:
            continue
        if "/" not in path:
            return False
        if "*/" + path.split("/", 1)[1] not in have:
            return False
    return True


def _non_resource_url_covers(owner: str, sub: str) -> bool:
    return owner == sub or (owner.endswith("*") and sub.startswith(owner.rstrip("*")))


def rule_covers(owner: dict[str, Any], sub: dict[str, Any]) -> bool:
    ov, og, on = _lst(owner, "verbs"), _lst(owner, "apiGroups"), _lst(owner, "resourceNames")
    sn = _lst(sub, "resourceNames")
    verb_ok = ALL in ov or _has_all(ov, _lst(sub, "verbs"))
    group_ok = ALL in og or _has_all(og, _lst(sub, "apiGroups"))
    res_ok = _resource_covers_all(_lst(owner, "resources"), _lst(sub, "resources"))
    url_ok = all(any(_non_resource_url_covers(o, p) for o in _lst(owner, "nonResourceURLs"))
                 for p in _lst(sub, "nonResourceURLs"))
    name_ok = (not on) if not sn else (not on or _has_all(on, sn))
    return verb_ok and group_ok and res_ok and name_ok and url_ok


def covers(owner_rules: list[dict[str, Any]], requested: list[dict[str, Any]]) -> tuple[bool, list[dict[str, Any]]]:
    missing: list[dict[str, Any]] = []
    for rule in requested:
        for sub in breakdown_rule(rule):
            if not any(rule_covers(o, sub) for o in owner_rules):
                missing.append(sub)
    return not missing, missing


def compact_rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    compacted: list[dict[str, Any]] = []
    simple: dict[tuple[str, str, bool, str], dict[str, Any]] = {}
    for r in rules:
        names = _lst(r, "resourceNames")
        groups, res = _lst(r, "apiGroups"), _lst(r, "resources")
        is_simple = (len(names) <= 1 and not _lst(r, "nonResourceURLs") and len(groups) == 1 and len(res) == 1)
        if not is_simple:
            compacted.append(r)
            continue
        key = (groups[0], res[0], bool(names), names[0] if names else "")
        if key in simple:
            simple[key]["verbs"] = _lst(simple[key], "verbs") + _lst(r, "verbs")
        else:
            simple[key] = {k: list(v) for k, v in r.items() if isinstance(v, list)}
    return compacted + list(simple.values())


def _go_quote_list(items: list[str]) -> str:
    """fmt's %q of a []string: ["a" "b"]."""
    import json

    return "[" + " ".join(json.dumps(i) for i in items) + "]"


def compact_string(rule: dict[str, Any]) -> str:
    parts = []
    for key, label in (("apiGroups", "APIGroups"), ("resources", "Resources"),
                       ("nonResourceURLs", "NonResourceURLs"), ("resourceNames", "ResourceNames"),
                       ("verbs", "Verbs")):
        v = _lst(rule, key)
        if v:
            parts.append(f"{label}:{_go_quote_list(v)}")
    return "{" + ", ".join(parts) + "}"


def confirm_no_escalation(resolver: RuleResolver, user: Any, namespace: str,
                          rules: list[dict[str, Any]]) -> str:
    """'' when ``user`` holds every permission in ``rules`` in ``namespace``; else upstream's message."""
    owner, errs = resolver.rules_for(user, namespace)
    ok, missing = covers(owner, rules)
    if ok:
        return ""
    descs = sorted({compact_string(m) for m in compact_rules(missing)})
    msg = (f"user \"{user.name}\" (groups={_go_quote_list(list(user.groups or ()))}) is attempting to grant RBAC "
           f"permissions not currently held:\n" + "\n".join(descs))
    if errs:
        msg += f"; resolution errors: [{' '.join(errs)}]"
    return msg


__all__ = ["RBACAuthorizer", "RuleResolver", "applies_to_user", "breakdown_rule", "compact_rules",
           "compact_string", "confirm_no_escalation", "covers", "rule_allows", "rule_covers", "rules_allow",
           "service_account_username"]
