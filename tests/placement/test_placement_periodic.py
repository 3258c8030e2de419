"""The periodic Placement sync of ``resmon run`` against a Placement that refuses, hangs or is
not there: the error kind is recorded (in memory, ``/metrics``, ``/v1/placement/status``, the
store), the daemon's own store and API carry on, only one replica syncs, and shutdown never
waits for Placement. (The sync into a real Placement is in ``test_placement_sync.py``.)"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from exporters._sync_status import ERROR_KINDS, TASK_NAME
from exporters.api import create_app
from exporters.placement_auth import adapter_for, connection_for
from exporters.placement_periodic import PlacementSyncTask
from exporters.placement_sync import PlacementSyncError, sync
from resmon.cli import main
from resmon.config import PlacementSettings, ResmonConfig, TargetConfig
from resmon.contract.testing import FakeCollector
from resmon.daemon import Daemon
from resmon.registry import register, unregister
from resmon.store import Store
from tests.faults.fault_proxy import FaultProxy
from tests.live_servers import free_port, wait_until

from .refusing import RefusingPlacement


@pytest.fixture
def fake_registered() -> Iterator[None]:
    register(FakeCollector)
    yield
    unregister("fake")


def settings(endpoint: str, **fields: object) -> PlacementSettings:
    return PlacementSettings.model_validate(
        {"auth_type": "noauth", "endpoint": endpoint, "interval_s": 60, "timeout_s": 20,
         "request_timeout_s": 10, **fields}
    )  # fmt: skip


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def run_once(task: PlacementSyncTask) -> None:
    assert task.trigger()
    assert task.join(120), "the sync did not end"


REFUSALS = [
    pytest.param(401, "auth", "401", id="401"),
    pytest.param(403, "auth", "Policy does not allow", id="403"),
    pytest.param(503, "server_error", "503", id="503"),
]


@pytest.mark.parametrize(("status", "kind", "reason"), REFUSALS)
def test_a_refusing_placement_is_recorded_with_its_kind(
    store: Store, status: int, kind: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with RefusingPlacement(status) as placement:
        task = PlacementSyncTask(store, settings(placement.url))
        run_once(task)
    got = task.status()
    assert (got.status, got.error_kind, got.runs, got.errors) == ("failed", kind, 1, {kind: 1})
    assert reason in (got.error_message or "") and "\n" not in (got.error_message or "")
    assert placement.requests == 1  # the first refusal stops the sync
    stored = store.task_status(TASK_NAME)
    assert stored is not None
    assert (stored.last_status, stored.error_kind, stored.error_message) == (
        "failed", kind, got.error_message
    )  # fmt: skip
    # The API and /metrics carry on, and say so.
    with TestClient(create_app(store, placement=task)) as api:
        assert [t["name"] for t in api.get("/v1/targets").json()["targets"]] == ["kvm", "vc"]
        body = api.get("/v1/placement/status").json()
        assert (body["status"], body["error_kind"], body["configured"]) == ("failed", kind, True)
        metrics = api.get("/metrics")
        assert metrics.status_code == 200
    values = samples(metrics.text)
    assert values["resmon_placement_sync_runs_total", ()] == 1
    assert values["resmon_placement_sync_success", ()] == 0
    for each in ERROR_KINDS:
        assert values["resmon_placement_sync_errors_total", (("kind", each),)] == (each == kind)
    assert values["resmon_collector_success", (("collector", "fake"), ("target", "vc"))] == 1
    assert "resmon_placement_sync_writes" not in {name for name, _ in values}
    # A process that does not run the syncs (an API replica) shows the stored status.
    with TestClient(create_app(store)) as replica:
        body = replica.get("/v1/placement/status").json()
    assert (body["status"], body["error_kind"], body["error_message"]) == (
        "failed", kind, got.error_message
    )  # fmt: skip
    assert (body["configured"], body["runs"], body["last_success_at"]) == (False, 0, None)
    assert main(["placement", "status", "--database", str(store.engine.url)]) == 1
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["STATUS", "LAST", "ATTEMPT"]
    assert table[1].startswith("failed ") and f"{kind}: {got.error_message}" in table[1]
    promtool = shutil.which("promtool")
    if promtool is not None:  # the whole body, the sync's families included, lints clean
        linted = subprocess.run([promtool, "check", "metrics"], input=metrics.content,
                                capture_output=True, check=False)  # fmt: skip
        assert (linted.returncode, linted.stdout, linted.stderr) == (0, b"", b""), linted


def test_a_database_that_cannot_be_read_is_a_store_error(tmp_path: Path) -> None:
    # A database without resmon's tables: the sync cannot read what to write, and its status
    # cannot be stored either; both stay in memory, and Placement is never asked.
    unmigrated = Store(f"sqlite:///{tmp_path / 'empty.db'}")
    with RefusingPlacement(503) as placement:
        task = PlacementSyncTask(unmigrated, settings(placement.url))
        run_once(task)
    got = task.status()
    assert (got.status, got.error_kind, placement.requests) == ("failed", "store_error", 0)
    assert got.error_message is not None and "no such table" in got.error_message
    unmigrated.close()


def test_a_placement_that_is_not_there_is_unreachable(store: Store) -> None:
    task = PlacementSyncTask(store, settings(f"http://127.0.0.1:{free_port()}"))
    run_once(task)
    assert task.status().error_kind == "unreachable"


def test_a_hanging_placement_is_bounded_by_the_timeout(store: Store) -> None:
    hang = FaultProxy(None)  # accepts, never answers
    try:
        task = PlacementSyncTask(
            store, settings(f"http://127.0.0.1:{hang.port}", timeout_s=2, request_timeout_s=1)
        )
        run_once(task)
    finally:
        hang.close()
    got = task.status()
    assert got.error_kind == "timeout", got.error_message


def test_a_broken_connection_setting_is_a_config_error_of_the_sync(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RESMON_TEST_PLACEMENT_SECRET", raising=False)
    task = PlacementSyncTask(store, PlacementSettings(
        auth_type="v3password", auth={"auth_url": "http://127.0.0.1:1/v3", "username": "resmon"},
        secret_env="RESMON_TEST_PLACEMENT_SECRET", interval_s=60,
    ))  # fmt: skip
    run_once(task)
    got = task.status()
    assert got.error_kind == "config"
    assert got.error_message == (
        "[placement] secret_env: environment variable 'RESMON_TEST_PLACEMENT_SECRET' is not set"
    )


def test_the_daemon_syncs_after_the_first_collection_and_stops_within_its_grace(
    tmp_path: Path, fake_registered: None
) -> None:
    hang = FaultProxy(None)
    config = ResmonConfig.model_validate({
        "resmon": {"database_url": f"sqlite:///{tmp_path / 'd.db'}", "listen": "",
                   "shutdown_grace_s": 1},
        "targets": [TargetConfig(name="t", collector="fake", url="fake://2", interval_s=600)],
        # Long bounds: shutdown must not wait for them.
        "placement": settings(f"http://127.0.0.1:{hang.port}", interval_s=600, timeout_s=300,
                              request_timeout_s=300),
    })  # fmt: skip
    store = Store(config.resmon.database_url)
    store.upgrade()
    daemon = Daemon(config, store)
    task = daemon.placement
    seen_at_start: list[str] = []
    trigger = task.trigger

    def recording_trigger() -> bool:
        seen_at_start.extend(t.last_status for t in store.targets())
        return trigger()

    task.trigger = recording_trigger
    runner = threading.Thread(target=daemon.run, daemon=True)
    try:
        runner.start()
        wait_until(lambda: task.status().running, "the sync started")
        # It started only once the target had been collected (its hosts are in the store).
        assert seen_at_start == ["success"]
        assert task.status().lease_held
        daemon.stop()
        runner.join(timeout=60)
        assert not runner.is_alive(), "the daemon waited for the hanging Placement"
    finally:
        daemon.stop()
        hang.close()
    # Cancelled by the shutdown (the hanging connection closed after it): not recorded as the
    # sync's last word.
    assert task.join(60)
    assert task.status().error_kind == "cancelled"
    stored = store.task_status(TASK_NAME)
    assert stored is not None and stored.last_status == "never"
    assert [t.name for t in store.targets()] == ["t"]  # the task's row is no target
    store.close()


@pytest.mark.postgres
def test_one_replica_syncs_and_another_takes_over(
    postgres_url: str, fake_registered: None, tmp_path: Path
) -> None:
    with RefusingPlacement(503) as placement:
        daemons: dict[str, Daemon] = {}
        threads: dict[str, threading.Thread] = {}
        stores = []
        for replica in ("a", "b"):
            config = ResmonConfig.model_validate({
                "resmon": {"database_url": postgres_url, "listen": "", "shutdown_grace_s": 2},
                "replicas": {"lease_ttl_s": 3, "replica_id": replica},
                "placement": settings(placement.url, interval_s=10, timeout_s=5,
                                      request_timeout_s=5),
            })  # fmt: skip
            store = Store(postgres_url)
            store.upgrade()
            stores.append(store)
            daemons[replica] = Daemon(config, store)
            threads[replica] = threading.Thread(target=daemons[replica].run, daemon=True)
            threads[replica].start()
        try:

            def runs(replica: str) -> int:
                return daemons[replica].placement.status().runs

            holder = wait_until(
                lambda: next((r for r in daemons if runs(r) >= 2), None), "two syncs", 120
            )
            other = "b" if holder == "a" else "a"
            assert runs(other) == 0 and not daemons[other].placement.status().lease_held
            stored = stores[0].task_status(TASK_NAME)
            assert stored is not None and (stored.holder, stored.error_kind) == (
                holder, "server_error"
            )  # fmt: skip
            assert main(["placement", "status", "--database", postgres_url]) == 1
            daemons[holder].stop()
            threads[holder].join(timeout=60)
            wait_until(lambda: runs(other) >= 1, "the other replica took the sync over", 120)
        finally:
            for daemon in daemons.values():
                daemon.stop()
            for thread in threads.values():
                thread.join(timeout=60)
            for store in stores:
                store.close()


def test_the_cli_syncs_with_the_placement_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "resmon.toml"
    database = f"sqlite:///{tmp_path / 'r.db'}"
    with RefusingPlacement(503) as placement:
        config.write_text(
            f'[resmon]\nlisten = ""\ndatabase_url = "{database}"\n\n'
            f'[placement]\nauth_type = "noauth"\nendpoint = "{placement.url}"\n'
        )
        assert main(["placement", "sync", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("resmon: placement sync failed: server_error: GET /resource_providers")
    assert len(err.splitlines()) == 1
    assert main(["placement", "sync", "--database", database]) == 2
    assert capsys.readouterr().err == (
        "resmon: placement sync: give --endpoint or --cloud, or a [placement] table in --config\n"
    )


def test_no_request_starts_after_the_sync_deadline(store: Store) -> None:
    with RefusingPlacement(503) as placement:
        api = adapter_for(connection_for(settings(placement.url)))
        with pytest.raises(PlacementSyncError) as caught:
            sync(store, api, deadline=time.monotonic())
    assert caught.value.kind == "timeout" and placement.requests == 0
    assert str(caught.value) == (
        "the sync did not finish in time (stopped before GET /resource_providers)"
    )
