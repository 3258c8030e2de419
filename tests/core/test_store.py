"""The store on SQLite and PostgreSQL: whole-or-nothing writes, failures keep earlier data."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from resmon.contract import Anomaly, HostReport
from resmon.contract.testing import fake_report
from resmon.runner import CollectionOutcome
from resmon.store import Store, StoreError, StoreWriter, TargetSpec, migration_head, models
from resmon.store._writer import BACKLOG_PER_TARGET

SPEC = TargetSpec(name="t1", collector="fake", url="fake://", interval_s=60)


def outcome(reports: list[HostReport], **kwargs: object) -> CollectionOutcome:
    return CollectionOutcome(
        target="t1", collector="fake", started_at=datetime.now(UTC), duration_s=0.25,
        reports=reports, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def count(store: Store, table: type[models.Base]) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def test_success_stores_every_part(store: Store) -> None:
    report = fake_report("h1", target="t1", vcpus=8, used_vcpus=3)
    run_id = store.record(SPEC, outcome([report], anomalies={("t1", "h1"): [
        Anomaly(code="x.y", message="core found this")]}))  # fmt: skip
    assert run_id > 0
    [stored] = store.reports("t1")
    assert stored == report
    with store.session() as session:
        vcpu = session.scalars(
            select(models.Inventory).where(models.Inventory.resource_class == "VCPU")
        ).one()
        assert (vcpu.total, vcpu.used, vcpu.capacity, vcpu.free) == (8, 3, 32, 29)
        assert session.scalars(select(models.HostTrait.trait)).all() == ["HW_CPU_X86_AVX2"]
        si = session.scalars(select(models.SupportedInstance)).one()
        assert (si.arch, si.hv_type, si.vm_mode) == ("x86_64", "kvm", "hvm")
        [anomaly] = session.scalars(select(models.Anomaly)).all()
        assert (anomaly.code, anomaly.source) == ("x.y", "core")
        target = session.scalars(select(models.Target)).one()
        assert (target.last_status, target.consecutive_failures) == ("success", 0)
        assert target.last_success_at is not None


def test_failure_keeps_earlier_data_and_marks_the_target(store: Store) -> None:
    store.record(SPEC, outcome([fake_report("h1", target="t1")]))
    before = store.reports("t1")
    store.record(SPEC, outcome([], error_kind="timeout", error_message="slow"))
    assert store.reports("t1") == before
    [target] = store.targets()
    assert (target.last_status, target.last_error_kind, target.consecutive_failures) == (
        "failed", "timeout", 1,
    )  # fmt: skip
    assert target.last_success_at is not None
    assert [r.status for r in store.runs("t1")] == ["success", "failed"]


def test_second_collection_replaces_and_logs_capacity_changes(store: Store) -> None:
    store.record(SPEC, outcome([fake_report("h1", target="t1", vcpus=8),
                                fake_report("h2", target="t1")]))  # fmt: skip
    store.record(SPEC, outcome([fake_report("h1", target="t1", vcpus=16)]))
    assert [r.identity.host_id for r in store.reports("t1")] == ["h1"]
    assert count(store, models.Inventory) == 3
    with store.session() as session:
        changes = {
            (c.host_id, c.resource_class, c.field, c.old_value, c.new_value)
            for c in session.scalars(select(models.CapacityChange))
        }
    assert ("h1", "VCPU", "total", 8, 16) in changes
    assert ("h2", "*", "provider_removed", 1, None) in changes
    assert ("h1", "*", "provider_added", None, 1) in changes


@pytest.mark.postgres
def test_write_refused_by_postgres_is_whole_or_nothing(postgres_url: str) -> None:
    # SQLite does not enforce VARCHAR lengths, so only PostgreSQL can refuse this write.
    store = Store(postgres_url)
    store.upgrade()
    store.record(SPEC, outcome([fake_report("h1", target="t1")]))
    before = store.reports("t1")
    broken = fake_report("h2", target="t1")
    broken.identity.hostname = "x" * 5000
    with pytest.raises(StoreError):
        store.record(SPEC, outcome([fake_report("h3", target="t1"), broken]))
    assert store.reports("t1") == before
    assert [r.error_kind for r in store.runs("t1")] == [None, "store_error"]
    store.close()


def test_targets_are_isolated(store: Store) -> None:
    other = TargetSpec(name="t2", collector="fake", url="fake://")
    store.record(SPEC, outcome([fake_report("h1", target="t1")]))
    o2 = outcome([fake_report("h1", target="t2")])
    o2.target = "t2"
    store.record(other, o2)
    store.record(SPEC, outcome([]))  # t1 now has no providers; t2 keeps its own
    assert store.reports("t1") == []
    assert len(store.reports("t2")) == 1


def test_bad_database_url_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="not valid"):
        Store("no-such-scheme")


def test_revision_is_none_before_migrating_and_the_head_after(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path / 'r.db'}")
    try:
        assert s.revision() is None
        s.upgrade()
        assert s.revision() == migration_head()
    finally:
        s.close()


def test_counters_add_up_across_replicas(database_url: str) -> None:
    """Several stores (as replicas would, each with its own engine) recording the same target's
    runs at once: every run is counted once, by outcome, in ``collection_counts``."""
    stores = [Store(database_url) for _ in range(3)]
    stores[0].upgrade()
    start = threading.Barrier(len(stores))

    def record(store: Store) -> None:
        start.wait(timeout=60)
        for n in range(10):
            failed = {"error_kind": "timeout", "error_message": "slow"} if n % 2 else {}
            store.record(SPEC, outcome([] if failed else [fake_report("h1", target="t1")],
                                       **failed))  # fmt: skip

    threads = [threading.Thread(target=record, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    try:
        with stores[0].session() as session:
            counts = set(
                session.execute(
                    select(models.CollectionCount.error_kind, models.CollectionCount.runs)
                )
            )
        assert counts == {("", 15), ("timeout", 15)}
        assert count(stores[0], models.CollectionRun) == 30
    finally:
        for store in stores:
            store.close()


@pytest.mark.parametrize("database_down", [False, True])
def test_writer_backlog_while_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_down: bool
) -> None:
    """A writer held up while the database answers stores every collection once it catches up
    (up to BACKLOG_PER_TARGET per target, in order); while the database is away, only the
    newest one of a target waits."""
    store = Store(f"sqlite:///{tmp_path / 'resmon.db'}")
    store.upgrade()
    if database_down:
        monkeypatch.setattr(store, "outage", lambda: "OperationalError: unable to open database")
    writer = StoreWriter(store)
    starts = [datetime(2026, 12, 1, 0, 0, n, tzinfo=UTC) for n in range(BACKLOG_PER_TARGET + 2)]
    collections = []
    for started in starts:
        collections.append(outcome([fake_report("h1", target="t1")]))
        collections[-1].started_at = started
    try:
        with writer.exclusive():  # the writer is held up (pruning, say) meanwhile
            writer.submit(SPEC, collections[0])
            deadline = time.monotonic() + 60
            while writer.backlog() and time.monotonic() < deadline:
                time.sleep(0.01)  # until the writer took it and waits for the block to end
            for late in collections[1:]:
                writer.submit(SPEC, late)
        assert writer.flush(timeout_s=60)
    finally:
        writer.close(timeout_s=10)
    stored = [run.started_at.replace(tzinfo=UTC) for run in store.runs("t1")]
    store.close()
    # The first was taken before the writer was held; of the others, the newest ones are kept.
    kept = 1 if database_down else BACKLOG_PER_TARGET
    assert stored == [starts[0], *starts[-kept:]]
    assert writer.dropped == len(starts) - 1 - kept
