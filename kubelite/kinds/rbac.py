"""rbac.authorization.k8s.io/v1 Role, ClusterRole, RoleBinding, ClusterRoleBinding
(pkg/registry/rbac, pkg/apis/rbac/validation, printers for the tables)."""

from __future__ import annotations

from typing import Any

from kubelite.api import field as f
from kubelite.api.field import FieldError, Path
from kubelite.api.meta import is_valid_path_segment_name, name_is_dns_subdomain
from kubelite.api.selectors import validate_label_selector
from kubelite.kinds._printing import age, age_column, get, meta, name_column
from kubelite.kinds.base import Column, Kind, Obj, Strategy

GROUP = "rbac.authorization.k8s.io"


def validate_rbac_name(name: str, prefix: bool) -> list[str]:
    """ValidateRBACName = path.IsValidPathSegmentName."""
    return is_valid_path_segment_name(name)


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def validate_policy_rule(rule: Any, namespaced: bool, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    rule = rule if isinstance(rule, dict) else {}
    if not _list(rule.get("verbs")):
        errs.append(f.required(path.child("verbs"), "verbs must contain at least one value"))
    urls = _list(rule.get("nonResourceURLs"))
    if urls:
        if namespaced:
            errs.append(f.invalid(path.child("nonResourceURLs"), urls, "namespaced rules cannot apply to non-resource URLs"))
        if _list(rule.get("apiGroups")) or _list(rule.get("resources")) or _list(rule.get("resourceNames")):
            errs.append(f.invalid(path.child("nonResourceURLs"), urls,
                                  "rules cannot apply to both regular resources and non-resource URLs"))
        return errs
    if not _list(rule.get("apiGroups")):
        errs.append(f.required(path.child("apiGroups"), "resource rules must supply at least one api group"))
    if not _list(rule.get("resources")):
        errs.append(f.required(path.child("resources"), "resource rules must supply at least one resource"))
    return errs


def _validate_rules(obj: Obj, namespaced: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, rule in enumerate(_list(obj.get("rules"))):
        errs += validate_policy_rule(rule, namespaced, Path("rules").index(i))
    return errs


def validate_subject(subject: Any, namespaced: bool, path: Path) -> list[FieldError]:
    errs: list[FieldError] = []
    s = subject if isinstance(subject, dict) else {}
    name, kind, group = s.get("name") or "", s.get("kind") or "", s.get("apiGroup") or ""
    if not name:
        errs.append(f.required(path.child("name"), ""))
    if kind == "ServiceAccount":
        if name:
            errs += [f.invalid(path.child("name"), name, m) for m in name_is_dns_subdomain(name, False)]
        if group:
            errs.append(f.not_supported(path.child("apiGroup"), group, [""]))
        if not namespaced and not s.get("namespace"):
            errs.append(f.required(path.child("namespace"), ""))
    elif kind in ("User", "Group"):
        if group != GROUP:
            errs.append(f.not_supported(path.child("apiGroup"), group, [GROUP]))
    else:
        errs.append(f.not_supported(path.child("kind"), kind, ["ServiceAccount", "User", "Group"]))
    return errs


def _validate_binding(obj: Obj, namespaced: bool) -> list[FieldError]:
    errs: list[FieldError] = []
    ref: dict[str, Any] = obj["roleRef"] if isinstance(obj.get("roleRef"), dict) else {}
    if ref.get("apiGroup", "") != GROUP:
        errs.append(f.not_supported(Path("roleRef", "apiGroup"), ref.get("apiGroup", ""), [GROUP]))
    kinds = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]
    if ref.get("kind", "") not in kinds:
        errs.append(f.not_supported(Path("roleRef", "kind"), ref.get("kind", ""), kinds))
    name = ref.get("name") or ""
    if not name:
        errs.append(f.required(Path("roleRef", "name"), ""))
    else:
        errs += [f.invalid(Path("roleRef", "name"), name, m) for m in validate_rbac_name(name, False)]
    for i, s in enumerate(_list(obj.get("subjects"))):
        errs += validate_subject(s, namespaced, Path("subjects").index(i))
    return errs


def _default_binding(obj: Obj) -> None:
    ref = obj.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = GROUP
    for s in _list(obj.get("subjects")):
        if isinstance(s, dict) and not s.get("apiGroup") and s.get("kind") in ("User", "Group"):
            s["apiGroup"] = GROUP


def _created_at(obj: Obj) -> str:
    return str(get(obj, "metadata", "creationTimestamp", default=""))


_CREATED_AT = Column("Created At", "date", "", "Creation time of the role")


class RoleStrategy(Strategy):
    allow_create_on_update = True
    namespaced = True

    def validate(self, obj: Obj) -> list[FieldError]:
        return _validate_rules(obj, self.namespaced)

    columns = (name_column(), _CREATED_AT)

    def row(self, obj: Obj) -> list[Any]:
        return [meta(obj).get("name", ""), _created_at(obj)]


class ClusterRoleStrategy(RoleStrategy):
    namespaced = False

    def validate(self, obj: Obj) -> list[FieldError]:
        errs = _validate_rules(obj, False)
        agg = obj.get("aggregationRule")
        if agg is not None:
            sels = _list(agg.get("clusterRoleSelectors")) if isinstance(agg, dict) else []
            path = Path("aggregationRule", "clusterRoleSelectors")
            if not sels:
                errs.append(f.required(path, "at least one clusterRoleSelector required if aggregationRule is non-nil"))
            for i, sel in enumerate(sels):
                errs += validate_label_selector(sel if isinstance(sel, dict) else {}, path.index(i))
        return errs

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        # the aggregation controller owns the rules of an aggregated role; keep its last result
        # when a client updates without them (as kubectl apply of an aggregated role does)
        if new.get("aggregationRule") and old.get("aggregationRule") and not new.get("rules"):
            new["rules"] = old.get("rules")


def _subject_cells(obj: Obj) -> tuple[str, str, str]:
    users, groups, sas = [], [], []
    for s in _list(obj.get("subjects")):
        if not isinstance(s, dict):
            continue
        if s.get("kind") == "User":
            users.append(s.get("name", ""))
        elif s.get("kind") == "Group":
            groups.append(s.get("name", ""))
        elif s.get("kind") == "ServiceAccount":
            sas.append(f"{s.get('namespace', '')}/{s.get('name', '')}")
    return ", ".join(users), ", ".join(groups), ", ".join(sas)


class RoleBindingStrategy(Strategy):
    allow_create_on_update = True
    namespaced = True

    def default(self, obj: Obj) -> None:
        _default_binding(obj)

    def validate(self, obj: Obj) -> list[FieldError]:
        return _validate_binding(obj, self.namespaced)

    def validate_update(self, new: Obj, old: Obj) -> list[FieldError]:
        errs = self.validate(new)
        if (new.get("roleRef") or {}) != (old.get("roleRef") or {}):
            ref = new.get("roleRef") or {}
            value = f"{{APIGroup:{ref.get('apiGroup', '')}, Kind:{ref.get('kind', '')}, Name:{ref.get('name', '')}}}"
            errs.append(f.invalid(Path("roleRef"), value, "cannot change roleRef"))
        return errs

    columns = (
        name_column(),
        Column("Role", "string", "", "Role to which the binding refers"),
        age_column(),
        Column("Users", "string", "", "Users in the binding", 1),
        Column("Groups", "string", "", "Groups in the binding", 1),
        Column("ServiceAccounts", "string", "", "ServiceAccounts in the binding", 1),
    )

    def row(self, obj: Obj) -> list[Any]:
        ref = obj.get("roleRef") or {}
        users, groups, sas = _subject_cells(obj)
        return [meta(obj).get("name", ""), f"{ref.get('kind', '')}/{ref.get('name', '')}",
                age(get(obj, "metadata", "creationTimestamp")), users, groups, sas]


class ClusterRoleBindingStrategy(RoleBindingStrategy):
    namespaced = False


def _kind(kind: str, plural: str, namespaced: bool, strategy: Strategy) -> Kind:
    return Kind(group=GROUP, version="v1", kind=kind, plural=plural, namespaced=namespaced, strategy=strategy,
                schema_ref=f"io.k8s.api.rbac.v1.{kind}", name_validator=validate_rbac_name)


CLUSTERROLE = _kind("ClusterRole", "clusterroles", False, ClusterRoleStrategy())
CLUSTERROLEBINDING = _kind("ClusterRoleBinding", "clusterrolebindings", False, ClusterRoleBindingStrategy())
ROLE = _kind("Role", "roles", True, RoleStrategy())
ROLEBINDING = _kind("RoleBinding", "rolebindings", True, RoleBindingStrategy())
