"""Fixtures shared by the Placement tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from resmon.store import Store

from .fleet import populate


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A SQLite store holding the small test fleet of :mod:`tests.placement.fleet`."""
    s = Store(f"sqlite:///{tmp_path / 'resmon.db'}")
    s.upgrade()
    populate(s)
    yield s
    s.close()
