"""Daemon replicas: three ``resmon run`` processes sharing PostgreSQL lease 60 targets (libvirt's
built-in ``test:///default`` driver), and one daemon per SQLite file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from exporters.api import create_app
from resmon.store import Store, models

TARGETS = 60
INTERVAL_S = 10.0
TTL_S = 3.0


def _config(tmp_path: Path, database_url: str, targets: int) -> Path:
    body = (
        f'[resmon]\ndatabase_url = "{database_url}"\nlisten = ""\nmax_workers = {targets}\n\n'
        f"[replicas]\nlease_ttl_s = {TTL_S}\n"
    )
    for n in range(targets):
        body += (
            f'\n[[targets]]\nname = "t{n:02d}"\ncollector = "libvirt"\nurl = "test:///default"\n'
            f"interval_s = {INTERVAL_S}\ntimeout_s = 2\n"
        )
    path = tmp_path / "resmon.toml"
    path.write_text(body)
    return path


def _start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "resmon.cli", "run", "--no-serve", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _holders(store: Store) -> Counter[str]:
    """Current lease holders (database clock) → how many targets each holds."""
    with store.session() as session:
        now = session.scalar(select(func.now()))
        rows = session.scalars(
            select(models.TargetLease.holder).where(models.TargetLease.expires_at > now)
        )
        return Counter(holder for holder in rows if holder is not None)


def _wait_for(condition: object, timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


@pytest.mark.postgres
def test_three_replicas_share_and_take_over(tmp_path: Path, postgres_url: str) -> None:
    store = Store(postgres_url)
    store.upgrade()
    config = _config(tmp_path, postgres_url, TARGETS)
    replicas = [_start(config) for _ in range(3)]
    try:
        # Rebalanced: every replica within ±1 of the mean (exactly 20 here).
        _wait_for(lambda: sorted(_holders(store).values()) == [20, 20, 20], 60, "an even spread")
        by_pid = {int(holder.rsplit(":", 1)[1]): holder for holder in _holders(store)}
        assert set(by_pid) == {p.pid for p in replicas}
        # /v1/targets and /metrics say who holds each target.
        with TestClient(create_app(store)) as client:
            listed = client.get("/v1/targets").json()["targets"]
            assert Counter(t["replica"] for t in listed) == _holders(store)
            metrics = client.get("/metrics").text
            assert metrics.count("resmon_target_replica_info{") == TARGETS
        time.sleep(INTERVAL_S)

        victim = replicas[0]
        victim_id = by_pid[victim.pid]
        victim_targets = _held_by(store, victim_id)
        assert len(victim_targets) == 20, (_holders(store), victim_id, victim.poll())
        killed_at = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
        took = _wait_for(
            lambda: victim_id not in _holders(store) and sum(_holders(store).values()) == TARGETS,
            4 * TTL_S, "the killed replica's targets taken over",
        )  # fmt: skip
        assert took <= 2 * TTL_S, f"takeover took {took:.1f}s, more than 2 x TTL"
        assert sorted(_holders(store).values()) == [30, 30]
        # The taken-over targets are collected again by the survivors.
        _wait_for(
            lambda: _collected_since(store, victim_targets, killed_at), 3 * INTERVAL_S + TTL_S,
            "collections of the taken-over targets",
        )  # fmt: skip
        time.sleep(INTERVAL_S)
    finally:
        for proc in replicas:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in replicas:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    for proc in replicas[1:]:
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else ""), "a replica crashed"
    # No overlapping collections, and none twice within its interval, whoever held the target.
    # Starts are scheduled at least an interval apart; the start recorded is when a worker
    # picked the collection up, a moment later (a worker per target here, so no queue, but on a
    # loaded machine that moment reaches a second). A collection by two replicas at once would
    # show as a gap near zero.
    runs: dict[int, list[tuple[datetime, float]]] = defaultdict(list)
    with store.session() as session:
        for target_id, started_at, duration_s in session.execute(
            select(
                models.CollectionRun.target_id,
                models.CollectionRun.started_at,
                models.CollectionRun.duration_s,
            )
        ):
            runs[target_id].append((started_at, duration_s))
    assert len(runs) == TARGETS
    for target_id, history in runs.items():
        history.sort()
        assert len(history) >= 3, (target_id, history)
        for (start, duration), (after, _) in zip(history, history[1:], strict=False):
            gap = (after - start).total_seconds()
            assert gap >= duration, f"target {target_id}: collections overlap at {after}"
            assert gap >= INTERVAL_S - 2.0, f"target {target_id}: collected again after {gap}s"
    # Stopped replicas gave their leases back.
    assert _holders(store) == Counter()
    store.close()


def _held_by(store: Store, holder: str) -> set[int]:
    with store.session() as session:
        return set(
            session.scalars(
                select(models.TargetLease.target_id).where(models.TargetLease.holder == holder)
            )
        )


def _collected_since(store: Store, target_ids: set[int], since_monotonic: float) -> bool:
    since = datetime.now(UTC).timestamp() - (time.monotonic() - since_monotonic)
    with store.session() as session:
        collected = set(
            session.scalars(
                select(models.CollectionRun.target_id).where(
                    models.CollectionRun.target_id.in_(target_ids),
                    models.CollectionRun.started_at > datetime.fromtimestamp(since, UTC),
                )
            )
        )
    return collected == target_ids


def test_a_second_daemon_on_a_sqlite_file_refuses_to_start(tmp_path: Path) -> None:
    database = tmp_path / "resmon.db"
    config = _config(tmp_path, f"sqlite:///{database}", 2)
    first = _start(config)
    try:
        _wait_for(
            lambda: Path(f"{database}-daemon.lock").is_file()
            and Path(f"{database}-daemon.lock").read_text().strip() == str(first.pid),
            60, "the first daemon's lock",
        )  # fmt: skip
        second = _start(config)
        _, err = second.communicate(timeout=60)
        assert second.returncode != 0
        assert f"another resmon daemon (pid {first.pid}) is already collecting into" in err
        assert str(database) in err and "Traceback" not in err
        assert first.poll() is None, "the first daemon must keep running"
    finally:
        first.send_signal(signal.SIGTERM)
        try:
            first.wait(timeout=30)
        except subprocess.TimeoutExpired:
            first.kill()
