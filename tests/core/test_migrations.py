"""pytest-alembic: one head, upgrade/downgrade round trips, models and migrations agree.

Runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
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
