"""Alembic environment: runs on the connection the Store hands over, or on RESMON_DATABASE_URL."""

from __future__ import annotations

import os

from sqlalchemy import Connection, Engine

from alembic import context
from resmon.store import models
from resmon.store._store import DEFAULT_URL, create_store_engine

target_metadata = models.Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = context.config.attributes.get("connection")
    if isinstance(given, Connection):
        _run(given)
        return
    if isinstance(given, Engine):  # pytest-alembic hands over an engine
        with given.begin() as connection:
            _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or os.environ.get(
        "RESMON_DATABASE_URL", DEFAULT_URL
    )
    engine = create_store_engine(url)
    with engine.begin() as connection:
        _run(connection)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("resmon migrations run online only: resmon db upgrade")
run_migrations_online()
