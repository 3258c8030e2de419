"""Schema v1: the normalised report every collector returns.

Units are in the field names; all capacities are integers in base units (bytes, MHz).
Placement's inventory record is kept as is (``MEMORY_MB`` counts MiB, ``DISK_GB`` GiB), because
schedulers compare against Placement semantics; ``Inventory.capacity`` is the one place where
capacity after the allocation ratio is computed.

Facts versus policy (schema 1.1): a collector reports facts only — totals, what the hypervisor
itself holds back (``Inventory.hypervisor_reserved``), what running instances are allocated
(``Inventory.used``, Placement's meaning) and, separately, what is observed in use
(:class:`ObservedUsage`). The core applies the operator's policy (allocation ratios, operator
reservations) to every report after ``collect()``.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from ._units import MAX_BYTES, MAX_COUNT, PLACEMENT_MAX_INT

__all__ = [
    "SCHEMA_VERSION",
    "Anomaly",
    "CollectorInfo",
    "Cpu",
    "HostIdentity",
    "HostReport",
    "Health",
    "HostState",
    "HugePages",
    "Hypervisor",
    "InstanceAllocation",
    "InstanceStates",
    "Inventory",
    "Location",
    "Memory",
    "NumaCell",
    "ObservedUsage",
    "ProviderKind",
    "RunningInstances",
    "SharedStorageUsage",
    "SupportedInstance",
    "parse_version",
]

#: Version of this schema; additive change bumps the minor, anything else the major.
SCHEMA_VERSION: Final = "1.1"

Bytes = Annotated[int, Field(ge=0, le=MAX_BYTES)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
PlacementInt = Annotated[int, Field(ge=0, le=PLACEMENT_MAX_INT)]
Name = Annotated[str, Field(min_length=1, max_length=255)]

_RESOURCE_CLASS = re.compile(r"^[A-Z0-9_]+$")
_TRAIT = re.compile(r"^[A-Z0-9_]+$")
_VERSION = re.compile(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=False)


class ProviderKind(StrEnum):
    """What a report describes. Clusters and shared storage are providers of their own so that
    capacity is never double counted across the hosts that share it."""

    COMPUTE_HOST = "compute_host"
    CLUSTER = "cluster"
    SHARED_STORAGE = "shared_storage"


class HostState(StrEnum):
    """Runtime state as the hypervisor reports it; only ``up`` providers are schedulable."""

    UP = "up"
    MAINTENANCE = "maintenance"
    DISCONNECTED = "disconnected"
    NOT_RESPONDING = "not_responding"
    STANDBY = "standby"
    UNKNOWN = "unknown"


class Health(StrEnum):
    """Overall health as the hypervisor itself rates the provider (vSphere ``overallStatus``:
    green → ok, yellow → warning, red → critical, gray → unknown)."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    UNKNOWN = "unknown"


class Anomaly(_Model):
    """A value that was kept but looks wrong or unknown (soft invariant, unknown vocabulary)."""

    code: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_.]+$")]
    field: Annotated[str, Field(max_length=255)] = ""
    message: Annotated[str, Field(max_length=2000)]
    raw_value: Annotated[str | None, Field(max_length=1000)] = None

    @classmethod
    def of(cls, code: str, field: str, message: str, raw: object = None) -> Anomaly:
        """An anomaly about ``raw`` (any value, kept as text, cut to the field's length)."""
        raw_value = None if raw is None else str(raw)[:1000]
        return cls(code=code, field=field, message=message, raw_value=raw_value)


class HostIdentity(_Model):
    """Identity: ``host_id`` comes from the hypervisor itself (libvirt host UUID, vSphere hardware
    UUID or managed object id, Windows SMBIOS UUID) and is unique within ``target``; the hostname
    is a label, never a key."""

    host_id: Name
    target: Name
    hostname: Annotated[str | None, Field(max_length=255)] = None


def parse_version(version: str) -> tuple[int, int, int] | None:
    """``(major, minor, patch)`` of the first dotted number in ``version``, or None."""
    match = _VERSION.search(version)
    if match is None:
        return None
    major, minor, patch = (int(part) if part else 0 for part in match.groups())
    return major, minor, patch


class Hypervisor(_Model):
    """The hypervisor software. ``version`` is kept as the product says it; the parsed parts are
    filled from it when they parse (never packed into one integer)."""

    hv_type: Name
    product: Annotated[str, Field(max_length=255)] = ""
    version: Annotated[str, Field(max_length=255)] = ""
    version_major: Count | None = None
    version_minor: Count | None = None
    version_patch: Count | None = None

    @model_validator(mode="after")
    def _fill_parsed_version(self) -> Hypervisor:
        if self.version and self.version_major is None:
            parsed = parse_version(self.version)
            if parsed is not None:
                self.version_major, self.version_minor, self.version_patch = parsed
        return self


class Cpu(_Model):
    """Host CPU. ``online_cpus`` is the number of logical CPUs the hypervisor can schedule."""

    arch: Name
    vendor: Annotated[str | None, Field(max_length=255)] = None
    model: Annotated[str | None, Field(max_length=255)] = None
    sockets: Count | None = None
    cores_per_socket: Count | None = None
    threads_per_core: Count | None = None
    total_cpus: Count | None = None
    online_cpus: Count | None = None
    cpu_mhz: Count | None = None
    features: list[Annotated[str, Field(max_length=255)]] = Field(default_factory=list)
    traits: list[str] = Field(default_factory=list)


class Memory(_Model):
    """Host memory in bytes; ``free_bytes``/``used_bytes`` are observed, not allocated (what
    instances are allocated is ``Inventory.used`` of ``MEMORY_MB``)."""

    total_bytes: Bytes
    free_bytes: Bytes | None = None
    used_bytes: Bytes | None = None


class HugePages(_Model):
    """Pages of one size: ``total`` and ``free`` count pages, not bytes."""

    page_size_bytes: Annotated[int, Field(gt=0, le=MAX_BYTES)]
    total: Count
    free: Count | None = None


class NumaCell(_Model):
    """One NUMA cell: its logical CPUs (ids), its memory and its pages per size."""

    cell_id: Count
    cpus: list[Count] = Field(default_factory=list)
    memory_bytes: Bytes | None = None
    free_memory_bytes: Bytes | None = None
    huge_pages: list[HugePages] = Field(default_factory=list)


class Inventory(_Model):
    """Placement's inventory record for one resource class, plus ``used``.

    ``used`` is what running instances are allocated (Placement's meaning: the sum of their
    flavours), not what is observed in use (see :class:`ObservedUsage`).

    ``reserved`` is the final figure Placement gets. Its visible parts (schema 1.1):
    ``hypervisor_reserved`` is what the hypervisor itself holds back (ESXi system resource pools,
    Hyper-V's root reserve), a fact the collector reports; ``operator_reserved`` is the
    operator's policy (``reserved_host_*``), filled by the core. The core sets
    ``reserved = hypervisor_reserved + operator_reserved`` (at most ``total``), or ``total`` for
    a provider that is not up. ``allocation_ratio`` is policy too: the core writes it.
    """

    resource_class: Annotated[str, Field(min_length=1, max_length=255)]
    total: PlacementInt
    reserved: PlacementInt = 0
    hypervisor_reserved: PlacementInt = 0
    operator_reserved: PlacementInt = 0
    min_unit: Annotated[int, Field(ge=1, le=PLACEMENT_MAX_INT)] = 1
    max_unit: Annotated[int, Field(ge=1, le=PLACEMENT_MAX_INT)] = PLACEMENT_MAX_INT
    step_size: Annotated[int, Field(ge=1, le=PLACEMENT_MAX_INT)] = 1
    allocation_ratio: Annotated[float, Field(gt=0.0, le=1000.0)] = 1.0
    used: PlacementInt = 0

    @field_validator("resource_class")
    @classmethod
    def _resource_class_spelling(cls, value: str) -> str:
        if not _RESOURCE_CLASS.match(value):
            raise ValueError(f"resource class {value!r} must be upper case letters, digits and _")
        return value

    @property
    def capacity(self) -> int:
        """(total − reserved) × allocation_ratio, floored: what may be allocated in all."""
        return int((self.total - self.reserved) * self.allocation_ratio)

    @property
    def free(self) -> int:
        """Capacity not yet used (never negative)."""
        return max(self.capacity - self.used, 0)


class SupportedInstance(_Model):
    """One (arch, hv_type, vm_mode) the host says it can run, with details where known."""

    arch: Name
    hv_type: Name
    vm_mode: Name
    machine_types: list[Annotated[str, Field(max_length=255)]] = Field(default_factory=list)
    max_vcpus: Count | None = None
    firmware: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list)
    details: dict[str, str] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.arch}/{self.hv_type}/{self.vm_mode}"


class InstanceAllocation(_Model):
    """One running (or placed) instance and what it holds."""

    instance_id: Name
    name: Annotated[str | None, Field(max_length=255)] = None
    vcpus: Count
    memory_bytes: Bytes
    state: Annotated[str, Field(max_length=64)] = "running"


class RunningInstances(_Model):
    """Instances that hold resources on the host; totals are the sums of ``instances``."""

    count: Count = 0
    vcpus: Count = 0
    memory_bytes: Bytes = 0
    instances: list[InstanceAllocation] = Field(default_factory=list)

    @classmethod
    def from_instances(cls, instances: list[InstanceAllocation]) -> RunningInstances:
        return cls(
            count=len(instances),
            vcpus=sum(i.vcpus for i in instances),
            memory_bytes=sum(i.memory_bytes for i in instances),
            instances=instances,
        )


class InstanceStates(_Model):
    """How many instances the provider holds per power state (every instance, not only those
    in ``running_instances``). ``other`` counts states outside this list (e.g. migrating)."""

    running: Count = 0
    paused: Count = 0
    suspended: Count = 0
    stopped: Count = 0
    other: Count = 0


class ObservedUsage(_Model):
    """What the hypervisor observes in use at collection time (not allocations).

    ``cpu_used_mhz``: CPU demand actually served (vSphere ``quickStats.overallCpuUsage``; libvirt
    from node CPU time between two samples). ``memory_used_bytes``: memory in use (vSphere
    ``quickStats.overallMemoryUsage``; libvirt/Windows total − free); the same figure as
    ``Memory.used_bytes``, which schema 1.0 already carried.
    """

    cpu_used_mhz: Count | None = None
    memory_used_bytes: Bytes | None = None


class Location(_Model):
    """Where the provider sits, by the names operators know (not managed-object ids)."""

    datacenter: Annotated[str | None, Field(max_length=255)] = None
    cluster: Annotated[str | None, Field(max_length=255)] = None


class SharedStorageUsage(_Model):
    """Thin-provisioning facts of a shared-storage provider: ``provisioned_bytes`` is what its
    disks may grow to in all (used + ``uncommitted_bytes``), which may exceed capacity."""

    provisioned_bytes: Bytes | None = None
    uncommitted_bytes: Bytes | None = None


class CollectorInfo(_Model):
    name: Name
    version: Annotated[str, Field(min_length=1, max_length=64)]


class HostReport(_Model):
    """One provider as seen at ``collected_at``: a compute host, a cluster or shared storage.

    ``parent_id`` links a host to its cluster (same target); ``shared_with`` lists the host ids
    that use a shared-storage provider. Schema 1.1 adds optional facts: ``boot_time``,
    ``health``, ``location``, ``instance_states``, ``observed`` and ``storage``; a 1.0 report
    (without them) is still accepted.
    """

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"$id": f"resmon:host-report:{SCHEMA_VERSION}"}
    )

    schema_version: Literal["1.0", "1.1"] = SCHEMA_VERSION
    provider_kind: ProviderKind = ProviderKind.COMPUTE_HOST
    identity: HostIdentity
    parent_id: Annotated[str | None, Field(max_length=255)] = None
    state: HostState = HostState.UP
    hypervisor: Hypervisor | None = None
    cpu: Cpu | None = None
    memory: Memory | None = None
    numa_cells: list[NumaCell] = Field(default_factory=list)
    inventories: list[Inventory] = Field(default_factory=list)
    traits: list[str] = Field(default_factory=list)
    supported_instances: list[SupportedInstance] = Field(default_factory=list)
    running_instances: RunningInstances = Field(default_factory=RunningInstances)
    shared_with: list[Annotated[str, Field(max_length=255)]] = Field(default_factory=list)
    boot_time: AwareDatetime | None = None
    health: Health | None = None
    location: Location | None = None
    instance_states: InstanceStates | None = None
    observed: ObservedUsage | None = None
    storage: SharedStorageUsage | None = None
    collected_at: AwareDatetime
    collector: CollectorInfo
    anomalies: list[Anomaly] = Field(default_factory=list)

    @field_validator("traits")
    @classmethod
    def _trait_spelling(cls, value: list[str]) -> list[str]:
        for trait in value:
            if not _TRAIT.match(trait):
                raise ValueError(f"trait {trait!r} must be upper case letters, digits and _")
        return sorted(set(value))

    @model_validator(mode="after")
    def _unique_keys(self) -> HostReport:
        classes = [inv.resource_class for inv in self.inventories]
        if len(classes) != len(set(classes)):
            raise ValueError(f"resource classes repeat in inventories: {sorted(classes)}")
        keys = [si.key for si in self.supported_instances]
        if len(keys) != len(set(keys)):
            raise ValueError(f"supported instances repeat: {sorted(keys)}")
        cells = [cell.cell_id for cell in self.numa_cells]
        if len(cells) != len(set(cells)):
            raise ValueError(f"NUMA cell ids repeat: {sorted(cells)}")
        if self.provider_kind is ProviderKind.COMPUTE_HOST and self.hypervisor is None:
            raise ValueError("a compute_host report needs a hypervisor")
        return self

    def inventory(self, resource_class: str) -> Inventory | None:
        for inv in self.inventories:
            if inv.resource_class == resource_class:
                return inv
        return None

    @property
    def key(self) -> tuple[str, str]:
        return self.identity.target, self.identity.host_id
