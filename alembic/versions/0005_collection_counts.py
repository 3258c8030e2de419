"""collection counters that retention never lowers

``collection_counts`` holds, per target and outcome (the error kind of failed runs, "" for
successes), how many collections were ever recorded; the store increments it in the transaction
that records each run. Filled here from the history still kept, so the counters continue from
what ``resmon_collector_runs_total`` and ``resmon_collector_errors_total`` said before.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 01:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    counts = op.create_table(
        "collection_counts",
        sa.Column("target_id", sa.Integer(), nullable=False),
        sa.Column("error_kind", sa.String(length=64), nullable=False),
        sa.Column("runs", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["target_id"], ["targets.id"],
            name=op.f("fk_collection_counts_target_id_targets"), ondelete="CASCADE",
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("target_id", "error_kind", name=op.f("pk_collection_counts")),
    )
    runs = sa.table(
        "collection_runs",
        sa.column("target_id", sa.Integer()),
        sa.column("status", sa.String(16)),
        sa.column("error_kind", sa.String(64)),
    )
    # Failed runs stored without a kind were exported as kind "unknown"; they stay so.
    kind = sa.case(
        (runs.c.status == "success", sa.literal("")),
        else_=sa.func.coalesce(runs.c.error_kind, sa.literal("unknown")),
    )
    op.execute(
        counts.insert().from_select(
            ["target_id", "error_kind", "runs"],
            sa.select(runs.c.target_id, kind, sa.func.count()).group_by(runs.c.target_id, kind),
        )
    )


def downgrade() -> None:
    op.drop_table("collection_counts")
