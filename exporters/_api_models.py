"""Response models of the query API: the shapes its OpenAPI document describes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "AnomalyOut",
    "AnomalyPage",
    "CandidateList",
    "CandidateOut",
    "ChangeOut",
    "ChangePage",
    "CollectionStatus",
    "ErrorBody",
    "ErrorItem",
    "Health",
    "HostDetail",
    "HostPage",
    "HostSummary",
    "InventoryRecord",
    "PlacementSyncOut",
    "Ready",
    "RequestedResource",
    "SharingProviderOut",
    "TargetList",
    "TargetOut",
]


class ErrorItem(BaseModel):
    status: int
    title: str
    detail: str
    code: str


class ErrorBody(BaseModel):
    errors: list[ErrorItem]


class InventoryRecord(BaseModel):
    """Placement's inventory record plus allocated use; capacity and free as stored."""

    total: int
    reserved: int = Field(
        description="Final reservation: the two parts below (or total when the provider is not up)."
    )
    hypervisor_reserved: int = Field(description="Held back by the hypervisor itself.")
    operator_reserved: int = Field(description="Reserved by the operator's policy.")
    min_unit: int
    max_unit: int
    step_size: int
    allocation_ratio: float
    used: int = Field(description="Allocated to running instances (Placement's meaning).")
    capacity: int
    free: int


class HostSummary(BaseModel):
    id: str = Field(description="Stable opaque id derived from (target, host_id).")
    target: str
    host_id: str
    hostname: str | None
    provider_kind: str
    parent_id: str | None
    state: str
    hv_type: str | None
    hypervisor_version: str | None
    arch: str | None
    cpu_model: str | None
    collector: str
    collected_at: datetime
    stale: bool
    inventories: dict[str, InventoryRecord]


class HostPage(BaseModel):
    hosts: list[HostSummary]
    next_cursor: str | None = Field(
        description="Pass as cursor for the next page; null at the end."
    )


class CollectionStatus(BaseModel):
    status: str = Field(description="never, success or failed")
    stale: bool
    error_kind: str | None
    error_message: str | None
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    duration_s: float | None
    consecutive_failures: int


class AnomalyOut(BaseModel):
    id: int
    host: str = Field(description="The host's API id.")
    target: str
    host_id: str
    code: str
    field: str
    message: str
    raw_value: str | None
    source: str = Field(description="collector or core")
    detected_at: datetime


class HostDetail(BaseModel):
    host: HostSummary
    report: dict[str, Any] = Field(description="The full normalised report (schema v1).")
    anomalies: list[AnomalyOut]
    last_collection: CollectionStatus


class PlacementSyncOut(BaseModel):
    configured: bool = Field(description="This process runs Placement syncs ([placement]).")
    status: str = Field(
        description="never, waiting (for every target's first collection), success or failed"
    )
    error_kind: str | None
    error_message: str | None = Field(description="One line.")
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    duration_s: float | None
    consecutive_failures: int
    holder: str | None = Field(
        description="The replica holding the sync's lease (PostgreSQL replicas); null otherwise."
    )
    mode: str | None = Field(description="nova or standalone; null when not configured here.")
    interval_s: float | None
    running: bool = Field(description="A sync of this process is under way.")
    runs: int = Field(description="Syncs this process ran.")
    errors: dict[str, int] = Field(description="Failed syncs of this process by error kind.")
    providers: int | None = Field(description="Providers of this process's last sync.")
    writes: int | None = Field(description="Writes of this process's last sync.")


class TargetOut(BaseModel):
    name: str
    collector: str
    interval_s: float
    hosts: int
    collection: CollectionStatus
    replica: str | None = Field(
        None,
        description="The daemon replica currently leasing (collecting) the target, when "
        "replicas share a PostgreSQL database; null otherwise or between holders.",
    )


class TargetList(BaseModel):
    targets: list[TargetOut]


class ChangeOut(BaseModel):
    """One inventory field of one provider that changed between two collections."""

    id: int
    changed_at: datetime
    resource_class: str = Field(description="A resource class, or * for the provider itself.")
    field: str = Field(
        description="total, reserved or allocation_ratio; provider_added / provider_removed "
        "(resource_class *) when the provider appeared or went away."
    )
    old_value: float | None
    new_value: float | None
    run_id: int | None = Field(description="The collection run that saw it (null once pruned).")


class ChangePage(BaseModel):
    changes: list[ChangeOut]
    next_cursor: str | None


class AnomalyPage(BaseModel):
    anomalies: list[AnomalyOut]
    next_cursor: str | None


class RequestedResource(BaseModel):
    requested: int
    free: int = Field(description="Free at the provider that supplies it")
    free_after: int = Field(description="free - requested")
    provider: str = Field(
        description="API id of the provider that supplies it: the host or a sharing provider"
    )


class SharingProviderOut(BaseModel):
    """A shared-storage provider that supplies part of a candidate (Placement's sharing
    provider): the classes it supplies and its inventories."""

    id: str
    host_id: str
    hostname: str | None
    resources: dict[str, int]
    inventories: dict[str, InventoryRecord]


class CandidateOut(BaseModel):
    id: str
    target: str
    host_id: str
    hostname: str | None
    parent_id: str | None
    hv_type: str | None
    arch: str | None
    stale: bool
    resources: dict[str, RequestedResource]
    inventories: dict[str, InventoryRecord]
    sharing_providers: list[SharingProviderOut]


class CandidateList(BaseModel):
    candidates: list[CandidateOut]


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    revision: str
