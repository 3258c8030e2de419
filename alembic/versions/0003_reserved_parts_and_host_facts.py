"""reserved parts and the optional host facts of schema 1.1

Inventories keep what the hypervisor holds back and what the operator's policy reserves next
to the final ``reserved``; hosts get the optional 1.1 facts as columns (boot time, health,
location names, observed use, instance counts per power state, shared storage provisioning).
Rows stored before this revision get 0 / NULL and are rewritten at their next collection.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 22:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_HOST_COLUMNS = (
    ("boot_time", sa.DateTime(timezone=True)),
    ("health", sa.String(length=16)),
    ("datacenter", sa.String(length=255)),
    ("cluster", sa.String(length=255)),
    ("observed_cpu_used_mhz", sa.BigInteger()),
    ("observed_memory_used_bytes", sa.BigInteger()),
    ("instance_states", sa.JSON()),
    ("storage_provisioned_bytes", sa.BigInteger()),
    ("storage_uncommitted_bytes", sa.BigInteger()),
)


def upgrade() -> None:
    with op.batch_alter_table("inventories", schema=None) as batch_op:
        for name in ("hypervisor_reserved", "operator_reserved"):
            batch_op.add_column(
                sa.Column(name, sa.BigInteger(), server_default="0", nullable=False)
            )
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        for name, type_ in _HOST_COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hosts", schema=None) as batch_op:
        for name, _ in reversed(_HOST_COLUMNS):
            batch_op.drop_column(name)
    with op.batch_alter_table("inventories", schema=None) as batch_op:
        batch_op.drop_column("operator_reserved")
        batch_op.drop_column("hypervisor_reserved")
