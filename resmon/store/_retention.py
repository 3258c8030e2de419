"""Retention: old collection runs, anomalies and capacity changes deleted in small batches.

Each batch is its own short transaction (rows picked oldest first through the time indexes,
``SKIP LOCKED`` on PostgreSQL so replicas pruning at once share the work instead of queueing),
so a collection's write never waits for more than one batch. A target's newest run and the run
its hosts point at are always kept, however old.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import Table, and_, delete, exists, select
from sqlalchemy.exc import SQLAlchemyError

from . import models
from ._store import Store

__all__ = ["Pruned", "Retention", "prune", "start_pruning"]

log = logging.getLogger("resmon.store.retention")

_RUNS = models.Base.metadata.tables["collection_runs"]
_HOSTS = models.Base.metadata.tables["hosts"]
_ANOMALIES = models.Base.metadata.tables["anomalies"]
_CHANGES = models.Base.metadata.tables["capacity_changes"]


@dataclass(frozen=True)
class Retention:
    """How many days each kind of history is kept (0: for ever) and the batch size."""

    collection_runs_days: float = 14.0
    anomalies_days: float = 30.0
    capacity_changes_days: float = 365.0
    batch_size: int = 500


@dataclass
class Pruned:
    """Rows deleted by one pass, per table."""

    counts: dict[str, int] = field(default_factory=dict)


def prune(
    store: Store,
    retention: Retention,
    *,
    now: datetime | None = None,
    exclusive: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> Pruned:
    """Delete history older than the retention, batch by batch, until none is left; each batch
    within ``exclusive()`` (the daemon's writer, between two collections)."""
    now = now or datetime.now(UTC)
    runs = _RUNS.alias("newer")
    plans: list[tuple[Table, float, object]] = [
        (
            _RUNS,
            retention.collection_runs_days,
            and_(
                _RUNS.c.started_at < now - timedelta(days=retention.collection_runs_days),
                # Keep each target's newest run and the runs its hosts point at.
                exists().where(runs.c.target_id == _RUNS.c.target_id, runs.c.id > _RUNS.c.id),
                ~exists().where(_HOSTS.c.last_run_id == _RUNS.c.id),
            ),
        ),
        (
            _ANOMALIES,
            retention.anomalies_days,
            _ANOMALIES.c.detected_at < now - timedelta(days=retention.anomalies_days),
        ),
        (
            _CHANGES,
            retention.capacity_changes_days,
            _CHANGES.c.changed_at < now - timedelta(days=retention.capacity_changes_days),
        ),
    ]
    result = Pruned()
    for table, days, condition in plans:
        result.counts[table.name] = 0
        if days <= 0:
            continue
        while True:
            with exclusive():
                deleted = _delete_batch(store, table, condition, retention.batch_size)
            result.counts[table.name] += deleted
            if deleted < retention.batch_size:
                break
    return result


def _delete_batch(store: Store, table: Table, condition: object, size: int) -> int:
    pick = select(table.c.id).where(condition).order_by(table.c.id).limit(size)  # type: ignore[arg-type]
    with store.connection() as conn:
        if conn.dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        ids = list(conn.scalars(pick))
        if ids:
            conn.execute(delete(table).where(table.c.id.in_(ids)))
    return len(ids)


def start_pruning(
    store: Store,
    retention: Retention,
    *,
    interval_s: float,
    stop: threading.Event,
    exclusive: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> threading.Thread:
    """Prune every ``interval_s`` in a daemon thread until ``stop`` is set."""

    def loop() -> None:
        while not stop.is_set():
            try:
                pruned = prune(store, retention, exclusive=exclusive)
            except SQLAlchemyError as exc:
                log.warning("pruning old history failed (retrying later): %s", exc)
            else:
                if any(pruned.counts.values()):
                    log.info("pruned old history: %s", pruned.counts)
            stop.wait(interval_s)

    thread = threading.Thread(target=loop, name="resmon-retention", daemon=True)
    thread.start()
    return thread
