"""The collector contract: what a collector may import from resmon, and nothing else.

Schema models, vocabulary, unit conversions, errors and the :class:`Collector` interface.
"""

from __future__ import annotations

from . import _units as units
from . import _vocabulary as vocabulary
from ._collector import (
    CONTRACT_VERSION,
    ENTRY_POINT_GROUP,
    Capability,
    Collector,
    OfflineInput,
    Target,
)
from ._errors import (
    ERROR_KINDS,
    AuthenticationFailed,
    CollectorError,
    ContractViolation,
    IncompatibleContract,
    InvalidNativeData,
    TargetTimeout,
    TargetUnreachable,
    UnsupportedTarget,
)
from ._schema import (
    SCHEMA_VERSION,
    Anomaly,
    CollectorInfo,
    Cpu,
    Health,
    HostIdentity,
    HostReport,
    HostState,
    HugePages,
    Hypervisor,
    InstanceAllocation,
    InstanceStates,
    Inventory,
    Location,
    Memory,
    NumaCell,
    ObservedUsage,
    ProviderKind,
    RunningInstances,
    SharedStorageUsage,
    SupportedInstance,
    parse_version,
)

__all__ = [
    "CONTRACT_VERSION",
    "ENTRY_POINT_GROUP",
    "ERROR_KINDS",
    "SCHEMA_VERSION",
    "Anomaly",
    "AuthenticationFailed",
    "Capability",
    "Collector",
    "CollectorError",
    "CollectorInfo",
    "ContractViolation",
    "Cpu",
    "Health",
    "HostIdentity",
    "HostReport",
    "HostState",
    "HugePages",
    "Hypervisor",
    "IncompatibleContract",
    "InstanceAllocation",
    "InstanceStates",
    "InvalidNativeData",
    "Inventory",
    "Location",
    "Memory",
    "NumaCell",
    "ObservedUsage",
    "OfflineInput",
    "ProviderKind",
    "RunningInstances",
    "SharedStorageUsage",
    "SupportedInstance",
    "Target",
    "TargetTimeout",
    "TargetUnreachable",
    "UnsupportedTarget",
    "parse_version",
    "units",
    "vocabulary",
]
