"""Read queries over the store, shared by the Prometheus exporter and the query API.

Heavy reads use SQLAlchemy Core over the mapped tables (tuples, not ORM objects): a scrape or a
candidates query touches thousands of rows and must not build an object per row.

Staleness, the one rule both faces share: a target is *stale* when its last collection failed,
when it never succeeded, or when its last success is older than
``max(2 × interval_s, stale_after_s or 0)`` seconds. A provider is stale when its target is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import ScalarSelect, Select, and_, bindparam, exists, func, literal, select
from sqlalchemy.orm import Session

from resmon.store import INTERNAL_PREFIX

from ._tables import ANOMALIES, CHANGES, LEASES, RUNS, TRAITS
from ._tables import HOSTS as H
from ._tables import INVENTORIES as INV
from ._tables import SUPPORTED_INSTANCES as SI
from ._tables import TARGETS as T

__all__ = [
    "Candidate",
    "CandidateQuery",
    "TargetStatus",
    "anomaly_page",
    "anomaly_select",
    "aware",
    "candidates",
    "change_page",
    "host_anomalies",
    "host_columns",
    "host_counts",
    "host_page",
    "host_stored",
    "host_with_report",
    "inventories_of",
    "target_statuses",
]


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class TargetStatus:
    """A target row plus the staleness verdict of :func:`target_statuses`."""

    id: int
    name: str
    collector: str
    url: str
    interval_s: float
    last_status: str
    last_error_kind: str | None
    last_error_message: str | None
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_duration_s: float | None
    consecutive_failures: int
    stale: bool
    #: Id of the target's latest collection run (None before the first): its providers' rows
    #: change only with a new run, so this is their generation.
    last_run_id: int | None = None
    #: The replica whose lease on the target is current (PostgreSQL replicas), else None.
    replica: str | None = None


def is_stale(
    last_status: str,
    last_success_at: datetime | None,
    interval_s: float,
    now: datetime,
    stale_after_s: float | None,
) -> bool:
    if last_status == "failed" or last_success_at is None:
        return True
    limit = max(2.0 * interval_s, stale_after_s or 0.0)
    return (now - last_success_at).total_seconds() > limit


def latest_run_id() -> ScalarSelect[Any]:
    """The latest collection run id of the target row in the enclosing query.

    One lookup in ``ix_collection_runs_target_id_id`` per target, however long the history.
    """
    return select(func.max(RUNS.c.id)).where(RUNS.c.target_id == T.c.id).scalar_subquery()


#: Every target with its latest run and current lease holder (built once: every API request
#: runs it, and building and keying the statement cost as much as running it on SQLite).
_STATUSES = select(
    T.c.id, T.c.name, T.c.collector, T.c.url, T.c.interval_s, T.c.last_status,
    T.c.last_error_kind, T.c.last_error_message, T.c.last_attempt_at,
    T.c.last_success_at, T.c.last_duration_s, T.c.consecutive_failures,
    latest_run_id().label("last_run_id"),
    select(LEASES.c.holder)
    .where(LEASES.c.target_id == T.c.id, LEASES.c.expires_at > bindparam("now"))
    .scalar_subquery().label("replica"),
).where(~T.c.name.startswith(INTERNAL_PREFIX, autoescape=True)).order_by(T.c.name)  # fmt: skip


def target_statuses(
    session: Session, *, now: datetime | None = None, stale_after_s: float | None = None
) -> list[TargetStatus]:
    """Every target ordered by name, with its staleness as of ``now`` (internal tasks, which
    have rows like targets, are left out)."""
    now = now or datetime.now(UTC)
    rows = session.execute(_STATUSES, {"now": now})
    out = []
    for r in rows:
        success = aware(r.last_success_at)
        out.append(
            TargetStatus(
                id=r.id, name=r.name, collector=r.collector, url=r.url,
                interval_s=float(r.interval_s), last_status=r.last_status,
                last_error_kind=r.last_error_kind, last_error_message=r.last_error_message,
                last_attempt_at=aware(r.last_attempt_at), last_success_at=success,
                last_duration_s=r.last_duration_s,
                consecutive_failures=r.consecutive_failures or 0,
                stale=is_stale(r.last_status, success, float(r.interval_s), now, stale_after_s),
                last_run_id=r.last_run_id, replica=r.replica,
            )
        )  # fmt: skip
    return out


def inventories_of(session: Session, host_pks: Iterable[int]) -> dict[int, dict[str, Any]]:
    """``{host_pk: {resource_class: record}}`` for the given providers, in one query."""
    pks = list(host_pks)
    out: dict[int, dict[str, Any]] = {pk: {} for pk in pks}
    if not pks:
        return out
    rows = session.execute(
        select(
            INV.c.host_pk, INV.c.resource_class, INV.c.total, INV.c.reserved,
            INV.c.hypervisor_reserved, INV.c.operator_reserved, INV.c.min_unit, INV.c.max_unit,
            INV.c.step_size, INV.c.allocation_ratio, INV.c.used, INV.c.capacity, INV.c.free,
        )
        .where(INV.c.host_pk.in_(pks))
        .order_by(INV.c.host_pk, INV.c.resource_class)
    )  # fmt: skip
    for r in rows:
        out[r.host_pk][r.resource_class] = {
            "total": r.total, "reserved": r.reserved,
            "hypervisor_reserved": r.hypervisor_reserved,
            "operator_reserved": r.operator_reserved, "min_unit": r.min_unit,
            "max_unit": r.max_unit, "step_size": r.step_size,
            "allocation_ratio": r.allocation_ratio, "used": r.used, "capacity": r.capacity,
            "free": r.free,
        }  # fmt: skip
    return out


@dataclass(frozen=True)
class CandidateQuery:
    """A parsed and validated ``GET /v1/candidates``.

    ``resources`` keeps the order given: the free amount of the first class orders the result
    (ties in a stable row order). ``instance`` is ``(arch, hv_type, vm_mode)``.
    """

    resources: tuple[tuple[str, int], ...]
    required: frozenset[str] = frozenset()
    forbidden: frozenset[str] = frozenset()
    instance: tuple[str, str, str] | None = None
    limit: int = 50
    order: Literal["most_free", "least_free"] = "most_free"
    include_stale: bool = False


@dataclass(frozen=True)
class Candidate:
    host_pk: int
    target_id: int


def candidates(
    session: Session, query: CandidateQuery, fresh_target_ids: Sequence[int] | None
) -> list[Candidate]:
    """Compute hosts that can take ``query``, ordered by free amount, in one SQL statement.

    A provider fits when it is an ``up`` compute host, has every requested class with
    ``free ≥ amount``, ``min_unit ≤ amount ≤ max_unit`` and ``amount % step_size = 0``
    (Placement's rules), has every required trait and no forbidden one, and lists the
    supported instance. ``fresh_target_ids`` limits the search to those targets (None: all).

    The query API answers from :class:`exporters._candidates.CandidateIndex` instead (this SQL
    is too slow on PostgreSQL for large fleets); the tests hold the index to this statement.
    """
    stmt = _candidates_statement(query, fresh_target_ids)
    return [Candidate(r.id, r.target_id) for r in session.execute(stmt)]


def _candidates_statement(
    query: CandidateQuery, fresh_target_ids: Sequence[int] | None
) -> Select[Any]:
    conditions = [H.c.provider_kind == "compute_host", H.c.state == "up"]
    if fresh_target_ids is not None:
        conditions.append(H.c.target_id.in_(list(fresh_target_ids)))
    stmt = select(H.c.id, H.c.target_id).select_from(H)
    order_by: list[Any] = []
    for index, (resource_class, amount) in enumerate(query.resources):
        inv = INV.alias(f"inv{index}")
        stmt = stmt.join(
            inv,
            and_(
                inv.c.host_pk == H.c.id,
                inv.c.resource_class == resource_class,
                inv.c.free >= amount,
                inv.c.min_unit <= amount,
                inv.c.max_unit >= amount,
                literal(amount) % inv.c.step_size == 0,
            ),
        )
        if index == 0:
            # Free amount of the first class, then its inventory row in the same direction:
            # exactly the order of ix_inventories_resource_class_free (an index keeps the row id
            # last), so the scan stops after ``limit`` fits instead of sorting every tie.
            columns = (inv.c.free, inv.c.id)
            order_by = [c.desc() if query.order == "most_free" else c.asc() for c in columns]
    for trait in sorted(query.required):
        conditions.append(exists().where(TRAITS.c.host_pk == H.c.id, TRAITS.c.trait == trait))
    for trait in sorted(query.forbidden):
        conditions.append(~exists().where(TRAITS.c.host_pk == H.c.id, TRAITS.c.trait == trait))
    if query.instance is not None:
        arch, hv_type, vm_mode = query.instance
        conditions.append(
            exists().where(
                SI.c.host_pk == H.c.id,
                SI.c.arch == arch,
                SI.c.hv_type == hv_type,
                SI.c.vm_mode == vm_mode,
            )
        )
    return stmt.where(*conditions).order_by(*order_by).limit(query.limit)


def count_hosts(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(H)) or 0)


# -- the query API's reads ---------------------------------------------------------------------


def host_columns() -> list[Any]:
    """The columns of a host summary (``/v1/hosts``)."""
    return [
        H.c.id, H.c.target_id, H.c.host_id, H.c.hostname, H.c.provider_kind, H.c.parent_id,
        H.c.state, H.c.hv_type, H.c.hypervisor_version, H.c.arch, H.c.cpu_model,
        H.c.collector_name, H.c.collected_at,
    ]  # fmt: skip


def host_page(
    session: Session,
    *,
    after: int,
    limit: int,
    equal: Sequence[tuple[str, str | None]],
    target_ids: Sequence[int] | None,
) -> Sequence[Any]:
    """Up to ``limit + 1`` host rows after row ``after``, in row order: the columns named in
    ``equal`` equal to their value where it is not None, the target among ``target_ids`` when
    given."""
    query = select(*host_columns()).where(H.c.id > after)
    for column, value in equal:
        if value is not None:
            query = query.where(H.c[column] == value)
    if target_ids is not None:
        query = query.where(H.c.target_id.in_(target_ids))
    return session.execute(query.order_by(H.c.id).limit(limit + 1)).all()


def host_with_report(session: Session, target_id: int, host_id: str) -> Any | None:
    """The host's summary columns and its stored report, or None."""
    return session.execute(
        select(*host_columns(), H.c.report).where(
            H.c.target_id == target_id, H.c.host_id == host_id
        )
    ).first()


def anomaly_select() -> Select[Any]:
    """Anomalies with their host's id and target id (filter and order as needed)."""
    return select(
        ANOMALIES.c.id, ANOMALIES.c.code, ANOMALIES.c.field, ANOMALIES.c.message,
        ANOMALIES.c.raw_value, ANOMALIES.c.source, ANOMALIES.c.detected_at, H.c.host_id,
        H.c.target_id,
    ).join(H, H.c.id == ANOMALIES.c.host_pk)  # fmt: skip


def host_anomalies(session: Session, host_pk: int) -> Sequence[Any]:
    return session.execute(
        anomaly_select().where(ANOMALIES.c.host_pk == host_pk).order_by(ANOMALIES.c.id)
    ).all()


def anomaly_page(
    session: Session,
    *,
    after: int,
    limit: int,
    code: str | None,
    target_ids: Sequence[int] | None,
    host: tuple[Sequence[int], str] | None,
) -> Sequence[Any]:
    """Up to ``limit + 1`` anomalies after ``after`` in id order, of ``code``, of a target
    among ``target_ids`` and of ``host`` (its possible target ids, its host_id) when given."""
    query = anomaly_select().where(ANOMALIES.c.id > after)
    if code is not None:
        query = query.where(ANOMALIES.c.code == code)
    if target_ids is not None:
        query = query.where(H.c.target_id.in_(target_ids))
    if host is not None:
        query = query.where(H.c.target_id.in_(host[0]), H.c.host_id == host[1])
    return session.execute(query.order_by(ANOMALIES.c.id).limit(limit + 1)).all()


def change_page(
    session: Session, target: str, host_id: str, *, after: int, limit: int
) -> Sequence[Any]:
    """Up to ``limit + 1`` capacity changes of the provider after ``after``, oldest first."""
    return session.execute(
        select(CHANGES.c.id, CHANGES.c.changed_at, CHANGES.c.resource_class, CHANGES.c.field,
               CHANGES.c.old_value, CHANGES.c.new_value, CHANGES.c.run_id)
        .where(CHANGES.c.target_name == target, CHANGES.c.host_id == host_id,
               CHANGES.c.id > after)
        .order_by(CHANGES.c.id)
        .limit(limit + 1)
    ).all()  # fmt: skip


def host_stored(session: Session, target: str, host_id: str) -> bool:
    """Whether the store holds the provider now."""
    row = session.execute(
        select(H.c.id)
        .join(T, T.c.id == H.c.target_id)
        .where(T.c.name == target, H.c.host_id == host_id)
    ).first()
    return row is not None


def host_counts(session: Session) -> dict[int, int]:
    """Providers per target id."""
    return {
        target_id: n
        for target_id, n in session.execute(
            select(H.c.target_id, func.count()).group_by(H.c.target_id)
        )
    }
