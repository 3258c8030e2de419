"""index collection_runs (target_id, id)

A target's latest run id (the generation the query API's candidate index checks on every
request) in one index lookup, however long the run history grows.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21 20:20:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.create_index("ix_collection_runs_target_id_id", ["target_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_collection_runs_target_id_id")
