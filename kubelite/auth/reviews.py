"""Stores for the create-only review kinds (kinds/authorization.py): ``create`` evaluates
the request and returns the object with ``status`` filled in; nothing is written.
(pkg/registry/authorization/*, pkg/registry/authentication/selfsubjectreview)."""

from __future__ import annotations

from typing import Any

from kubelite.api import errors
from kubelite.api import field as f
from kubelite.api.field import Path
from kubelite.apiserver.authorizer import ALLOW, DENY, Attributes
from kubelite.kinds.base import Kind, Obj


class _User:
    def __init__(self, name: str, groups: list[str], uid: str = "", extra: dict[str, list[str]] | None = None) -> None:
        self.name = name
        self.groups = tuple(groups)
        self.uid = uid
        self.extra = extra or {}


def _attrs(user: Any, spec: dict[str, Any]) -> Attributes:
    ra = spec.get("resourceAttributes")
    if isinstance(ra, dict):
        version = ra.get("version") or "*"
        return Attributes(user=user, verb=ra.get("verb", ""), resource_request=True,
                          namespace=ra.get("namespace", ""), api_group=ra.get("group", ""), api_version=version,
                          resource=ra.get("resource", ""), subresource=ra.get("subresource", ""),
                          name=ra.get("name", ""))
    nra = spec.get("nonResourceAttributes") or {}
    return Attributes(user=user, verb=nra.get("verb", ""), resource_request=False, path=nra.get("path", ""))


def _validate_access_spec(spec: dict[str, Any], subject: bool) -> list[f.FieldError]:
    errs: list[f.FieldError] = []
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if ra is not None and nra is not None:
        errs.append(f.invalid(Path("spec", "nonResourceAttributes"), "{...}",
                              "cannot be specified in combination with resourceAttributes"))
    if ra is None and nra is None:
        errs.append(f.invalid(Path("spec", "resourceAttributes"), "null",
                              "exactly one of nonResourceAttributes or resourceAttributes must be specified"))
    if subject and not spec.get("user") and not spec.get("groups"):
        errs.append(f.invalid(Path("spec", "user"), spec.get("user", ""), "at least one of user or group must be specified"))
    return errs


class ReviewStore:
    """Duck-types the parts of ResourceStore that the handlers call for a create-only kind."""

    def __init__(self, kind: Kind, authorizer: Any, authenticate_token: Any = None) -> None:
        self.kind = kind
        self.authenticate_token = authenticate_token  # TokenReview: token -> UserInfo | None
        self.storage_kind = kind
        self.strategy = kind.strategy
        self.authorizer = authorizer
        self.admission = None

    def _unsupported(self, verb: str) -> errors.StatusError:
        return errors.method_not_supported(self.kind.plural, verb, self.kind.group)

    async def get(self, *a: Any, **kw: Any) -> Obj:
        raise self._unsupported("get")

    async def list(self, *a: Any, **kw: Any) -> Any:
        # nothing is ever stored; in-process sweepers (namespace deletion) see an empty list
        return [], 0, "", None

    def watch(self, *a: Any, **kw: Any) -> Any:
        raise self._unsupported("watch")

    async def update(self, *a: Any, **kw: Any) -> Any:
        raise self._unsupported("update")

    async def patch(self, *a: Any, **kw: Any) -> Any:
        raise self._unsupported("patch")

    async def delete(self, *a: Any, **kw: Any) -> Any:
        raise self._unsupported("delete")

    async def delete_collection(self, *a: Any, **kw: Any) -> Any:
        raise self._unsupported("deletecollection")

    def check_field_selector(self, sel: Any) -> None:
        return None

    async def create(self, namespace: str, obj: Obj, opts: Any) -> Obj:
        user = opts.user
        if user is None:
            raise errors.bad_request("no user present on request")
        meta: dict[str, Any] = obj["metadata"] if isinstance(obj.get("metadata"), dict) else {}
        obj["metadata"] = {k: v for k, v in meta.items() if k in ("name", "namespace", "labels", "annotations")}
        spec: dict[str, Any] = obj["spec"] if isinstance(obj.get("spec"), dict) else {}
        kind = self.kind.kind
        if kind == "TokenReview":
            return await self._token_review(obj, spec)
        if kind == "SelfSubjectReview":
            obj["status"] = {"userInfo": {k: v for k, v in (
                ("username", user.name), ("uid", user.uid), ("groups", list(user.groups)),
                ("extra", user.extra)) if v}}
            return obj
        if kind == "SelfSubjectRulesReview":
            ns = namespace or spec.get("namespace", "")
            rules = await self.authorizer.rules_for(user, ns)
            status: dict[str, Any] = {"resourceRules": rules.resource_rules,
                                      "nonResourceRules": rules.non_resource_rules,
                                      "incomplete": rules.incomplete}
            if rules.errors:
                status["evaluationError"] = "[" + ", ".join(rules.errors) + "]"
            obj["status"] = status
            return obj
        subject = kind in ("SubjectAccessReview", "LocalSubjectAccessReview")
        errs = _validate_access_spec(spec, subject)
        if kind == "LocalSubjectAccessReview":
            ra_ns = (spec.get("resourceAttributes") or {}).get("namespace", "")
            if spec.get("resourceAttributes") is not None and ra_ns != namespace:
                errs.append(f.invalid(Path("spec", "resourceAttributes", "namespace"), ra_ns,
                                      "must match metadata.namespace"))
            if spec.get("nonResourceAttributes") is not None:
                errs.append(f.invalid(Path("spec", "nonResourceAttributes"), "{...}",
                                      "disallowed on this kind of request"))
        if errs:
            raise errors.invalid(kind, obj["metadata"].get("name", ""), errs, self.kind.group)
        who = _User(spec.get("user", ""), list(spec.get("groups") or []), spec.get("uid", ""),
                    spec.get("extra") or {}) if subject else user
        decision, reason = await self.authorizer.authorize(_attrs(who, spec))
        st: dict[str, Any] = {"allowed": decision == ALLOW}
        if decision == DENY:
            st["denied"] = True
        if reason:
            st["reason"] = reason
        obj["status"] = st
        return obj

    async def _token_review(self, obj: Obj, spec: dict[str, Any]) -> Obj:
        """pkg/registry/authentication/tokenreview: the token put to the API server's own
        authenticators; the answer is in ``status`` (never an error for a bad token)."""
        token = spec.get("token")
        if not isinstance(token, str) or not token:
            raise errors.bad_request("token is required for TokenReview in authentication")
        user = await self.authenticate_token(token) if self.authenticate_token is not None else None
        if user is None:
            obj["status"] = {"user": {}}
            return obj
        info: dict[str, Any] = {"username": user.name, "groups": list(user.groups)}
        if user.uid:
            info["uid"] = user.uid
        if user.extra:
            info["extra"] = user.extra
        obj["status"] = {"authenticated": True, "user": info}
        if spec.get("audiences"):
            obj["status"]["audiences"] = list(spec["audiences"])
        return obj


__all__ = ["ReviewStore"]
