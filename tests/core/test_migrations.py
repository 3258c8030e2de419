"""pytest-alembic: one head, upgrade/downgrade round trips, models and migrations agree.

Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy
from pytest_alembic.tests import (  # noqa: F401  (collected as tests)
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)

from resmon.store import alembic_directory


@pytest.fixture
def alembic_config() -> dict[str, Any]:
    return {"script_location": str(alembic_directory())}


@pytest.fixture
def alembic_engine(database_url: str) -> Iterator[sqlalchemy.Engine]:
    engine = sqlalchemy.create_engine(database_url)
    yield engine
    engine.dispose()


def test_0005_counts_the_kept_history(
    alembic_runner: Any, alembic_engine: sqlalchemy.Engine
) -> None:
    """The counters start from the runs stored before the upgrade: successes under "", failures
    by kind, a failure stored without a kind as "unknown" (what /metrics said before)."""
    alembic_runner.migrate_up_to("0004")
    target = {"last_status": "failed", "interval_s": 60.0, "consecutive_failures": 1}
    alembic_runner.insert_into(
        "targets",
        [
            {"id": 1, "name": "kvm", "collector": "libvirt", "url": "qemu:///system", **target},
            {"id": 2, "name": "vc", "collector": "vmware", "url": "https://vc/sdk", **target},
            {"id": 3, "name": "new", "collector": "libvirt", "url": "test:///default", **target},
        ],
    )
    run = {"started_at": datetime(2026, 11, 1, tzinfo=UTC), "duration_s": 1.0,
           "provider_count": 0, "anomaly_count": 0}  # fmt: skip
    outcomes = [
        (1, "success", None), (1, "success", None), (1, "failed", "timeout"),
        (1, "failed", "timeout"), (1, "failed", "unreachable"), (2, "failed", None),
        (2, "success", None),
    ]  # fmt: skip
    alembic_runner.insert_into(
        "collection_runs",
        [{"target_id": t, "status": s, "error_kind": k, **run} for t, s, k in outcomes],
    )
    alembic_runner.migrate_up_one()
    with alembic_engine.connect() as conn:
        counts = set(conn.execute(sqlalchemy.text(
            "SELECT target_id, error_kind, runs FROM collection_counts")))  # fmt: skip
    assert counts == {(1, "", 2), (1, "timeout", 2), (1, "unreachable", 1), (2, "unknown", 1),
                      (2, "", 1)}  # fmt: skip
