"""``/v1/hosts``: providers, one provider with its report, and its capacity change log."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from .._api_errors import ERRORS, NOT_FOUND
from .._api_models import ChangeOut, ChangePage, HostDetail, HostPage
from .._params import decode_cursor, decode_host_ref, encode_cursor, not_found
from .._queries import (
    aware,
    change_page,
    host_anomalies,
    host_page,
    host_stored,
    host_with_report,
)
from ._common import (
    ApiContext,
    Cursor,
    Kinds,
    Limit,
    States,
    Str,
    anomaly_out,
    collection_status,
    context,
    summaries,
)

__all__ = ["router"]

router = APIRouter(tags=["v1"])
Context = Annotated[ApiContext, Depends(context)]
HostRef = Annotated[str, Path(max_length=1024, description="A host's id from /v1/hosts.")]


@router.get("/v1/hosts", response_model=HostPage, responses=ERRORS)
def list_hosts(
    ctx: Context,
    hv_type: Str = None,
    arch: Str = None,
    parent: Annotated[
        str | None,
        Query(max_length=255, pattern=r"^[^\x00]*$", description="parent_id (cluster)"),
    ] = None,
    target: Str = None,
    state: States | None = None,
    provider_kind: Kinds | None = None,
    stale: bool | None = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> HostPage:
    """Providers ordered by their row, filtered; follow ``next_cursor`` for more."""
    after = decode_cursor("h", cursor) if cursor else 0
    with ctx.store.session() as session:
        targets = ctx.statuses(session)
        target_ids = None
        if target is not None:
            target_ids = [t.id for t in targets.values() if t.name == target]
        if stale is not None:
            fresh_or_stale = [t.id for t in targets.values() if t.stale == stale]
            target_ids = fresh_or_stale if target_ids is None else [
                i for i in target_ids if i in fresh_or_stale
            ]  # fmt: skip
        rows = host_page(
            session, after=after, limit=limit, target_ids=target_ids,
            equal=(("hv_type", hv_type), ("arch", arch), ("parent_id", parent),
                   ("state", state), ("provider_kind", provider_kind)),
        )  # fmt: skip
        page = summaries(session, rows[:limit], targets)
    next_cursor = encode_cursor("h", rows[limit - 1].id) if len(rows) > limit else None
    return HostPage(hosts=page, next_cursor=next_cursor)


@router.get("/v1/hosts/{host}", response_model=HostDetail, responses={**ERRORS, **NOT_FOUND})
def show_host(ctx: Context, host: HostRef) -> HostDetail:
    """One provider: its full normalised report, its anomalies, its last collection."""
    key = decode_host_ref(host)
    if key is None:
        raise not_found(host)
    with ctx.store.session() as session:
        targets = ctx.statuses(session)
        by_name = {t.name: t for t in targets.values()}
        target = by_name.get(key[0])
        if target is None:
            raise not_found(host)
        row = host_with_report(session, target.id, key[1])
        if row is None:
            raise not_found(host)
        summary = summaries(session, [row], targets)[0]
        anomalies = host_anomalies(session, row.id)
    return HostDetail(
        host=summary,
        report=row.report,
        anomalies=[anomaly_out(a, targets) for a in anomalies],
        last_collection=collection_status(target),
    )


@router.get(
    "/v1/hosts/{host}/changes", response_model=ChangePage, responses={**ERRORS, **NOT_FOUND}
)
def list_host_changes(
    ctx: Context, host: HostRef, limit: Limit = 100, cursor: Cursor = None
) -> ChangePage:
    """The provider's capacity change log, oldest first (kept as long as the retention
    says); also served for a provider that has since gone away."""
    key = decode_host_ref(host)
    if key is None:
        raise not_found(host)
    after = decode_cursor("c", cursor) if cursor else 0
    with ctx.store.session() as session:
        rows = change_page(session, key[0], key[1], after=after, limit=limit)
        if not rows and after == 0 and not host_stored(session, key[0], key[1]):
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
