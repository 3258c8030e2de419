"""Persistence: SQLAlchemy models, the Alembic-managed schema and the per-collection writer."""

from __future__ import annotations

from . import models
from ._store import (
    DEFAULT_URL,
    Store,
    StoreError,
    TargetSpec,
    alembic_directory,
    migration_head,
)

__all__ = [
    "DEFAULT_URL",
    "Store",
    "StoreError",
    "TargetSpec",
    "alembic_directory",
    "migration_head",
    "models",
]
