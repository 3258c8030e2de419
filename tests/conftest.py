"""Fixtures shared by every test package: the shared corpus and the databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from resmon.contract import HostReport
from resmon.store import Store

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Real hypervisor outputs nobody on this project wrote, read in place (never copied here).
CORPUS = Path(os.environ.get("RESMON_CORPUS", REPO_ROOT.parent / "shared" / "corpus"))
POSTGRES_URL = os.environ.get(
    "RESMON_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The shared corpus directory; tests that need it skip when ../shared is absent."""
    if not CORPUS.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS} (../shared is absent on this checkout)")
    return CORPUS


def _postgres_database() -> Iterator[str]:
    sqlalchemy = pytest.importorskip("sqlalchemy")
    pytest.importorskip("psycopg")
    admin = sqlalchemy.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"resmon_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    except sqlalchemy.exc.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}")
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """An empty PostgreSQL database, for behaviour only a server database shows."""
    yield from _postgres_database()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database, once on SQLite (a file) and once on PostgreSQL (a fresh database)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'resmon.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Like ``database_url``, shared by a module's tests that only read (table-driven cases)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'resmon.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A migrated, empty store on SQLite and on PostgreSQL."""
    store = Store(database_url)
    store.upgrade()
    yield store
    store.close()


#: A policy that differs from Nova's defaults in every setting.
ALTERED_POLICY = {
    "cpu_allocation_ratio": 2.0,
    "ram_allocation_ratio": 1.5,
    "disk_allocation_ratio": 3.0,
    "reserved_host_cpus": 2,
    "reserved_host_memory_mb": 1024,
    "reserved_host_disk_gb": 10,
}


def _check_policy_applies_uniformly(facts: list[HostReport]) -> set[str]:
    """Apply Nova's defaults and :data:`ALTERED_POLICY` to a driver's facts and check that
    every compute host's capacity follows the one formula; returns the classes checked."""
    from resmon.contract import HostState, ProviderKind
    from resmon.policy import Policy, PolicyTable, TargetPolicy, apply_policy, resolve_policy

    altered = PolicyTable.model_validate(ALTERED_POLICY)
    checked: set[str] = set()
    for table, expected in ((None, Policy()), (altered, Policy(**ALTERED_POLICY))):
        policy = TargetPolicy.defaults() if table is None else resolve_policy(table, None)
        settled, _ = apply_policy(facts, policy)
        for fact, report in zip(facts, settled, strict=True):
            if fact.provider_kind is not ProviderKind.COMPUTE_HOST:
                continue
            for before in fact.inventories:
                covered = expected.for_class(before.resource_class)
                if covered is None:
                    continue
                ratio, operator = covered
                after = report.inventory(before.resource_class)
                assert after is not None
                where = (fact.identity.host_id, before.resource_class)
                assert (after.total, after.used) == (before.total, before.used), where
                assert after.hypervisor_reserved == before.hypervisor_reserved, where
                assert after.operator_reserved == operator, where
                assert after.allocation_ratio == ratio, where
                if fact.state is HostState.UP:
                    wanted = before.hypervisor_reserved + operator
                    assert after.reserved == min(wanted, before.total), where
                else:
                    assert after.reserved == after.total and after.capacity == 0, where
                assert after.capacity == int((after.total - after.reserved) * ratio), where
                checked.add(before.resource_class)
    assert checked, "no compute host inventory to check"
    return checked


@pytest.fixture
def check_policy_applies_uniformly() -> Callable[[list[HostReport]], set[str]]:
    """The check behind "changing [resmon.policy] changes every driver's capacity the same
    way", for a driver's test to run on its own offline facts."""
    return _check_policy_applies_uniformly
