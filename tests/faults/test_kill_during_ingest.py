"""``kill -9`` of a process while it stores collections, 30 times per backend, each followed by an
integrity check of what the database holds.

The writer is a process forked from a server that imported resmon once (multiprocessing's
``forkserver``), so a kill costs a fork, not an interpreter start. It stores large collections
(dozens of providers, each with inventories, traits, NUMA cells and supported instances)
through :meth:`Store.record`, the daemon's one write path, without pause: the kill lands at a
random moment, most often inside a transaction. After each kill, with the same database:

* every provider row points at a run that exists and is its target's newest successful run;
* that run's provider count is the target's provider count, and each provider holds every child
  row its stored report lists (no half-written provider);
* the target's status agrees with its newest run (status, error kind, consecutive failures);
* the runs stored are exactly the writes that committed (one more at most: the write whose
  commit the kill overtook before it was counted): no partial run is visible;
* change-log rows and anomalies point at runs that exist; SQLite passes ``integrity_check``.
"""

from __future__ import annotations

import multiprocessing
import random
from datetime import UTC, datetime
from multiprocessing.synchronize import Event
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import selectinload

from resmon.contract.testing import fake_report
from resmon.outcome import CollectionOutcome
from resmon.store import Store, TargetSpec, models

from .daemon_process import wait_for

KILLS = 30
TARGETS = ("big-a", "big-b")
#: Providers per collection: varied, so providers are added and removed between writes.
HOSTS = (40, 30, 50)
#: Longest wait, after the writer entered its first write, before the kill.
KILL_WITHIN_S = 0.5

#: What the writer says: how many writes it began, and how many committed.
_BEGUN = 0
_COMMITTED = 1


def _outcome(target: str, sequence: int) -> CollectionOutcome:
    """A collection: a large success, or (every fourth) a failure."""
    started = datetime.now(UTC)
    if sequence % 4 == 3:
        return CollectionOutcome(
            target=target, collector="fake", started_at=started, duration_s=0.1,
            error_kind="unreachable", error_message=f"attempt {sequence} failed",
        )  # fmt: skip
    hosts = HOSTS[sequence % len(HOSTS)]
    reports = [
        fake_report(
            f"host-{i}",
            target=target,
            vcpus=8 + sequence % 5,
            used_vcpus=i % 4,
            traits=("HW_CPU_X86_AVX2", f"CUSTOM_RACK_{i % 7}"),
        )  # fmt: skip
        for i in range(hosts)
    ]
    return CollectionOutcome(
        target=target, collector="fake", started_at=started, duration_s=0.5, reports=reports
    )


def _ingest(url: str, first_write: Event, counts: Any, seed: int) -> None:
    """The writer: stores collections until killed. ``counts`` is shared memory without a lock
    (a lock held at the kill would stay held): the writer alone writes it while it lives."""
    store = Store(url)
    sequence = seed
    while True:
        target = TARGETS[sequence % len(TARGETS)]
        outcome = _outcome(target, sequence)
        spec = TargetSpec(name=target, collector="fake", url="fake://", interval_s=60)
        counts[_BEGUN] += 1
        first_write.set()
        store.record(spec, outcome)
        counts[_COMMITTED] += 1
        sequence += 1


def check_integrity(store: Store) -> tuple[int, int]:
    """Assert the invariants of the module docstring; returns (runs, providers)."""
    with store.session() as session:
        runs = session.scalar(select(func.count()).select_from(models.CollectionRun)) or 0
        providers = session.scalar(select(func.count()).select_from(models.Host)) or 0
        for target in session.scalars(select(models.Target)):
            history = list(session.scalars(
                select(models.CollectionRun).where(models.CollectionRun.target_id == target.id)
                .order_by(models.CollectionRun.id)
            ))  # fmt: skip
            hosts = list(session.scalars(
                select(models.Host).where(models.Host.target_id == target.id).options(
                    selectinload(models.Host.inventories), selectinload(models.Host.traits),
                    selectinload(models.Host.numa_cells),
                    selectinload(models.Host.supported_instances),
                )
            ))  # fmt: skip
            successes = [r for r in history if r.status == "success"]
            if not history:
                assert target.last_status == "never" and not hosts, target.name
                continue
            newest = history[-1]
            assert target.last_status == newest.status, target.name
            assert target.last_error_kind == newest.error_kind, target.name
            failures_after = len(history) - 1 - history.index(successes[-1]) if successes else len(
                history)  # fmt: skip
            assert target.consecutive_failures == failures_after, target.name
            if not successes:
                assert not hosts, target.name
                continue
            last = successes[-1]
            assert {h.last_run_id for h in hosts} == {last.id}, (target.name, last.id)
            assert len(hosts) == last.provider_count, (target.name, len(hosts), last.provider_count)
            for host in hosts:
                report = host.report
                assert len(host.inventories) == len(report["inventories"]), host.host_id
                assert len(host.traits) == len(report["traits"]), host.host_id
                assert len(host.numa_cells) == len(report["numa_cells"]), host.host_id
                assert len(host.supported_instances) == len(report["supported_instances"])
        for table in (models.CapacityChange, models.Anomaly):
            dangling = session.scalar(
                select(func.count()).select_from(table).where(
                    table.run_id.is_not(None),
                    ~table.run_id.in_(select(models.CollectionRun.id)),
                )
            )  # fmt: skip
            assert dangling == 0, table.__tablename__
        if session.get_bind().dialect.name == "sqlite":
            assert session.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    return runs, providers


def test_kill_9_during_ingest(database_url: str) -> None:
    store = Store(database_url)
    store.upgrade()
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, "resmon.store", "sqlalchemy", "psycopg"])
    counts = context.Array("q", 2, lock=False)
    chance = random.Random(KILLS)
    mid_write = 0
    try:
        for kill in range(KILLS):
            first_write = context.Event()
            writer = context.Process(
                target=_ingest, args=(database_url, first_write, counts, kill), daemon=True
            )
            writer.start()
            assert first_write.wait(60), "the writer never began a write"
            if kill % 2:  # every other writer commits something first, however slow the disk
                before = counts[_COMMITTED]
                wait_for(lambda before=before: counts[_COMMITTED] > before, 60, "a commit")
            writer.join(chance.uniform(0, KILL_WITHIN_S))
            assert writer.is_alive(), f"the writer died by itself (exit code {writer.exitcode})"
            writer.kill()
            writer.join(10)
            assert writer.exitcode == -9
            begun, committed = counts[_BEGUN], counts[_COMMITTED]
            mid_write += begun > committed
            runs, providers = check_integrity(store)
            # Every counted commit is stored; at most one more (committed, not yet counted).
            assert committed <= runs <= begun, (kill, committed, runs, begun)
            counts[_COMMITTED] = counts[_BEGUN] = runs  # the next writer counts from here
        assert providers > 0 and runs >= KILLS // 2, (providers, runs)
        # Most kills hit a transaction; at least some must, or nothing was tested.
        assert mid_write >= KILLS // 3, f"only {mid_write} of {KILLS} kills landed mid-write"
    finally:
        store.close()
