"""Errors as data: every failure a client can see is a ``Status`` object.

Mirrors apimachinery/pkg/api/errors: small constructors build a
:class:`StatusError`; the HTTP layer turns it into a ``Status`` response.
"""

from __future__ import annotations

from typing import Any

from kubelite.api.field import FieldError, aggregate_message


def qualified(name: str, group: str) -> str:
    """schema.GroupResource.String() / GroupKind.String(): ``pods`` or ``leases.coordination.k8s.io``."""
    return f"{name}.{group}" if group else name


class StatusError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        st: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
        }
        if self.reason:
            st["reason"] = self.reason
        if self.details is not None:
            st["details"] = self.details
        st["code"] = self.code
        return st

    def __repr__(self) -> str:
        return f"StatusError({self.code}, {self.reason!r}, {self.message!r})"


def _details(name: str, group: str, kind: str, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    if kind:
        d["kind"] = kind
    d.update(extra)
    return d


def not_found(resource: str, name: str, group: str = "") -> StatusError:
    return StatusError(404, "NotFound", f'{qualified(resource, group)} "{name}" not found',
                       _details(name, group, resource))


def already_exists(resource: str, name: str, group: str = "") -> StatusError:
    return StatusError(409, "AlreadyExists", f'{qualified(resource, group)} "{name}" already exists',
                       _details(name, group, resource))


CONFLICT_MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"


def conflict(resource: str, name: str, err: str = CONFLICT_MODIFIED, group: str = "") -> StatusError:
    return StatusError(409, "Conflict",
                       f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {err}',
                       _details(name, group, resource))


def invalid(kind: str, name: str, errs: list[FieldError], group: str = "") -> StatusError:
    causes = [e.cause() for e in errs]
    msg = f'{qualified(kind, group)} "{name}" is invalid'
    if errs:
        msg += ": " + aggregate_message(errs)
    return StatusError(422, "Invalid", msg, _details(name, group, kind, causes=causes))


def bad_request(message: str, causes: list[dict[str, str]] | None = None) -> StatusError:
    return StatusError(400, "BadRequest", message, {"causes": causes} if causes else None)


def unauthorized(message: str = "Unauthorized") -> StatusError:
    return StatusError(401, "Unauthorized", message)


def forbidden(resource: str, name: str, reason: str, group: str = "") -> StatusError:
    q = qualified(resource, group)
    msg = f'{q} "{name}" is forbidden: {reason}' if name else f"{q} is forbidden: {reason}"
    return StatusError(403, "Forbidden", msg, _details(name, group, resource))


def method_not_supported(resource: str, action: str, group: str = "") -> StatusError:
    return StatusError(405, "MethodNotAllowed",
                       f'{action} is not supported on resources of kind "{qualified(resource, group)}"',
                       _details("", group, resource))


def unsupported_media_type(content_type: str = "") -> StatusError:
    return StatusError(415, "UnsupportedMediaType",
                       f'the body of the request was in an unknown format - accepted media types include: '
                       f'{content_type}' if content_type else
                       "the body of the request was in an unknown format - accepted media types include: "
                       "application/json, application/yaml")


def not_acceptable(message: str) -> StatusError:
    return StatusError(406, "NotAcceptable", message)


REQUEST_LIMIT_BYTES = 3 * 1024 * 1024


def request_entity_too_large(limit: int = REQUEST_LIMIT_BYTES) -> StatusError:
    return StatusError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {limit}")


def expired(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def gone(message: str) -> StatusError:
    return StatusError(410, "Gone", message)


def resource_expired(rv: int, oldest: int) -> StatusError:
    return expired(f"too old resource version: {rv} ({oldest})")


def internal(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}",
                       {"causes": [{"message": message}]})


def timeout(message: str, retry_after: int = 1) -> StatusError:
    return StatusError(504, "Timeout", message, {"retryAfterSeconds": retry_after})


def too_many_requests(message: str = "Too many requests, please try again later.") -> StatusError:
    return StatusError(429, "TooManyRequests", message, {"retryAfterSeconds": 1})


def service_unavailable(message: str) -> StatusError:
    return StatusError(503, "ServiceUnavailable", message)
