"""Database tables (SQLAlchemy 2 typed mappings). Alembic migrations are the only way they change.

Every constraint and index is named so that migrations stay diffable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = [
    "Anomaly",
    "Base",
    "CapacityChange",
    "CollectionCount",
    "CollectionRun",
    "Host",
    "HostTrait",
    "Inventory",
    "NumaCell",
    "Replica",
    "SupportedInstance",
    "Target",
    "TargetLease",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class Target(Base):
    """A configured target and the status of its last collection."""

    __tablename__ = "targets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    collector: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2048))
    interval_s: Mapped[float] = mapped_column(Float, default=60.0)
    last_status: Mapped[str] = mapped_column(String(16), default="never")
    last_error_kind: Mapped[str | None] = mapped_column(String(64))
    last_error_message: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    last_duration_s: Mapped[float | None] = mapped_column(Float)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)

    hosts: Mapped[list[Host]] = relationship(back_populates="target", cascade="all, delete-orphan")


class CollectionRun(Base):
    """One collection attempt of one target."""

    __tablename__ = "collection_runs"
    __table_args__ = (
        Index("ix_collection_runs_target_started", "target_id", "started_at"),
        # A target's latest run id in one index lookup, however long its history: the
        # generation the query API's candidate index is checked against on every request.
        Index("ix_collection_runs_target_id_id", "target_id", "id"),
        # Retention prunes the oldest runs first.
        Index("ix_collection_runs_started_at", "started_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"))
    started_at: Mapped[datetime]
    duration_s: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    error_kind: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    provider_count: Mapped[int] = mapped_column(Integer, default=0)
    anomaly_count: Mapped[int] = mapped_column(Integer, default=0)


class CollectionCount(Base):
    """Collections of a target ever recorded, by outcome: counters that pruning the history
    never lowers (the ``resmon_collector_*_total`` families).

    Incremented in the transaction that records the run (an upsert, ``runs = runs + 1``), so
    replicas sharing the database add up instead of overwriting each other.
    """

    __tablename__ = "collection_counts"

    target_id: Mapped[int] = mapped_column(
        ForeignKey("targets.id", ondelete="CASCADE"), primary_key=True
    )
    #: The failed runs' error kind ("unknown" when they had none); "" counts the successes.
    error_kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    runs: Mapped[int] = mapped_column(BigInteger)


class Host(Base):
    """Current state of one provider (compute host, cluster or shared storage)."""

    __tablename__ = "hosts"
    __table_args__ = (
        UniqueConstraint("target_id", "host_id"),
        Index("ix_hosts_hv_type_arch", "hv_type", "arch"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target_id: Mapped[int] = mapped_column(ForeignKey("targets.id", ondelete="CASCADE"))
    host_id: Mapped[str] = mapped_column(String(255))
    hostname: Mapped[str | None] = mapped_column(String(255))
    provider_kind: Mapped[str] = mapped_column(String(32))
    parent_id: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(32))
    hv_type: Mapped[str | None] = mapped_column(String(64))
    hypervisor_version: Mapped[str | None] = mapped_column(String(255))
    arch: Mapped[str | None] = mapped_column(String(64))
    cpu_model: Mapped[str | None] = mapped_column(String(255))
    collector_name: Mapped[str] = mapped_column(String(64))
    collector_version: Mapped[str] = mapped_column(String(64))
    schema_version: Mapped[str] = mapped_column(String(16))
    collected_at: Mapped[datetime]
    last_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("collection_runs.id", ondelete="SET NULL")
    )
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Optional facts of schema 1.1, as columns so that the API and /metrics need not parse the
    # report; None when the collector did not report them.
    boot_time: Mapped[datetime | None]
    health: Mapped[str | None] = mapped_column(String(16))
    datacenter: Mapped[str | None] = mapped_column(String(255))
    cluster: Mapped[str | None] = mapped_column(String(255))
    observed_cpu_used_mhz: Mapped[int | None] = mapped_column(BigInteger)
    observed_memory_used_bytes: Mapped[int | None] = mapped_column(BigInteger)
    instance_states: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    storage_provisioned_bytes: Mapped[int | None] = mapped_column(BigInteger)
    storage_uncommitted_bytes: Mapped[int | None] = mapped_column(BigInteger)

    target: Mapped[Target] = relationship(back_populates="hosts")
    inventories: Mapped[list[Inventory]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )
    traits: Mapped[list[HostTrait]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )
    supported_instances: Mapped[list[SupportedInstance]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )
    numa_cells: Mapped[list[NumaCell]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )
    anomalies: Mapped[list[Anomaly]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )


class Inventory(Base):
    """Placement's inventory record of one resource class on one provider, plus allocated use."""

    __tablename__ = "inventories"
    __table_args__ = (
        UniqueConstraint("host_pk", "resource_class"),
        Index("ix_inventories_resource_class_free", "resource_class", "free"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host_pk: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    resource_class: Mapped[str] = mapped_column(String(255))
    total: Mapped[int] = mapped_column(BigInteger)
    reserved: Mapped[int] = mapped_column(BigInteger)
    # The parts of ``reserved``: held back by the hypervisor (a fact) and by policy.
    hypervisor_reserved: Mapped[int] = mapped_column(BigInteger, server_default="0")
    operator_reserved: Mapped[int] = mapped_column(BigInteger, server_default="0")
    min_unit: Mapped[int] = mapped_column(BigInteger)
    max_unit: Mapped[int] = mapped_column(BigInteger)
    step_size: Mapped[int] = mapped_column(BigInteger)
    allocation_ratio: Mapped[float] = mapped_column(Float)
    used: Mapped[int] = mapped_column(BigInteger)
    # Derived from the fields above by the contract's one formula; stored so queries can filter.
    capacity: Mapped[int] = mapped_column(BigInteger)
    free: Mapped[int] = mapped_column(BigInteger)


class HostTrait(Base):
    __tablename__ = "host_traits"
    __table_args__ = (
        UniqueConstraint("host_pk", "trait"),
        Index("ix_host_traits_trait", "trait"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host_pk: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    trait: Mapped[str] = mapped_column(String(255))


class SupportedInstance(Base):
    __tablename__ = "supported_instances"
    __table_args__ = (
        UniqueConstraint("host_pk", "arch", "hv_type", "vm_mode"),
        Index("ix_supported_instances_key", "arch", "hv_type", "vm_mode"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host_pk: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    arch: Mapped[str] = mapped_column(String(64))
    hv_type: Mapped[str] = mapped_column(String(64))
    vm_mode: Mapped[str] = mapped_column(String(64))
    max_vcpus: Mapped[int | None] = mapped_column(Integer)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)


class NumaCell(Base):
    __tablename__ = "numa_cells"
    __table_args__ = (UniqueConstraint("host_pk", "cell_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host_pk: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    cell_id: Mapped[int] = mapped_column(Integer)
    cpu_count: Mapped[int] = mapped_column(Integer)
    memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    free_memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    huge_pages: Mapped[dict[str, Any]] = mapped_column(JSON)


class Anomaly(Base):
    """A soft-invariant violation or unknown value, as of the provider's last collection."""

    __tablename__ = "anomalies"
    __table_args__ = (
        Index("ix_anomalies_code", "code"),
        Index("ix_anomalies_detected_at", "detected_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host_pk: Mapped[int] = mapped_column(ForeignKey("hosts.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("collection_runs.id", ondelete="SET NULL")
    )
    code: Mapped[str] = mapped_column(String(64))
    field: Mapped[str] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(Text)
    raw_value: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))
    detected_at: Mapped[datetime]


class CapacityChange(Base):
    """Change log: one row per inventory field that changed between two collections."""

    __tablename__ = "capacity_changes"
    __table_args__ = (
        Index("ix_capacity_changes_target_host", "target_name", "host_id"),
        Index("ix_capacity_changes_changed_at", "changed_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("collection_runs.id", ondelete="SET NULL")
    )
    target_name: Mapped[str] = mapped_column(String(255))
    host_id: Mapped[str] = mapped_column(String(255))
    resource_class: Mapped[str] = mapped_column(String(255))
    field: Mapped[str] = mapped_column(String(32))
    old_value: Mapped[float | None] = mapped_column(Float)
    new_value: Mapped[float | None] = mapped_column(Float)
    changed_at: Mapped[datetime]


class Replica(Base):
    """A ``resmon run`` process sharing the database, alive while ``expires_at`` is ahead."""

    __tablename__ = "replicas"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class TargetLease(Base):
    """Which replica collects a target, until when; the row is locked to change hands."""

    __tablename__ = "target_leases"
    __table_args__ = (Index("ix_target_leases_holder", "holder"),)

    target_id: Mapped[int] = mapped_column(
        ForeignKey("targets.id", ondelete="CASCADE"), primary_key=True
    )
    #: Replica id, or None when nobody holds the target.
    holder: Mapped[str | None] = mapped_column(String(255))
    expires_at: Mapped[datetime | None]
    acquired_at: Mapped[datetime | None]
    #: When the target's last collection started (database clock), whoever ran it: a new holder
    #: waits for the interval to pass from there.
    last_started_at: Mapped[datetime | None]
