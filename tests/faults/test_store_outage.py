"""PostgreSQL behind the fault proxy: whether the database refuses connections, accepts and never
answers, answers at a crawl or answers garbage, the daemon keeps its schedule, its API and its
SIGTERM, says the store is down (``/readyz``, ``/metrics``) and resumes by itself once the
database answers again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from exporters.api import create_app
from resmon.config import ResmonConfig
from resmon.contract.testing import FakeCollector
from resmon.daemon import Daemon
from resmon.registry import register, unregister
from resmon.runner import CollectionOutcome
from resmon.store import Store

from .fault_proxy import FaultProxy, Mode

pytestmark = pytest.mark.postgres

TIMEOUT_S = 2.0


@pytest.fixture(autouse=True)
def fake_registered() -> Iterator[None]:
    register(FakeCollector)
    yield
    unregister("fake")


def _wait_for(condition: Callable[[], bool], within_s: float) -> float:
    """Seconds it took ``condition`` to hold; fails after ``within_s``."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within_s:
            pytest.fail(f"condition not met within {within_s}s")
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.parametrize("fault", ["refuse", "hang", "slow", "garbage"])
def test_daemon_survives_a_database_fault(postgres_url: str, fault: Mode) -> None:
    url = make_url(postgres_url)
    # slow: 32 bytes a second, so that any answer of more than a few dozen bytes takes longer
    # than the store's timeout.
    proxy = FaultProxy((url.host or "127.0.0.1", url.port or 5432), slow_chunk=16,
                       slow_delay_s=0.5)  # fmt: skip
    store = Store(
        url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
        timeout_s=TIMEOUT_S,
    )
    store.upgrade()
    config = ResmonConfig.model_validate({
        "resmon": {"listen": "", "database_timeout_s": TIMEOUT_S, "shutdown_grace_s": 1},
        "targets": [{"name": "t", "collector": "fake", "url": "fake://2", "interval_s": 1,
                     "timeout_s": 1}],
    })  # fmt: skip
    outcomes: list[CollectionOutcome] = []
    daemon = Daemon(config, store, on_outcome=outcomes.append)
    thread = threading.Thread(target=daemon.run, daemon=True)
    thread.start()
    client = TestClient(create_app(store))
    try:
        _wait_for(lambda: len(store.runs("t")) >= 1, 15)
        assert client.get("/readyz").status_code == 200

        proxy.mode = fault
        hung_at = len(outcomes)
        # The outage is noticed within the bound of one database call.
        assert _wait_for(lambda: not store.health().up, TIMEOUT_S * 3) < TIMEOUT_S * 3
        # Scheduling goes on: collections keep finishing once a second.
        _wait_for(lambda: len(outcomes) >= hung_at + 3, 6)
        # /readyz answers at once, and says not ready; /metrics says the store is down.
        start = time.monotonic()
        ready = client.get("/readyz")
        assert ready.status_code == 503 and time.monotonic() - start < 1.0
        assert ready.json()["errors"][0]["code"] == "resmon.store.unavailable"
        assert "resmon_exporter_store_up 0" in client.get("/metrics").text

        proxy.mode = "pass"
        runs_before = len(store.runs("t"))
        # Back by itself: new collections are stored again and the store is up.
        _wait_for(lambda: store.health().up and len(store.runs("t")) > runs_before, 20)
        assert client.get("/readyz").status_code == 200

        proxy.mode = fault
        _wait_for(lambda: not store.health().up, TIMEOUT_S * 3)
        # A stop during the fault is honoured within the grace (1 s), plus the writer's last
        # second and a generous allowance for a loaded machine: far from the tens of seconds a
        # stop waiting on the database would take.
        start = time.monotonic()
        daemon.stop()
        thread.join(timeout=10)
        assert not thread.is_alive()
        assert time.monotonic() - start < 1 + 6
    finally:
        daemon.stop()
        proxy.close()
        store.close()


def test_a_store_call_against_a_silent_server_is_bounded(tmp_path: Path) -> None:
    """Nothing but a listener that accepts: connecting fails within the bound."""
    proxy = FaultProxy(None)
    store = Store(f"postgresql+psycopg://resmon@127.0.0.1:{proxy.port}/x", timeout_s=TIMEOUT_S)
    try:
        start = time.monotonic()
        with pytest.raises(Exception, match="timeout|did not answer|closed"):
            store.targets()
        assert time.monotonic() - start < TIMEOUT_S + 2
        assert not store.health().up
    finally:
        proxy.close()
        store.close()
