"""authorization.k8s.io/v1 SelfSubjectAccessReview, SelfSubjectRulesReview,
SubjectAccessReview, LocalSubjectAccessReview and authentication.k8s.io/v1
SelfSubjectReview and TokenReview: create-only kinds that are never stored (the API answers the POST with
the object and its status filled in). Their stores are :class:`kubelite.auth.reviews.ReviewStore`."""

from __future__ import annotations

from kubelite.apiserver.rest import ACCESS_REVIEWS
from kubelite.kinds.base import Kind, Strategy

AUTHZ = "authorization.k8s.io"
AUTHN = "authentication.k8s.io"


class ReviewStrategy(Strategy):
    """Nothing to default or print: these objects exist only for the length of a request."""


def _review(group: str, kind: str, plural: str, namespaced: bool = False) -> Kind:
    return Kind(group=group, version="v1", kind=kind, plural=plural, namespaced=namespaced,
                strategy=ReviewStrategy(), verbs=("create",), schema_ref=f"io.k8s.api.{group.split('.')[0]}.v1.{kind}",
                virtual=lambda ctx, kind: ctx.services.require(ACCESS_REVIEWS).for_kind(kind))


LOCALSUBJECTACCESSREVIEW = _review(AUTHZ, "LocalSubjectAccessReview", "localsubjectaccessreviews", namespaced=True)
SELFSUBJECTACCESSREVIEW = _review(AUTHZ, "SelfSubjectAccessReview", "selfsubjectaccessreviews")
SELFSUBJECTRULESREVIEW = _review(AUTHZ, "SelfSubjectRulesReview", "selfsubjectrulesreviews")
SUBJECTACCESSREVIEW = _review(AUTHZ, "SubjectAccessReview", "subjectaccessreviews")
SELFSUBJECTREVIEW = _review(AUTHN, "SelfSubjectReview", "selfsubjectreviews")
TOKENREVIEW = _review(AUTHN, "TokenReview", "tokenreviews")  # a node agent authenticates bearer tokens
