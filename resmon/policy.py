"""The operator's policy — allocation ratios and operator reservations — applied by the core.

Collectors report facts (totals, what the hypervisor itself holds back, what instances are
allocated); this module turns them into Placement's final record, the same way for every driver,
in one place. It is pure: reports in, reports out.

Configuration (defaults are Nova's)::

    [resmon.policy]                 # every target
    cpu_allocation_ratio = 4.0
    reserved_host_memory_mb = 512

    [resmon.policy.shared_storage]  # one provider kind, every target
    disk_allocation_ratio = 1.0

    [[targets]]
    name = "kvm-01"
    ...
    [targets.policy]                # this target only
    cpu_allocation_ratio = 2.0
    [targets.policy.compute_host]   # this target, one provider kind
    reserved_host_cpus = 2

The most specific setting wins: target and kind, then target, then kind, then ``[resmon.policy]``,
then Nova's default.

Rules applied to every inventory of every report:

- ``operator_reserved`` = the policy's ``reserved_host_*`` of its class;
  ``reserved`` = ``hypervisor_reserved`` + ``operator_reserved``, at most ``total`` (a
  ``policy.reserved_clamped`` anomaly says when it had to be cut).
- A provider that is not up keeps its totals with ``reserved = total`` (capacity 0: exists, not
  schedulable).
- ``allocation_ratio`` = the policy's ratio of its class. Classes the policy does not cover
  (PCPU, VGPU, custom ones) keep what the collector reported.
- A cluster's reservations are the sums of its member hosts' (each host reserved once), plus
  what the cluster itself holds beyond its members: where its collector reports a
  ``hypervisor_reserved`` above the members' sum (vSphere HA failover capacity, resource-pool
  reservations), the difference is held too. Its ratios come from the cluster's policy. A
  cluster without member hosts in the collection gets the cluster policy's reservations.
- A schema 1.0 report has no ``hypervisor_reserved``: its ``reserved`` is taken as what the
  hypervisor holds back, so a 1.0 collector's own reservation is never dropped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field

from resmon.contract import (
    Anomaly,
    HostReport,
    HostState,
    Inventory,
    ObservedUsage,
    ProviderKind,
    units,
)

__all__ = [
    "MOVED_OPTIONS",
    "Policy",
    "PolicyOverrides",
    "PolicyTable",
    "TargetPolicy",
    "apply_policy",
    "moved_option_message",
    "resolve_policy",
]

Ratio = Annotated[float, Field(gt=0.0, le=1000.0)]
Reserved = Annotated[int, Field(ge=0, le=units.PLACEMENT_MAX_INT)]

#: Policy settings that collectors once took as ``[targets.options]``.
MOVED_OPTIONS: Final = frozenset(
    {
        "cpu_allocation_ratio",
        "ram_allocation_ratio",
        "disk_allocation_ratio",
        "reserved_host_cpus",
        "reserved_host_memory_mb",
        "reserved_host_disk_gb",
    }
)


class PolicyOverrides(BaseModel):
    """Some policy settings; what is left out comes from the next, less specific level."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu_allocation_ratio: Ratio | None = None
    ram_allocation_ratio: Ratio | None = None
    disk_allocation_ratio: Ratio | None = None
    reserved_host_cpus: Reserved | None = None
    reserved_host_memory_mb: Reserved | None = None
    reserved_host_disk_gb: Reserved | None = None


class PolicyTable(PolicyOverrides):
    """``[resmon.policy]`` or ``[targets.policy]``: settings plus one sub-table per kind."""

    compute_host: PolicyOverrides = Field(default_factory=PolicyOverrides)
    cluster: PolicyOverrides = Field(default_factory=PolicyOverrides)
    shared_storage: PolicyOverrides = Field(default_factory=PolicyOverrides)

    def for_kind(self, kind: ProviderKind) -> PolicyOverrides:
        overrides: PolicyOverrides = getattr(self, kind.value)
        return overrides


@dataclass(frozen=True)
class Policy:
    """Resolved policy of one provider kind on one target. The defaults are Nova's."""

    cpu_allocation_ratio: float = 4.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    reserved_host_cpus: int = 0
    reserved_host_memory_mb: int = 512
    reserved_host_disk_gb: int = 0

    def for_class(self, resource_class: str) -> tuple[float, int] | None:
        """(allocation ratio, operator reservation) of a class, or None if not covered."""
        if resource_class == "VCPU":
            return self.cpu_allocation_ratio, self.reserved_host_cpus
        if resource_class == "MEMORY_MB":
            return self.ram_allocation_ratio, self.reserved_host_memory_mb
        if resource_class == "DISK_GB":
            return self.disk_allocation_ratio, self.reserved_host_disk_gb
        return None


@dataclass(frozen=True)
class TargetPolicy:
    """The policy of every provider kind of one target."""

    by_kind: Mapping[ProviderKind, Policy]

    def __getitem__(self, kind: ProviderKind) -> Policy:
        return self.by_kind[kind]

    @classmethod
    def defaults(cls) -> TargetPolicy:
        return resolve_policy(PolicyTable(), None)


def resolve_policy(global_table: PolicyTable, target_table: PolicyTable | None) -> TargetPolicy:
    """Merge the levels: target+kind, target, kind, global, Nova's default (first set wins)."""
    by_kind = {}
    for kind in ProviderKind:
        levels: list[PolicyOverrides] = []
        if target_table is not None:
            levels += [target_table.for_kind(kind), target_table]
        levels += [global_table.for_kind(kind), global_table]
        values: dict[str, object] = {}
        for name in PolicyOverrides.model_fields:
            for level in levels:
                value = getattr(level, name)
                if value is not None:
                    values[name] = value
                    break
        by_kind[kind] = Policy(**values)  # type: ignore[arg-type]
    return TargetPolicy(by_kind)


def moved_option_message(options: Mapping[str, object]) -> str | None:
    """The error for a policy setting given as a collector option, or None if there is none."""
    moved = sorted(MOVED_OPTIONS & set(options))
    if not moved:
        return None
    return (
        f"option{'s' if len(moved) > 1 else ''} {', '.join(moved)} "
        f"{'are' if len(moved) > 1 else 'is'} policy, applied by resmon for every collector: "
        "set it in [resmon.policy] (every target) or [targets.policy] (this target), not in "
        "[targets.options]"
    )


def _clamped(report: HostReport, inv: Inventory, wanted: int) -> Anomaly:
    return Anomaly(
        code="policy.reserved_clamped",
        field=f"inventories[{inv.resource_class}]",
        message=(
            f"hypervisor_reserved {inv.hypervisor_reserved} + operator_reserved "
            f"{inv.operator_reserved} = {wanted} exceeds total {inv.total}; reserved set to total"
        ),
        raw_value=str(wanted),
    )


def _settle(
    report: HostReport,
    inv: Inventory,
    policy: Policy,
    *,
    summed: tuple[int, int, int] | None,
    anomalies: list[Anomaly],
) -> Inventory:
    """One inventory after policy. ``summed``: a cluster's member (hypervisor, operator, final)
    reservations of this class."""
    covered = policy.for_class(inv.resource_class)
    ratio = covered[0] if covered else inv.allocation_ratio
    if report.schema_version == "1.0":
        hypervisor_reserved = inv.reserved
    else:
        hypervisor_reserved = inv.hypervisor_reserved
    if summed is not None:
        members_held, operator_reserved, members_reserved = summed
        # What the cluster holds beyond its members (HA failover, resource pools) stays held.
        beyond = max(hypervisor_reserved - members_held, 0)
        hypervisor_reserved = members_held + beyond
        wanted = members_reserved + beyond
    else:
        operator_reserved = covered[1] if covered else 0
        wanted = hypervisor_reserved + operator_reserved
    settled = inv.model_copy(
        update={
            "hypervisor_reserved": hypervisor_reserved,
            "operator_reserved": operator_reserved,
            "allocation_ratio": ratio,
        }
    )
    if report.state is not HostState.UP:
        settled.reserved = inv.total
    elif wanted > inv.total:
        settled.reserved = inv.total
        anomalies.append(_clamped(report, settled, wanted))
    else:
        settled.reserved = wanted
    return settled


def _apply(
    report: HostReport,
    policy: Policy,
    members: Sequence[HostReport],
    anomalies: list[Anomaly],
) -> HostReport:
    sums: dict[str, tuple[int, int, int]] = {}
    if members:
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for member in members:
            for inv in member.inventories:
                entry = totals[inv.resource_class]
                entry[0] += inv.hypervisor_reserved
                entry[1] += inv.operator_reserved
                entry[2] += inv.reserved
        sums = {rc: (a, b, c) for rc, (a, b, c) in totals.items()}
    inventories = [
        _settle(
            report,
            inv,
            policy,
            summed=sums.get(inv.resource_class, (0, 0, 0)) if members else None,
            anomalies=anomalies,
        )
        for inv in report.inventories
    ]
    update: dict[str, object] = {"inventories": inventories}
    memory = report.memory
    if memory is not None and memory.used_bytes is not None:
        # Observed memory in the one place 1.1 keeps observed figures, also for 1.0 reports.
        observed = report.observed or ObservedUsage()
        if observed.memory_used_bytes is None:
            update["observed"] = observed.model_copy(
                update={"memory_used_bytes": memory.used_bytes}
            )
    return report.model_copy(update=update)


def apply_policy(
    reports: Sequence[HostReport], policy: TargetPolicy
) -> tuple[list[HostReport], dict[tuple[str, str], list[Anomaly]]]:
    """Reports with the policy applied, and the anomalies it raised per report key."""
    anomalies: dict[tuple[str, str], list[Anomaly]] = defaultdict(list)
    settled: dict[tuple[str, str], HostReport] = {}
    clusters = [r for r in reports if r.provider_kind is ProviderKind.CLUSTER]
    for report in reports:
        if report.provider_kind is not ProviderKind.CLUSTER:
            settled[report.key] = _apply(
                report, policy[report.provider_kind], (), anomalies[report.key]
            )
    for cluster in clusters:
        members = [
            r
            for r in settled.values()
            if r.provider_kind is ProviderKind.COMPUTE_HOST
            and r.parent_id == cluster.identity.host_id
            and r.identity.target == cluster.identity.target
        ]
        settled[cluster.key] = _apply(
            cluster, policy[ProviderKind.CLUSTER], members, anomalies[cluster.key]
        )
    ordered = [settled[r.key] for r in reports]
    return ordered, {key: found for key, found in anomalies.items() if found}
