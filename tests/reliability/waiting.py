"""Waiting for a daemon in another process to have stored something."""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from resmon.store import Store


def stored_runs(store: Store, target: str) -> int:
    """How many runs ``target`` has (0 while the database is still being created)."""
    try:
        return len(store.runs(target))
    except SQLAlchemyError:
        return 0
