"""Stable, machine-readable error codes of the query API, and the error the API raises.

Once published, a code never changes: clients match on it. Every error body has Placement's
shape: ``{"errors": [{"status", "title", "detail", "code"}]}``.
"""

from __future__ import annotations

__all__ = [
    "AUTH_INVALID",
    "AUTH_REQUIRED",
    "BAD_CURSOR",
    "BAD_HOST_ID",
    "BAD_INSTANCE",
    "BAD_LIMIT",
    "BAD_PARAMETER",
    "BAD_QUERY_SIZE",
    "BAD_RESOURCES",
    "BAD_TRAITS",
    "HOST_NOT_FOUND",
    "INTERNAL",
    "METHOD_NOT_ALLOWED",
    "NOT_FOUND",
    "NOT_READY",
    "STORE_UNAVAILABLE",
    "UNKNOWN_RESOURCE_CLASS",
    "UNKNOWN_TRAIT",
    "ApiError",
]

#: A query parameter breaks its declared type or bounds (wrong type, negative, oversized).
BAD_PARAMETER = "resmon.query.invalid_parameter"
#: ``limit`` is outside 1..max.
BAD_LIMIT = "resmon.query.invalid_limit"
#: ``cursor`` was not issued by this API.
BAD_CURSOR = "resmon.query.invalid_cursor"
#: A host id that no host can have (it holds a NUL after the target's name).
BAD_HOST_ID = "resmon.query.invalid_host_id"
#: The query string is longer, or has more parameters, than the API reads.
BAD_QUERY_SIZE = "resmon.query.too_large"
#: ``resources`` is malformed (not ``CLASS:amount,...``, amount not a positive integer, repeat).
BAD_RESOURCES = "resmon.query.invalid_resources"
#: A resource class that is neither standard (os-resource-classes) nor ``CUSTOM_*``.
UNKNOWN_RESOURCE_CLASS = "resmon.query.unknown_resource_class"
#: ``required`` is malformed (empty item, a trait both required and forbidden).
BAD_TRAITS = "resmon.query.invalid_traits"
#: A trait that is neither standard (os-traits) nor ``CUSTOM_*``.
UNKNOWN_TRAIT = "resmon.query.unknown_trait"
#: ``instance`` is not ``arch/hv_type/vm_mode`` in the canonical vocabulary.
BAD_INSTANCE = "resmon.query.invalid_instance"
#: No host has that id.
HOST_NOT_FOUND = "resmon.host.not_found"
#: No such path.
NOT_FOUND = "resmon.not_found"
#: The API is read-only; only GET and HEAD are served.
METHOD_NOT_ALLOWED = "resmon.method_not_allowed"
#: A bearer token is required and none was sent.
AUTH_REQUIRED = "resmon.auth.required"
#: The bearer token sent is not one of the configured tokens.
AUTH_INVALID = "resmon.auth.invalid_token"
#: The database does not answer.
STORE_UNAVAILABLE = "resmon.store.unavailable"
#: The database answers but is not migrated to the schema this version needs.
NOT_READY = "resmon.store.not_migrated"
#: Anything unexpected; the server logged it.
INTERNAL = "resmon.internal_error"


class ApiError(Exception):
    """An error to render as ``{"errors": [...]}`` with ``status`` and a stable ``code``."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


def bad_request(code: str, detail: str) -> ApiError:
    return ApiError(400, code, detail)
