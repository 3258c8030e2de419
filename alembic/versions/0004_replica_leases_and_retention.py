"""replica leases; indexes for retention

Replicas sharing a PostgreSQL database lease targets through ``target_leases`` and announce
themselves in ``replicas``; retention prunes collection runs, anomalies and the capacity change
log oldest first through the new time indexes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 22:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replicas")),
    )
    op.create_table(
        "target_leases",
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["target_id"], ["targets.id"],
            name=op.f("fk_target_leases_target_id_targets"), ondelete="CASCADE",
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("target_id", name=op.f("pk_target_leases")),
    )
    with op.batch_alter_table("target_leases", schema=None) as batch_op:
        batch_op.create_index("ix_target_leases_holder", ["holder"], unique=False)
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.create_index("ix_collection_runs_started_at", ["started_at"], unique=False)
    with op.batch_alter_table("anomalies", schema=None) as batch_op:
        batch_op.create_index("ix_anomalies_detected_at", ["detected_at"], unique=False)
    with op.batch_alter_table("capacity_changes", schema=None) as batch_op:
        batch_op.create_index("ix_capacity_changes_changed_at", ["changed_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("capacity_changes", schema=None) as batch_op:
        batch_op.drop_index("ix_capacity_changes_changed_at")
    with op.batch_alter_table("anomalies", schema=None) as batch_op:
        batch_op.drop_index("ix_anomalies_detected_at")
    with op.batch_alter_table("collection_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_collection_runs_started_at")
    with op.batch_alter_table("target_leases", schema=None) as batch_op:
        batch_op.drop_index("ix_target_leases_holder")
    op.drop_table("target_leases")
    op.drop_table("replicas")
