"""Operations: liveness, readiness, Prometheus metrics and the landing page."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from .. import errors
from .._api_errors import ERRORS
from .._api_models import ErrorBody, Health, Ready
from .._landing import fleet_summary, render_landing
from .._queries import target_statuses
from ..errors import ApiError
from ..prometheus import (
    CONTENT_TYPE,
    render_answer_cache,
    render_metrics,
    render_placement_sync,
)
from ._common import ApiContext, context

__all__ = ["public", "router"]

log = logging.getLogger("resmon.exporters.api")

#: Routes anyone may call (probes).
public = APIRouter(tags=["operations"])
#: Routes behind the bearer auth.
router = APIRouter(tags=["operations"])
Context = Annotated[ApiContext, Depends(context)]


@public.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is alive (says nothing about the database)."""
    return Health(status="ok")


@public.get(
    "/readyz", response_model=Ready,
    responses={503: {"model": ErrorBody, "description": "Not ready"}},
)  # fmt: skip
def readyz(ctx: Context) -> Ready:
    """The database answers and is migrated to the revision this version needs."""
    head = ctx.head_revision()
    if ctx.store.outage() is not None:  # it failed moments ago: no need to wait for it again
        raise ApiError(503, errors.STORE_UNAVAILABLE, "the database did not answer")
    try:
        current = ctx.store.revision()
    except SQLAlchemyError as exc:
        log.warning("readiness: database not usable: %s", exc)
        raise ApiError(503, errors.STORE_UNAVAILABLE, "the database did not answer") from None
    if current != head:
        raise ApiError(
            503, errors.NOT_READY,
            f"database is at revision {current!r}, this version needs {head!r}",
        )  # fmt: skip
    return Ready(status="ready", revision=head)


@router.get(
    "/metrics", response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
               401: {"model": ErrorBody, "description": "Unauthorized"}},
)  # fmt: skip
def metrics(ctx: Context) -> Response:
    """Prometheus metrics, rendered from the store (values as of the last collection), this
    process's candidate answer cache, and the Placement sync when this process runs it."""
    body = render_metrics(ctx.store, stale_after_s=ctx.stale_after_s)
    body += render_answer_cache(ctx.answer_cache)
    if ctx.placement_status is not None:
        body += render_placement_sync(ctx.placement_status())
    return Response(body, media_type=CONTENT_TYPE)


@router.get(
    "/", response_class=HTMLResponse,
    responses={401: {"model": ErrorBody, "description": "Unauthorized"}, 503: ERRORS[503]},
)  # fmt: skip
def landing(ctx: Context) -> HTMLResponse:
    """Fleet summary for people: hosts per hv_type, capacity, failed and stale targets."""
    with ctx.store.session() as session:
        targets = target_statuses(session, stale_after_s=ctx.stale_after_s)
        summary = fleet_summary(session, targets)
    return HTMLResponse(render_landing(summary))
