"""Retention of the history (runs, anomalies, capacity changes) and the change log in the API,
on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event, func, select, update

from exporters._params import encode_host_ref
from exporters.api import create_app
from exporters.prometheus import render_metrics
from resmon.contract import Anomaly
from resmon.contract.testing import fake_report
from resmon.runner import CollectionOutcome
from resmon.store import Pruned, Retention, Store, StoreWriter, TargetSpec, models, prune

OLD = datetime.now(UTC) - timedelta(days=400)  # beyond every default retention


def _record(
    store: Store, target: str, vcpus: int | None, *, started_at: datetime, kind: str = "unreachable"
) -> int:
    """A success reporting one host with ``vcpus``, or a failure of ``kind`` when ``vcpus`` is
    None."""
    reports = []
    if vcpus is not None:
        report = fake_report(f"{target}-host", target=target, vcpus=vcpus, memory_mib=1024)
        report.anomalies = [Anomaly(code="odd", field="cpu.model", message="odd")]
        reports = [report]
    outcome = CollectionOutcome(
        target=target, collector="fake", started_at=started_at, duration_s=0.1, reports=reports,
        error_kind=None if vcpus is not None else kind,
        error_message=None if vcpus is not None else "down",
    )  # fmt: skip
    return store.record(TargetSpec(target, "fake", "fake://1", 60.0), outcome)


def _count(store: Store, table: type[models.Base]) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(table)) or 0


def test_prune_keeps_recent_history_and_what_hosts_point_at(store: Store) -> None:
    # "steady": six old successes whose VCPU total changed each time, then a recent one.
    steady = [
        _record(store, "steady", 4 + n, started_at=OLD + timedelta(hours=n)) for n in range(6)
    ]
    newest = _record(store, "steady", 20, started_at=datetime.now(UTC))
    # "down": an old success, then old failures only: its hosts point at that success.
    down_success = _record(store, "down", 8, started_at=OLD)
    down_failures = [_record(store, "down", None, started_at=OLD + timedelta(hours=n + 1))
                     for n in range(4)]  # fmt: skip
    with store._write() as session:  # age the change log and the anomalies of "down"
        session.execute(update(models.CapacityChange).where(
            models.CapacityChange.run_id.in_(steady)).values(changed_at=OLD))  # fmt: skip
        session.execute(update(models.Anomaly).where(
            models.Anomaly.run_id == down_success).values(detected_at=OLD))  # fmt: skip
    changes_before = _count(store, models.CapacityChange)

    pruned = prune(store, Retention(batch_size=2))

    with store.session() as session:
        kept = set(session.scalars(select(models.CollectionRun.id)))
        hosts = dict(session.execute(select(models.Host.host_id, models.Host.last_run_id)).all())
    assert kept == {newest, down_success, down_failures[-1]}
    assert hosts == {"steady-host": newest, "down-host": down_success}
    assert pruned.counts["collection_runs"] == 6 + 3
    # The aged change log of "steady" (added, then 5 VCPU totals) is gone; its newest change
    # and the unaged one of "down" stay.
    assert pruned.counts["capacity_changes"] == 6
    assert _count(store, models.CapacityChange) == changes_before - 6 == 2
    # The old anomaly of "down" went, the current one of "steady" stayed.
    assert pruned.counts["anomalies"] == 1 and _count(store, models.Anomaly) == 1
    # A second pass finds nothing more; 0 days keeps everything.
    assert set(prune(store, Retention(batch_size=2)).counts.values()) == {0}
    assert set(prune(store, Retention(0, 0, 0)).counts.values()) == {0}


def test_host_changes_in_the_api(store: Store) -> None:
    for n, vcpus in enumerate((4, 8, 8, 16)):
        _record(store, "kvm", vcpus, started_at=OLD + timedelta(hours=n))
    ref = encode_host_ref("kvm", "kvm-host")
    with TestClient(create_app(store)) as client:
        body = client.get(f"/v1/hosts/{ref}/changes").json()
        assert body["next_cursor"] is None
        changes = [(c["resource_class"], c["field"], c["old_value"], c["new_value"])
                   for c in body["changes"]]  # fmt: skip
        assert changes[0] == ("*", "provider_added", None, 1)
        assert [c for c in changes if c[0] == "VCPU"] == [
            ("VCPU", "total", 4, 8), ("VCPU", "total", 8, 16)
        ]  # fmt: skip
        # Paged with a cursor, each change once.
        seen, url = [], f"/v1/hosts/{ref}/changes?limit=1"
        while url:
            page = client.get(url).json()
            seen += [c["id"] for c in page["changes"]]
            cursor = page["next_cursor"]
            url = f"/v1/hosts/{ref}/changes?limit=1&cursor={cursor}" if cursor else ""
        assert seen == [c["id"] for c in body["changes"]]
        missing = client.get(f"/v1/hosts/{encode_host_ref('kvm', 'nope')}/changes")
        assert missing.status_code == 404
        assert missing.json()["errors"][0]["code"] == "resmon.host.not_found"
        bad = client.get(f"/v1/hosts/{ref}/changes?cursor=zzz")
        assert bad.status_code == 400


def _counters(store: Store) -> dict[tuple[str, str], float]:
    """The ``*_total`` samples of /metrics: (family, kind) -> value, "" for runs_total."""
    out = {}
    for family in text_string_to_metric_families(render_metrics(store).decode()):
        for sample in family.samples:
            if sample.name.startswith("resmon_collector_") and sample.name.endswith("_total"):
                out[sample.name, sample.labels.get("kind", "")] = sample.value
    return out


def test_counters_never_go_down_when_history_is_pruned(store: Store) -> None:
    # Old successes and failures of two kinds, then a recent success.
    for n, vcpus in enumerate((4, None, 4, None, 4)):
        _record(store, "flaky", vcpus, started_at=OLD + timedelta(hours=n))
    _record(store, "flaky", None, started_at=OLD + timedelta(hours=6), kind="timeout")
    _record(store, "flaky", 4, started_at=datetime.now(UTC))
    before = _counters(store)
    assert before == {
        ("resmon_collector_runs_total", ""): 7,
        ("resmon_collector_errors_total", "unreachable"): 2,
        ("resmon_collector_errors_total", "timeout"): 1,
    }

    assert prune(store, Retention()).counts["collection_runs"] == 6

    assert _counters(store) == before
    _record(store, "flaky", None, started_at=datetime.now(UTC), kind="timeout")
    after = _counters(store)
    assert after[("resmon_collector_runs_total", "")] == 8
    assert after[("resmon_collector_errors_total", "timeout")] == 2


def test_pruning_waits_for_the_writer_and_shares_its_connection(tmp_path: Path) -> None:
    """The daemon prunes between two collections: one connection for both, never two writers
    queueing for the database's lock (and no descriptors opened after start-up)."""
    store = Store(f"sqlite:///{tmp_path / 'resmon.db'}")
    store.upgrade()
    _record(store, "old", 4, started_at=OLD)
    _record(store, "old", 4, started_at=OLD + timedelta(hours=1))
    store.engine.dispose()
    connects: list[object] = []
    event.listen(store.engine, "connect", lambda *_: connects.append(1))
    writing, release = threading.Event(), threading.Event()
    record = store.record

    def slow_record(spec: TargetSpec, outcome: CollectionOutcome) -> int:
        with store.connection():  # a write in progress holds a connection
            writing.set()
            release.wait(timeout=60)
        return record(spec, outcome)

    writer = StoreWriter(store)
    try:
        store.record = slow_record  # type: ignore[method-assign]
        failed = CollectionOutcome(
            target="new", collector="fake", started_at=datetime.now(UTC), duration_s=0.1,
            error_kind="timeout", error_message="slow",
        )  # fmt: skip
        writer.submit(TargetSpec("new", "fake", "fake://1", 60.0), failed)
        assert writing.wait(timeout=60)
        pruned: list[Pruned] = []
        pruner = threading.Thread(
            target=lambda: pruned.append(prune(store, Retention(), exclusive=writer.exclusive))
        )
        pruner.start()
        pruner.join(timeout=0.5)
        assert not pruned  # waiting for the write in progress
        release.set()
        pruner.join(timeout=60)
        assert writer.flush(timeout_s=60)
    finally:
        release.set()
        writer.close(timeout_s=10)
    assert pruned[0].counts["collection_runs"] == 1
    assert len(connects) == 1
    store.close()
