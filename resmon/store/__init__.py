"""Persistence: SQLAlchemy models, the Alembic-managed schema and the per-collection writer."""

from __future__ import annotations

from . import models
from ._retention import Pruned, Retention, prune, start_pruning
from ._store import (
    DEFAULT_TIMEOUT_S,
    DEFAULT_URL,
    INTERNAL_PREFIX,
    BoundedReads,
    Store,
    StoreError,
    StoreHealth,
    TargetSpec,
    TaskStatus,
    alembic_directory,
    migration_head,
    redact_url,
)
from ._writer import StoreWriter

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "BoundedReads",
    "DEFAULT_URL",
    "INTERNAL_PREFIX",
    "Pruned",
    "Retention",
    "Store",
    "StoreError",
    "StoreHealth",
    "StoreWriter",
    "TargetSpec",
    "TaskStatus",
    "alembic_directory",
    "migration_head",
    "models",
    "prune",
    "redact_url",
    "start_pruning",
]
