"""The query API for schedulers (``/v1``), plus ``/metrics``, ``/healthz``, ``/readyz`` and a
landing page at ``/``. Read-only: every route is a GET; other methods get 405.

Errors have Placement's shape, ``{"errors": [{"status", "title", "detail", "code"}]}``, with the
stable codes of :mod:`exporters.errors`. Bad queries are 400s naming the bad part; a database
that does not answer is a 503; anything unexpected is logged and becomes a JSON 500.

Hosts are addressed by an opaque, stable id derived from ``(target, host_id)`` (see
:func:`exporters._params.encode_host_ref`); every host object also carries both parts.

Staleness: a host is stale when its target's last collection failed, or its last success is
older than ``max(2 × the target's interval_s, stale_after_s or 0)`` seconds. Stale hosts are
listed by ``/v1/hosts`` (with ``stale: true``) but left out of ``/v1/candidates`` unless
``include_stale=true``. Hosts whose state is not ``up`` are never candidates.

Candidates are searched in a per-process in-memory index of the up compute hosts
(:mod:`exporters._candidates`), checked against the store's latest collection run per target on
every request and reloaded for the targets that were collected since; staleness is decided at
request time. The answers are those of the SQL in :func:`exporters._queries.candidates`.

Auth: when ``api_tokens`` is not empty, every route except ``/healthz``, ``/readyz`` and
``/openapi.json`` needs ``Authorization: Bearer <token>``, compared in constant time.
"""

import hmac
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from sqlalchemy import func, inspect, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from resmon.contract import HostState, ProviderKind
from resmon.store import Store, models

from . import errors
from ._candidates import CandidateIndex, candidate_json
from ._landing import fleet_summary, render_landing
from ._params import (
    decode_cursor,
    decode_host_ref,
    encode_cursor,
    encode_host_ref,
    not_found,
    parse_instance,
    parse_required,
    parse_resources,
)
from ._queries import (
    CandidateQuery,
    TargetStatus,
    aware,
    inventories_of,
    target_statuses,
)
from .errors import ApiError
from .placement_api import placement_router
from .prometheus import CONTENT_TYPE, render_metrics

__all__ = [
    "API_VERSION",
    "MAX_LIMIT",
    "MAX_QUERY_BYTES",
    "MAX_QUERY_PARAMS",
    "SERVER_OPTIONS",
    "create_app",
    "openapi_document",
]

log = logging.getLogger("resmon.exporters.api")

#: Version of the HTTP API; additive change bumps the minor, anything else the major (/v2).
API_VERSION = "1.0"
#: Largest page or candidate list a query may ask for.
MAX_LIMIT = 1000
#: Longest query string read (longer: 414) and most parameters in one (more: 400).
MAX_QUERY_BYTES = 16 * 1024
MAX_QUERY_PARAMS = 256
#: uvicorn settings every server of this app uses: the HTTP parser reads request heads up to
#: 1 MiB, so an oversized query gets the app's 414 instead of a closed connection.
SERVER_OPTIONS: dict[str, Any] = {"h11_max_incomplete_event_size": 1024 * 1024}

_H = models.Host.__table__
_T = models.Target.__table__
_A = models.Anomaly.__table__
_C = models.CapacityChange.__table__

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    414: "URI Too Long",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

# -- response models ----------------------------------------------------------------------


class ErrorItem(BaseModel):
    status: int
    title: str
    detail: str
    code: str


class ErrorBody(BaseModel):
    errors: list[ErrorItem]


class InventoryRecord(BaseModel):
    """Placement's inventory record plus allocated use; capacity and free as stored."""

    total: int
    reserved: int = Field(
        description="Final reservation: the two parts below (or total when the provider is not up)."
    )
    hypervisor_reserved: int = Field(description="Held back by the hypervisor itself.")
    operator_reserved: int = Field(description="Reserved by the operator's policy.")
    min_unit: int
    max_unit: int
    step_size: int
    allocation_ratio: float
    used: int = Field(description="Allocated to running instances (Placement's meaning).")
    capacity: int
    free: int


class HostSummary(BaseModel):
    id: str = Field(description="Stable opaque id derived from (target, host_id).")
    target: str
    host_id: str
    hostname: str | None
    provider_kind: str
    parent_id: str | None
    state: str
    hv_type: str | None
    hypervisor_version: str | None
    arch: str | None
    cpu_model: str | None
    collector: str
    collected_at: datetime
    stale: bool
    inventories: dict[str, InventoryRecord]


class HostPage(BaseModel):
    hosts: list[HostSummary]
    next_cursor: str | None = Field(
        description="Pass as cursor for the next page; null at the end."
    )


class CollectionStatus(BaseModel):
    status: str = Field(description="never, success or failed")
    stale: bool
    error_kind: str | None
    error_message: str | None
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    duration_s: float | None
    consecutive_failures: int


class AnomalyOut(BaseModel):
    id: int
    host: str = Field(description="The host's API id.")
    target: str
    host_id: str
    code: str
    field: str
    message: str
    raw_value: str | None
    source: str = Field(description="collector or core")
    detected_at: datetime


class HostDetail(BaseModel):
    host: HostSummary
    report: dict[str, Any] = Field(description="The full normalised report (schema v1).")
    anomalies: list[AnomalyOut]
    last_collection: CollectionStatus


class TargetOut(BaseModel):
    name: str
    collector: str
    interval_s: float
    hosts: int
    collection: CollectionStatus
    replica: str | None = Field(
        None,
        description="The daemon replica currently leasing (collecting) the target, when "
        "replicas share a PostgreSQL database; null otherwise or between holders.",
    )


class TargetList(BaseModel):
    targets: list[TargetOut]


class ChangeOut(BaseModel):
    """One inventory field of one provider that changed between two collections."""

    id: int
    changed_at: datetime
    resource_class: str = Field(description="A resource class, or * for the provider itself.")
    field: str = Field(
        description="total, reserved or allocation_ratio; provider_added / provider_removed "
        "(resource_class *) when the provider appeared or went away."
    )
    old_value: float | None
    new_value: float | None
    run_id: int | None = Field(description="The collection run that saw it (null once pruned).")


class ChangePage(BaseModel):
    changes: list[ChangeOut]
    next_cursor: str | None


class AnomalyPage(BaseModel):
    anomalies: list[AnomalyOut]
    next_cursor: str | None


class RequestedResource(BaseModel):
    requested: int
    free: int = Field(description="Free at the provider that supplies it")
    free_after: int = Field(description="free - requested")
    provider: str = Field(
        description="API id of the provider that supplies it: the host or a sharing provider"
    )


class SharingProviderOut(BaseModel):
    """A shared-storage provider that supplies part of a candidate (Placement's sharing
    provider): the classes it supplies and its inventories."""

    id: str
    host_id: str
    hostname: str | None
    resources: dict[str, int]
    inventories: dict[str, InventoryRecord]


class CandidateOut(BaseModel):
    id: str
    target: str
    host_id: str
    hostname: str | None
    parent_id: str | None
    hv_type: str | None
    arch: str | None
    stale: bool
    resources: dict[str, RequestedResource]
    inventories: dict[str, InventoryRecord]
    sharing_providers: list[SharingProviderOut]


class CandidateList(BaseModel):
    candidates: list[CandidateOut]


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    revision: str


# -- error rendering -------------------------------------------------------------------------


def _error_response(
    status: int, code: str, details: Sequence[str], headers: dict[str, str] | None = None
) -> JSONResponse:
    title = _TITLES.get(status, "Error")
    body = {
        "errors": [{"status": status, "title": title, "detail": d, "code": code} for d in details]
    }
    return JSONResponse(body, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _error_response(exc.status, exc.code, [exc.detail], headers)

    async def validation_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        details = []
        code = errors.BAD_PARAMETER
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("query", "path"))
            details.append(f"{where}: {err.get('msg', 'invalid')}")
            if where == "limit":
                code = errors.BAD_LIMIT
        return _error_response(400, code, details or ["invalid request"])

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: errors.NOT_FOUND, 405: errors.METHOD_NOT_ALLOWED}.get(
            exc.status_code, errors.BAD_PARAMETER
        )
        return _error_response(exc.status_code, code, [str(exc.detail)], dict(exc.headers or {}))

    async def store_error(request: Request, exc: Exception) -> Response:
        log.error("database error serving %s: %s", request.url.path, exc)
        return _error_response(503, errors.STORE_UNAVAILABLE, ["the database did not answer"])

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.error("unexpected error serving %s", request.url.path, exc_info=exc)
        return _error_response(500, errors.INTERNAL, ["unexpected error; see the server log"])

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(SQLAlchemyError, store_error)
    app.add_exception_handler(Exception, unexpected)


class _QueryBounds:
    """Refuses an oversized query string before anything parses it (ASGI middleware)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        query: bytes = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if len(query) > MAX_QUERY_BYTES:
            response = _error_response(
                414, errors.BAD_QUERY_SIZE,
                [f"the query string has {len(query)} bytes; at most {MAX_QUERY_BYTES} are read"],
            )  # fmt: skip
        elif query.count(b"&") >= MAX_QUERY_PARAMS:
            response = _error_response(
                400, errors.BAD_QUERY_SIZE,
                [f"the query has more than {MAX_QUERY_PARAMS} parameters"],
            )  # fmt: skip
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": _TITLES[status]} for status in (400, 401, 414, 503)
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "Not Found"}
}


def _auth_dependency(tokens: Sequence[str]) -> Callable[..., None]:
    bearer = HTTPBearer(auto_error=False, description="Needed when the daemon configures tokens.")
    expected = [t.encode() for t in tokens if t]

    def check(
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


# -- serialisation helpers -------------------------------------------------------------------


def _status(t: TargetStatus) -> CollectionStatus:
    return CollectionStatus(
        status=t.last_status, stale=t.stale, error_kind=t.last_error_kind,
        error_message=t.last_error_message, last_attempt_at=t.last_attempt_at,
        last_success_at=t.last_success_at, duration_s=t.last_duration_s,
        consecutive_failures=t.consecutive_failures,
    )  # fmt: skip


def _host_columns() -> list[Any]:
    return [
        _H.c.id, _H.c.target_id, _H.c.host_id, _H.c.hostname, _H.c.provider_kind,
        _H.c.parent_id, _H.c.state, _H.c.hv_type, _H.c.hypervisor_version, _H.c.arch,
        _H.c.cpu_model, _H.c.collector_name, _H.c.collected_at,
    ]  # fmt: skip


def _summaries(
    session: Session, rows: Sequence[Any], targets: dict[int, TargetStatus]
) -> list[HostSummary]:
    inventories = inventories_of(session, [r.id for r in rows])
    out = []
    for r in rows:
        target = targets[r.target_id]
        out.append(
            HostSummary(
                id=encode_host_ref(target.name, r.host_id), target=target.name,
                host_id=r.host_id, hostname=r.hostname, provider_kind=r.provider_kind,
                parent_id=r.parent_id, state=r.state, hv_type=r.hv_type,
                hypervisor_version=r.hypervisor_version, arch=r.arch, cpu_model=r.cpu_model,
                collector=r.collector_name, collected_at=aware(r.collected_at),
                stale=target.stale,
                inventories={rc: InventoryRecord(**rec) for rc, rec in inventories[r.id].items()},
            )
        )  # fmt: skip
    return out


def _anomaly(row: Any, targets: dict[int, TargetStatus]) -> AnomalyOut:
    target = targets[row.target_id].name
    return AnomalyOut(
        id=row.id, host=encode_host_ref(target, row.host_id), target=target,
        host_id=row.host_id, code=row.code, field=row.field, message=row.message,
        raw_value=row.raw_value, source=row.source, detected_at=aware(row.detected_at),
    )  # fmt: skip


def _anomaly_select() -> Any:
    return select(
        _A.c.id, _A.c.code, _A.c.field, _A.c.message, _A.c.raw_value, _A.c.source,
        _A.c.detected_at, _H.c.host_id, _H.c.target_id,
    ).join(_H, _H.c.id == _A.c.host_pk)  # fmt: skip


# Query parameter types: bounded strings (no NUL: PostgreSQL text cannot hold it).
_Str = Annotated[str | None, Query(max_length=255, pattern=r"^[^\x00]*$")]
_Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"1..{MAX_LIMIT}")]
_Cursor = Annotated[str | None, Query(max_length=100, description="next_cursor of the last page")]
States = Literal["up", "maintenance", "disconnected", "not_responding", "standby", "unknown"]
Kinds = Literal["compute_host", "cluster", "shared_storage"]
assert set(States.__args__) == {s.value for s in HostState}  # type: ignore[attr-defined]
assert set(Kinds.__args__) == {k.value for k in ProviderKind}  # type: ignore[attr-defined]


def create_app(
    store: Store, *, api_tokens: Sequence[str] = (), stale_after_s: float | None = None
) -> FastAPI:
    """The ASGI application over ``store`` (see the module docstring for the rules)."""
    app = FastAPI(
        title="resmon",
        version=API_VERSION,
        description="What every hypervisor in the fleet has and can run, as of its last "
        "collection. Read-only.",
        docs_url=None,
        redoc_url=None,
    )
    _install_error_handlers(app)
    app.add_middleware(_QueryBounds)
    auth = [Depends(_auth_dependency(api_tokens))]
    head_revision: list[str] = []
    candidate_index = CandidateIndex()

    def statuses(session: Session) -> dict[int, TargetStatus]:
        return {t.id: t for t in target_statuses(session, stale_after_s=stale_after_s)}

    @app.get("/healthz", response_model=Health, tags=["operations"])
    def healthz() -> Health:
        """The process is alive (says nothing about the database)."""
        return Health(status="ok")

    @app.get(
        "/readyz", response_model=Ready, tags=["operations"],
        responses={503: {"model": ErrorBody, "description": "Not ready"}},
    )  # fmt: skip
    def readyz() -> Ready:
        """The database answers and is migrated to the revision this version needs."""
        if not head_revision:
            head_revision.append(_head_revision())
        if store.outage() is not None:  # it failed moments ago: no need to wait for it again
            raise ApiError(503, errors.STORE_UNAVAILABLE, "the database did not answer")
        try:
            with store.session() as session:
                conn = session.connection()
                conn.execute(text("SELECT 1"))
                migrated = inspect(conn).has_table("alembic_version")
                current = (
                    conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
                    if migrated
                    else None
                )
        except SQLAlchemyError as exc:
            log.warning("readiness: database not usable: %s", exc)
            raise ApiError(503, errors.STORE_UNAVAILABLE, "the database did not answer") from None
        if current != head_revision[0]:
            raise ApiError(
                503, errors.NOT_READY,
                f"database is at revision {current!r}, this version needs {head_revision[0]!r}",
            )  # fmt: skip
        return Ready(status="ready", revision=head_revision[0])

    @app.get(
        "/metrics", dependencies=auth, tags=["operations"], response_class=Response,
        responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
                   401: {"model": ErrorBody, "description": "Unauthorized"}},
    )  # fmt: skip
    def metrics() -> Response:
        """Prometheus metrics, rendered from the store (values as of the last collection)."""
        body = render_metrics(store, stale_after_s=stale_after_s)
        return Response(body, media_type=CONTENT_TYPE)

    @app.get(
        "/", dependencies=auth, response_class=HTMLResponse, tags=["operations"],
        responses={401: {"model": ErrorBody, "description": "Unauthorized"}, 503: _ERRORS[503]},
    )  # fmt: skip
    def landing() -> HTMLResponse:
        """Fleet summary for people: hosts per hv_type, capacity, failed and stale targets."""
        with store.session() as session:
            targets = target_statuses(session, stale_after_s=stale_after_s)
            summary = fleet_summary(session, targets)
        return HTMLResponse(render_landing(summary))

    @app.get(
        "/v1/hosts", response_model=HostPage, dependencies=auth, tags=["v1"], responses=_ERRORS
    )
    def list_hosts(
        hv_type: _Str = None,
        arch: _Str = None,
        parent: Annotated[
            str | None,
            Query(max_length=255, pattern=r"^[^\x00]*$", description="parent_id (cluster)"),
        ] = None,
        target: _Str = None,
        state: States | None = None,
        provider_kind: Kinds | None = None,
        stale: bool | None = None,
        limit: _Limit = 100,
        cursor: _Cursor = None,
    ) -> HostPage:
        """Providers ordered by their row, filtered; follow ``next_cursor`` for more."""
        after = decode_cursor("h", cursor) if cursor else 0
        with store.session() as session:
            targets = statuses(session)
            query = select(*_host_columns()).where(_H.c.id > after)
            for column, value in ((_H.c.hv_type, hv_type), (_H.c.arch, arch),
                                  (_H.c.parent_id, parent), (_H.c.state, state),
                                  (_H.c.provider_kind, provider_kind)):  # fmt: skip
                if value is not None:
                    query = query.where(column == value)
            if target is not None:
                query = query.where(
                    _H.c.target_id.in_([t.id for t in targets.values() if t.name == target])
                )
            if stale is not None:
                query = query.where(
                    _H.c.target_id.in_([t.id for t in targets.values() if t.stale == stale])
                )
            rows = session.execute(query.order_by(_H.c.id).limit(limit + 1)).all()
            page = _summaries(session, rows[:limit], targets)
        next_cursor = encode_cursor("h", rows[limit - 1].id) if len(rows) > limit else None
        return HostPage(hosts=page, next_cursor=next_cursor)

    @app.get(
        "/v1/hosts/{host}", response_model=HostDetail, dependencies=auth, tags=["v1"],
        responses={**_ERRORS, **_NOT_FOUND},
    )  # fmt: skip
    def show_host(
        host: Annotated[str, Path(max_length=1024, description="A host's id from /v1/hosts.")],
    ) -> HostDetail:
        """One provider: its full normalised report, its anomalies, its last collection."""
        key = decode_host_ref(host)
        if key is None:
            raise not_found(host)
        with store.session() as session:
            targets = statuses(session)
            by_name = {t.name: t for t in targets.values()}
            target = by_name.get(key[0])
            if target is None:
                raise not_found(host)
            row = session.execute(
                select(*_host_columns(), _H.c.report).where(
                    _H.c.target_id == target.id, _H.c.host_id == key[1]
                )
            ).first()
            if row is None:
                raise not_found(host)
            summary = _summaries(session, [row], targets)[0]
            anomalies = session.execute(
                _anomaly_select().where(_A.c.host_pk == row.id).order_by(_A.c.id)
            ).all()
        return HostDetail(
            host=summary,
            report=row.report,
            anomalies=[_anomaly(a, targets) for a in anomalies],
            last_collection=_status(target),
        )

    @app.get(
        "/v1/hosts/{host}/changes", response_model=ChangePage, dependencies=auth, tags=["v1"],
        responses={**_ERRORS, **_NOT_FOUND},
    )  # fmt: skip
    def list_host_changes(
        host: Annotated[str, Path(max_length=1024, description="A host's id from /v1/hosts.")],
        limit: _Limit = 100,
        cursor: _Cursor = None,
    ) -> ChangePage:
        """The provider's capacity change log, oldest first (kept as long as the retention
        says); also served for a provider that has since gone away."""
        key = decode_host_ref(host)
        if key is None:
            raise not_found(host)
        after = decode_cursor("c", cursor) if cursor else 0
        with store.session() as session:
            rows = session.execute(
                select(_C.c.id, _C.c.changed_at, _C.c.resource_class, _C.c.field,
                       _C.c.old_value, _C.c.new_value, _C.c.run_id)
                .where(_C.c.target_name == key[0], _C.c.host_id == key[1], _C.c.id > after)
                .order_by(_C.c.id)
                .limit(limit + 1)
            ).all()  # fmt: skip
            if not rows and after == 0:
                stored = session.execute(
                    select(_H.c.id)
                    .join(_T, _T.c.id == _H.c.target_id)
                    .where(_T.c.name == key[0], _H.c.host_id == key[1])
                ).first()
                if stored is None:
                    raise not_found(host)
        page = [
            ChangeOut(
                id=r.id, changed_at=aware(r.changed_at), resource_class=r.resource_class,
                field=r.field, old_value=r.old_value, new_value=r.new_value, run_id=r.run_id,
            )
            for r in rows[:limit]
        ]  # fmt: skip
        next_cursor = encode_cursor("c", rows[limit - 1].id) if len(rows) > limit else None
        return ChangePage(changes=page, next_cursor=next_cursor)

    @app.get(
        "/v1/targets", response_model=TargetList, dependencies=auth, tags=["v1"], responses=_ERRORS
    )
    def list_targets() -> TargetList:
        """Every target with the status of its last collection and its provider count."""
        with store.session() as session:
            targets = target_statuses(session, stale_after_s=stale_after_s)
            counts = {
                target_id: n
                for target_id, n in session.execute(
                    select(_H.c.target_id, func.count()).group_by(_H.c.target_id)
                )
            }
        return TargetList(
            targets=[
                TargetOut(
                    name=t.name,
                    collector=t.collector,
                    interval_s=t.interval_s,
                    hosts=counts.get(t.id, 0),
                    collection=_status(t),
                    replica=t.replica,
                )  # fmt: skip
                for t in targets
            ]
        )

    @app.get(
        "/v1/anomalies", response_model=AnomalyPage, dependencies=auth, tags=["v1"],
        responses=_ERRORS,
    )  # fmt: skip
    def list_anomalies(
        code: _Str = None,
        target: _Str = None,
        host: Annotated[str | None, Query(max_length=1024, description="A host's id")] = None,
        limit: _Limit = 100,
        cursor: _Cursor = None,
    ) -> AnomalyPage:
        """Current anomalies (as of each provider's last collection), oldest first."""
        after = decode_cursor("a", cursor) if cursor else 0
        with store.session() as session:
            targets = statuses(session)
            query = _anomaly_select().where(_A.c.id > after)
            if code is not None:
                query = query.where(_A.c.code == code)
            if target is not None:
                query = query.where(
                    _H.c.target_id.in_([t.id for t in targets.values() if t.name == target])
                )
            if host is not None:
                key = decode_host_ref(host)
                ids = [t.id for t in targets.values() if key and t.name == key[0]]
                query = query.where(
                    _H.c.target_id.in_(ids), _H.c.host_id == (key[1] if key else "")
                )
            rows = session.execute(query.order_by(_A.c.id).limit(limit + 1)).all()
        page = [_anomaly(r, targets) for r in rows[:limit]]
        next_cursor = encode_cursor("a", rows[limit - 1].id) if len(rows) > limit else None
        return AnomalyPage(anomalies=page, next_cursor=next_cursor)

    @app.get(
        "/v1/candidates", response_model=CandidateList, dependencies=auth, tags=["v1"],
        responses=_ERRORS,
    )  # fmt: skip
    def list_candidates(
        resources: Annotated[
            str, Query(max_length=4096, description="Placement syntax: VCPU:4,MEMORY_MB:8192")
        ],
        required: Annotated[
            list[str] | None,
            Query(max_length=4096, description="Traits: HW_CPU_X86_AVX2,!COMPUTE_STATUS_DISABLED"),
        ] = None,
        instance: Annotated[
            str | None,
            Query(max_length=255, description="ARCH/HV_TYPE/VM_MODE, e.g. x86_64/kvm/hvm"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
        order: Literal["most_free", "least_free"] = "most_free",
        include_stale: Annotated[
            bool, Query(description="Also hosts of stale or failed targets")
        ] = False,
    ) -> CandidateList:
        """Allocation requests that can take the resources, traits and instance type asked
        for: an up compute host, plus for classes it lacks (or as an alternative to its own) a
        sharing provider it is attached to, as Placement's sharing providers do.

        Ordered by the free amount of the first resource class at the provider that supplies
        it (``most_free`` spreads, ``least_free`` packs); ties in a stable order.
        """
        query = CandidateQuery(
            resources=parse_resources(resources),
            required=parse_required(required or [])[0],
            forbidden=parse_required(required or [])[1],
            instance=parse_instance(instance) if instance is not None else None,
            limit=limit, order=order, include_stale=include_stale,
        )  # fmt: skip
        with store.session() as session:
            targets = statuses(session)
            found = candidate_index.search(session, query, targets.values())
        # Plain dicts straight to JSON: building models for hundreds of candidates would cost
        # more than the search; CandidateList documents the shape and the schemathesis test
        # checks the answers against it.
        out = [candidate_json(c, query.resources, targets[c.host.target_id]) for c in found]
        return JSONResponse({"candidates": out})  # type: ignore[return-value]

    # The Placement-compatible read API (its own module; left out of this OpenAPI document).
    app.include_router(
        placement_router(store, candidate_index, statuses), prefix="/placement", dependencies=auth
    )
    return app


def _head_revision() -> str:
    from alembic.script import ScriptDirectory

    from resmon.store import alembic_directory

    head = ScriptDirectory(str(alembic_directory())).get_current_head()
    return head or ""


def openapi_document(app: FastAPI | None = None) -> dict[str, Any]:
    """The OpenAPI document as checked into ``schema/openapi.json``."""
    if app is None:
        app = create_app(Store("sqlite://"))
    return app.openapi()


if __name__ == "__main__":  # python -m exporters.api > schema/openapi.json
    import json
    import sys

    json.dump(openapi_document(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
