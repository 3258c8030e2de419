"""``/v1/targets``: the configured targets and how their collections went."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from .._api_errors import ERRORS
from .._api_models import TargetList, TargetOut
from .._queries import host_counts, target_statuses
from ._common import ApiContext, collection_status, context

__all__ = ["router"]

router = APIRouter(tags=["v1"])


@router.get("/v1/targets", response_model=TargetList, responses=ERRORS)
def list_targets(ctx: Annotated[ApiContext, Depends(context)]) -> TargetList:
    """Every target with the status of its last collection and its provider count."""
    with ctx.store.session() as session:
        targets = target_statuses(session, stale_after_s=ctx.stale_after_s)
        counts = host_counts(session)
    return TargetList(
        targets=[
            TargetOut(
                name=t.name,
                collector=t.collector,
                interval_s=t.interval_s,
                hosts=counts.get(t.id, 0),
                collection=collection_status(t),
                replica=t.replica,
            )  # fmt: skip
            for t in targets
        ]
    )
