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
request time. The answers are those of the SQL in :func:`exporters._queries.candidates`. An
answer is kept, encoded, until a collection is stored or a target's staleness changes
(:mod:`exporters._answer_cache`), so a scheduler repeating a query between collections gets the
same bytes without a search.

Auth: when ``api_tokens`` is not empty, every route except ``/healthz``, ``/readyz`` and
``/openapi.json`` needs ``Authorization: Bearer <token>``, compared in constant time.

Layout: this module assembles the app; :mod:`exporters.routes` holds one router per resource,
:mod:`exporters._api_models` the response models, :mod:`exporters._api_errors` the error
handlers and the query bound, :mod:`exporters._api_auth` the bearer auth; the SQL is in
:mod:`exporters._queries` over the tables of :mod:`exporters._tables`.
"""

from collections.abc import Sequence
from typing import Any

from fastapi import Depends, FastAPI

from resmon.store import Store

from ._answer_cache import DEFAULT_MAX_BYTES, AnswerCache
from ._api_auth import bearer_auth
from ._api_errors import MAX_QUERY_BYTES, MAX_QUERY_PARAMS, QueryBounds, install_error_handlers
from .placement_api import placement_router
from .routes import ApiContext, anomalies, candidates, hosts, operations, placement_status, targets
from .routes._common import MAX_LIMIT

__all__ = [
    "API_VERSION",
    "MAX_LIMIT",
    "MAX_QUERY_BYTES",
    "MAX_QUERY_PARAMS",
    "SERVER_OPTIONS",
    "create_app",
    "openapi_document",
]

#: Version of the HTTP API; additive change bumps the minor, anything else the major (/v2).
API_VERSION = "1.0"
#: uvicorn settings every server of this app uses: the HTTP parser reads request heads up to
#: 1 MiB, so an oversized query gets the app's 414 instead of a closed connection.
SERVER_OPTIONS: dict[str, Any] = {"h11_max_incomplete_event_size": 1024 * 1024}


def create_app(
    store: Store,
    *,
    api_tokens: Sequence[str] = (),
    stale_after_s: float | None = None,
    placement: Any = None,
    answer_cache_bytes: int = DEFAULT_MAX_BYTES,
) -> FastAPI:
    """The ASGI application over ``store`` (see the module docstring for the rules).
    ``placement`` is the daemon's Placement sync task (its ``status()`` feeds ``/metrics`` and
    ``/v1/placement/status``). ``answer_cache_bytes`` bounds the candidate answers kept
    between collections (:mod:`exporters._answer_cache`; 0 keeps none)."""
    app = FastAPI(
        title="resmon",
        version=API_VERSION,
        description="What every hypervisor in the fleet has and can run, as of its last "
        "collection. Read-only.",
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    app.add_middleware(QueryBounds)
    ctx = app.state.resmon = ApiContext(
        store=store, stale_after_s=stale_after_s,
        placement_status=placement.status if placement is not None else None,
        answer_cache=AnswerCache(max_bytes=answer_cache_bytes),
    )  # fmt: skip
    auth = [Depends(bearer_auth(api_tokens))]
    app.include_router(operations.public)
    for resource in (operations, hosts, targets, anomalies, candidates, placement_status):
        app.include_router(resource.router, dependencies=auth)
    # The Placement-compatible read API (its own module; left out of this OpenAPI document).
    app.include_router(
        placement_router(store, ctx.candidate_index, ctx.statuses, ctx.answer_cache),
        prefix="/placement",
        dependencies=auth,
    )
    return app


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
