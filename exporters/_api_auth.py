"""Bearer-token auth of the query API: when tokens are configured, a route that depends on
:func:`bearer_auth` needs ``Authorization: Bearer <token>``, compared in constant time."""

import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from . import errors
from .errors import ApiError

__all__ = ["bearer_auth"]


def bearer_auth(tokens: Sequence[str]) -> Callable[..., Awaitable[None]]:
    """A dependency that lets a request through when ``tokens`` is empty or it carries one.

    ``async``, as it never waits: FastAPI would otherwise run it in its thread pool, a hop
    that cost every request more than the check itself."""
    bearer = HTTPBearer(auto_error=False, description="Needed when the daemon configures tokens.")
    expected = [t.encode() for t in tokens if t]

    async def check(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        if not expected:
            return
        if credentials is None:
            raise ApiError(401, errors.AUTH_REQUIRED, "a bearer token is required")
        given = credentials.credentials.encode()
        # Compare against every token, so the time taken does not tell which one nearly matched.
        matched = False
        for token in expected:
            matched |= hmac.compare_digest(given, token)
        if not matched:
            raise ApiError(401, errors.AUTH_INVALID, "the bearer token is not valid")

    return check
