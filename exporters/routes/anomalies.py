"""``/v1/anomalies``: the current anomalies of every provider."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from .._api_errors import ERRORS
from .._api_models import AnomalyPage
from .._params import decode_cursor, decode_host_ref, encode_cursor
from .._queries import anomaly_page
from ._common import ApiContext, Cursor, Limit, Str, anomaly_out, context

__all__ = ["router"]

router = APIRouter(tags=["v1"])


@router.get("/v1/anomalies", response_model=AnomalyPage, responses=ERRORS)
def list_anomalies(
    ctx: Annotated[ApiContext, Depends(context)],
    code: Str = None,
    target: Str = None,
    host: Annotated[str | None, Query(max_length=1024, description="A host's id")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> AnomalyPage:
    """Current anomalies (as of each provider's last collection), oldest first."""
    after = decode_cursor("a", cursor) if cursor else 0
    with ctx.store.session() as session:
        targets = ctx.statuses(session)
        target_ids = None
        if target is not None:
            target_ids = [t.id for t in targets.values() if t.name == target]
        of_host = None
        if host is not None:
            key = decode_host_ref(host)
            ids = [t.id for t in targets.values() if key and t.name == key[0]]
            of_host = (ids, key[1] if key else "")
        rows = anomaly_page(
            session, after=after, limit=limit, code=code, target_ids=target_ids, host=of_host
        )
    page = [anomaly_out(r, targets) for r in rows[:limit]]
    next_cursor = encode_cursor("a", rows[limit - 1].id) if len(rows) > limit else None
    return AnomalyPage(anomalies=page, next_cursor=next_cursor)
