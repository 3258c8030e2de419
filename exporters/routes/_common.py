"""What the routers share: the app's context, query parameter types and the serialisers of
stored rows into response models."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import Query, Request
from sqlalchemy.orm import Session

from resmon.contract import HostState, ProviderKind
from resmon.store import Store, migration_head

from .._answer_cache import AnswerCache
from .._api_models import AnomalyOut, CollectionStatus, HostSummary, InventoryRecord
from .._candidates import CandidateIndex
from .._params import encode_host_ref
from .._queries import TargetStatus, aware, inventories_of, target_statuses
from .._sync_status import SyncStatus

__all__ = [
    "MAX_LIMIT",
    "ApiContext",
    "Cursor",
    "Kinds",
    "Limit",
    "States",
    "Str",
    "anomaly_out",
    "collection_status",
    "context",
    "summaries",
]

#: Largest page or candidate list a query may ask for.
MAX_LIMIT = 1000


@dataclass
class ApiContext:
    """The store and settings of one app, shared by its routes."""

    store: Store
    stale_after_s: float | None
    candidate_index: CandidateIndex = field(default_factory=CandidateIndex)
    answer_cache: AnswerCache = field(default_factory=AnswerCache)
    #: The Placement sync this process runs, if any (``resmon run`` with ``[placement]``).
    placement_status: Callable[[], SyncStatus] | None = None
    _head_revision: str | None = None

    def statuses(self, session: Session) -> dict[int, TargetStatus]:
        return {t.id: t for t in target_statuses(session, stale_after_s=self.stale_after_s)}

    def head_revision(self) -> str:
        """The database revision this version needs (read from the migrations once)."""
        if self._head_revision is None:
            self._head_revision = migration_head()
        return self._head_revision


async def context(request: Request) -> ApiContext:
    """The app's :class:`ApiContext` (a dependency; ``async`` as it never waits, so that
    FastAPI does not run it in its thread pool)."""
    ctx = request.app.state.resmon
    assert isinstance(ctx, ApiContext)
    return ctx


# Query parameter types: bounded strings (no NUL: PostgreSQL text cannot hold it).
Str = Annotated[str | None, Query(max_length=255, pattern=r"^[^\x00]*$")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"1..{MAX_LIMIT}")]
Cursor = Annotated[str | None, Query(max_length=100, description="next_cursor of the last page")]
States = Literal["up", "maintenance", "disconnected", "not_responding", "standby", "unknown"]
Kinds = Literal["compute_host", "cluster", "shared_storage"]
assert set(States.__args__) == {s.value for s in HostState}  # type: ignore[attr-defined]
assert set(Kinds.__args__) == {k.value for k in ProviderKind}  # type: ignore[attr-defined]


def collection_status(t: TargetStatus) -> CollectionStatus:
    return CollectionStatus(
        status=t.last_status, stale=t.stale, error_kind=t.last_error_kind,
        error_message=t.last_error_message, last_attempt_at=t.last_attempt_at,
        last_success_at=t.last_success_at, duration_s=t.last_duration_s,
        consecutive_failures=t.consecutive_failures,
    )  # fmt: skip


def summaries(
    session: Session, rows: Sequence[Any], targets: dict[int, TargetStatus]
) -> list[HostSummary]:
    """Host rows (of :func:`exporters._queries.host_columns`) with their inventories."""
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


def anomaly_out(row: Any, targets: dict[int, TargetStatus]) -> AnomalyOut:
    """An anomaly row (of :func:`exporters._queries.anomaly_select`)."""
    target = targets[row.target_id].name
    return AnomalyOut(
        id=row.id, host=encode_host_ref(target, row.host_id), target=target,
        host_id=row.host_id, code=row.code, field=row.field, message=row.message,
        raw_value=row.raw_value, source=row.source, detected_at=aware(row.detected_at),
    )  # fmt: skip
