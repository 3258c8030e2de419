"""Errors of the query API in Placement's shape, ``{"errors": [{"status", "title", "detail",
"code"}]}``, with the stable codes of :mod:`exporters.errors`: the exception handlers, the bound
on query strings, and the error responses routes document."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import errors
from ._api_models import ErrorBody
from .errors import ApiError

__all__ = [
    "ERRORS",
    "MAX_QUERY_BYTES",
    "MAX_QUERY_PARAMS",
    "NOT_FOUND",
    "TITLES",
    "QueryBounds",
    "error_response",
    "install_error_handlers",
]

log = logging.getLogger("resmon.exporters.api")

#: Longest query string read (longer: 414) and most parameters in one (more: 400).
MAX_QUERY_BYTES = 16 * 1024
MAX_QUERY_PARAMS = 256

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    414: "URI Too Long",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def error_response(
    status: int, code: str, details: Sequence[str], headers: dict[str, str] | None = None
) -> JSONResponse:
    title = TITLES.get(status, "Error")
    body = {
        "errors": [{"status": status, "title": title, "detail": d, "code": code} for d in details]
    }
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.code, [exc.detail], headers)

    async def validation_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        details = []
        code = errors.BAD_PARAMETER
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path"))
            details.append(f"{where}: {err.get('msg', 'invalid')}")
            if where == "limit":
                code = errors.BAD_LIMIT
        return error_response(400, code, details or ["invalid request"])

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: errors.NOT_FOUND, 405: errors.METHOD_NOT_ALLOWED}.get(
            exc.status_code, errors.BAD_PARAMETER
        )
        return error_response(exc.status_code, code, [str(exc.detail)], dict(exc.headers or {}))

    async def store_error(request: Request, exc: Exception) -> Response:
        log.error("database error serving %s: %s", request.url.path, exc)
        return error_response(503, errors.STORE_UNAVAILABLE, ["the database did not answer"])

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("unexpected error serving %s", request.url.path, exc_info=exc)
        return error_response(500, errors.INTERNAL, ["unexpected error; see the server log"])

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(SQLAlchemyError, store_error)
    app.add_exception_handler(Exception, unexpected)


class QueryBounds:
    """Refuses an oversized query string before anything parses it (ASGI middleware)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        query: bytes = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if len(query) > MAX_QUERY_BYTES:
            response = error_response(
                414, errors.BAD_QUERY_SIZE,
                [f"the query string has {len(query)} bytes; at most {MAX_QUERY_BYTES} are read"],
            )  # fmt: skip
        elif query.count(b"&") >= MAX_QUERY_PARAMS:
            response = error_response(
                400, errors.BAD_QUERY_SIZE,
                [f"the query has more than {MAX_QUERY_PARAMS} parameters"],
            )  # fmt: skip
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": TITLES[status]} for status in (400, 401, 414, 503)
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "Not Found"}}
