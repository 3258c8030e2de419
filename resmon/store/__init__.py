"""Persistence: SQLAlchemy models, the Alembic-managed schema and the per-collection writer."""

from __future__ import annotations

from . import models
from ._retention import Pruned, Retention, prune, start_pruning
from ._store import DEFAULT_URL, Store, StoreError, TargetSpec, alembic_directory

__all__ = [
    "DEFAULT_URL",
    "Pruned",
    "Retention",
    "Store",
    "StoreError",
    "TargetSpec",
    "alembic_directory",
    "models",
    "prune",
    "start_pruning",
]
