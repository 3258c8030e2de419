"""``/v1/placement/status``: how the Placement sync went."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends

from .._api_errors import ERRORS
from .._api_models import PlacementSyncOut
from .._queries import aware
from .._sync_status import TASK_NAME
from ._common import ApiContext, context

__all__ = ["router"]

router = APIRouter(tags=["v1"])


def _at(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


@router.get("/v1/placement/status", response_model=PlacementSyncOut, responses=ERRORS)
def placement_status(ctx: Annotated[ApiContext, Depends(context)]) -> PlacementSyncOut:
    """The last Placement sync as stored (whichever replica ran it), with this process's own
    counts when it runs the syncs; ``status: never`` when no sync ever ran."""
    stored = ctx.store.task_status(TASK_NAME)
    mine = ctx.placement_status() if ctx.placement_status is not None else None
    out = PlacementSyncOut(
        configured=mine is not None, status="never", error_kind=None, error_message=None,
        last_attempt_at=None, last_success_at=None, duration_s=None, consecutive_failures=0,
        holder=stored.holder if stored else None, mode=None, interval_s=None, running=False,
        runs=0, errors={}, providers=None, writes=None,
    )  # fmt: skip
    if stored is not None and stored.last_status != "never":
        out.status, out.error_kind, out.error_message = (
            stored.last_status,
            stored.error_kind,
            stored.error_message,
        )
        out.last_attempt_at = aware(stored.last_attempt_at)
        out.last_success_at = aware(stored.last_success_at)
        out.duration_s, out.consecutive_failures = (
            stored.last_duration_s,
            stored.consecutive_failures,
        )
    if mine is not None:
        out.mode, out.interval_s, out.running = mine.mode, mine.interval_s, mine.running
        out.runs, out.errors = mine.runs, dict(mine.errors)
        out.providers, out.writes = mine.providers, mine.writes
        if mine.status == "waiting" and out.status == "never":
            out.status = "waiting"
        # The newest word: this process's own last sync, if it is newer than the stored one
        # (whose write may have failed with the database).
        mine_at = _at(mine.last_attempt_at)
        if mine_at is not None and (out.last_attempt_at is None or mine_at > out.last_attempt_at):
            out.status, out.error_kind, out.error_message = (
                mine.status,
                mine.error_kind,
                mine.error_message,
            )
            out.last_attempt_at, out.duration_s = mine_at, mine.duration_s
            out.last_success_at = _at(mine.last_success_at) or out.last_success_at
            out.consecutive_failures = mine.consecutive_failures
    return out
