"""Invariants checked on every report the core accepts.

Schema violations (negative numbers, wrong types, repeated keys) are caught by the pydantic
models and reject the whole collection. What this module checks are the soft invariants: a report
that breaks one is stored, with an :class:`Anomaly` record per broken rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import os_resource_classes

from resmon.contract import Anomaly, HostReport, ProviderKind, parse_version, vocabulary

__all__ = ["DuplicateProvider", "check_batch", "check_report"]

#: Relative slack allowed between the NUMA cells' memory and the host total: firmware and the
#: kernel keep a little memory out of the cells' counts.
NUMA_MEMORY_TOLERANCE = 0.02


class DuplicateProvider(ValueError):
    """Two reports of one collection claim the same (target, host_id)."""


def _vocabulary_anomalies(report: HostReport) -> list[Anomaly]:
    found: list[Anomaly] = []
    if report.cpu is not None and report.cpu.arch not in vocabulary.ARCHITECTURES:
        found.append(
            Anomaly.of("vocabulary.arch", "cpu.arch", "unknown architecture", report.cpu.arch)
        )
    if report.hypervisor is not None and report.hypervisor.hv_type not in vocabulary.HV_TYPES:
        found.append(
            Anomaly.of(
                "vocabulary.hv_type",
                "hypervisor.hv_type",
                "unknown hypervisor type",
                report.hypervisor.hv_type,
            )
        )
    for i, si in enumerate(report.supported_instances):
        where = f"supported_instances[{i}]"
        if si.arch not in vocabulary.ARCHITECTURES:
            found.append(
                Anomaly.of("vocabulary.arch", f"{where}.arch", "unknown architecture", si.arch)
            )
        if si.hv_type not in vocabulary.HV_TYPES:
            found.append(
                Anomaly.of(
                    "vocabulary.hv_type", f"{where}.hv_type", "unknown hypervisor type", si.hv_type
                )
            )
        if si.vm_mode not in vocabulary.VM_MODES:
            found.append(
                Anomaly.of("vocabulary.vm_mode", f"{where}.vm_mode", "unknown VM mode", si.vm_mode)
            )
    for trait in report.traits:
        if not vocabulary.is_known_trait(trait):
            found.append(Anomaly.of("vocabulary.trait", "traits", "not an os-traits name", trait))
    for inv in report.inventories:
        rc = inv.resource_class
        if rc not in os_resource_classes.STANDARDS and not os_resource_classes.is_custom(rc):
            found.append(
                Anomaly.of(
                    "vocabulary.resource_class",
                    "inventories",
                    "not an os-resource-classes name",
                    rc,
                )
            )
    return found


def _inventory_anomalies(report: HostReport) -> list[Anomaly]:
    found: list[Anomaly] = []
    for inv in report.inventories:
        where = f"inventories[{inv.resource_class}]"
        if inv.reserved > inv.total:
            found.append(
                Anomaly.of(
                    "inventory.reserved_exceeds_total",
                    where,
                    f"reserved {inv.reserved} > total {inv.total}",
                    inv.reserved,
                )
            )
        if inv.used > inv.capacity:
            found.append(
                Anomaly.of(
                    "inventory.used_exceeds_capacity",
                    where,
                    f"used {inv.used} > capacity {inv.capacity} "
                    f"(total {inv.total}, reserved {inv.reserved}, "
                    f"allocation_ratio {inv.allocation_ratio})",
                    inv.used,
                )
            )
        if inv.min_unit > inv.max_unit:
            found.append(
                Anomaly.of(
                    "inventory.min_unit_exceeds_max_unit",
                    where,
                    f"min_unit {inv.min_unit} > max_unit {inv.max_unit}",
                    inv.min_unit,
                )
            )
    return found


def _host_anomalies(report: HostReport) -> list[Anomaly]:
    found: list[Anomaly] = []
    memory, cpu = report.memory, report.cpu
    if memory is not None:
        if memory.free_bytes is not None and memory.free_bytes > memory.total_bytes:
            found.append(
                Anomaly.of(
                    "memory.free_exceeds_total",
                    "memory.free_bytes",
                    f"free {memory.free_bytes} > total {memory.total_bytes}",
                    memory.free_bytes,
                )
            )
        if memory.used_bytes is not None and memory.used_bytes > memory.total_bytes:
            found.append(
                Anomaly.of(
                    "memory.used_exceeds_total",
                    "memory.used_bytes",
                    f"used {memory.used_bytes} > total {memory.total_bytes}",
                    memory.used_bytes,
                )
            )
        cell_memory = [c.memory_bytes for c in report.numa_cells if c.memory_bytes is not None]
        if cell_memory and len(cell_memory) == len(report.numa_cells) and memory.total_bytes:
            total = sum(cell_memory)
            if abs(total - memory.total_bytes) > NUMA_MEMORY_TOLERANCE * memory.total_bytes:
                found.append(
                    Anomaly.of(
                        "numa.memory_mismatch",
                        "numa_cells",
                        f"NUMA cells hold {total} bytes, host total is {memory.total_bytes}",
                        total,
                    )
                )
    if cpu is not None:
        if cpu.sockets and cpu.cores_per_socket and cpu.threads_per_core and cpu.total_cpus:
            topology = cpu.sockets * cpu.cores_per_socket * cpu.threads_per_core
            if topology != cpu.total_cpus:
                found.append(
                    Anomaly.of(
                        "cpu.topology_mismatch",
                        "cpu",
                        f"sockets×cores×threads = {topology}, total_cpus = {cpu.total_cpus}",
                        topology,
                    )
                )
        if cpu.online_cpus is not None and cpu.total_cpus is not None:
            if cpu.online_cpus > cpu.total_cpus:
                found.append(
                    Anomaly.of(
                        "cpu.online_exceeds_total",
                        "cpu.online_cpus",
                        f"online {cpu.online_cpus} > total {cpu.total_cpus}",
                        cpu.online_cpus,
                    )
                )
        cell_cpus = sum(len(c.cpus) for c in report.numa_cells)
        if cell_cpus and cpu.total_cpus and cell_cpus != cpu.total_cpus:
            found.append(
                Anomaly.of(
                    "numa.cpu_mismatch",
                    "numa_cells",
                    f"NUMA cells list {cell_cpus} CPUs, total_cpus = {cpu.total_cpus}",
                    cell_cpus,
                )
            )
    hv = report.hypervisor
    if hv is not None and hv.version and parse_version(hv.version) is None:
        found.append(
            Anomaly.of(
                "hypervisor.version_unparsed",
                "hypervisor.version",
                "version string does not parse",
                hv.version,
            )
        )
    running = report.running_instances
    if running.instances:
        if (
            running.count != len(running.instances)
            or running.vcpus != sum(i.vcpus for i in running.instances)
            or running.memory_bytes != sum(i.memory_bytes for i in running.instances)
        ):
            found.append(
                Anomaly.of(
                    "instances.totals_mismatch",
                    "running_instances",
                    "totals differ from the sum of the listed instances",
                )
            )
    return found


def check_report(report: HostReport) -> list[Anomaly]:
    """Soft-invariant anomalies of one report (the collector's own anomalies not included)."""
    found = _vocabulary_anomalies(report) + _inventory_anomalies(report)
    if report.provider_kind is not ProviderKind.SHARED_STORAGE:
        found += _host_anomalies(report)
    return found


def check_batch(reports: Sequence[HostReport]) -> dict[tuple[str, str], list[Anomaly]]:
    """Anomalies per report of one collection; raises DuplicateProvider on a repeated key."""
    keys = {r.key for r in reports}
    if len(keys) != len(reports):
        seen: set[tuple[str, str]] = set()
        for r in reports:
            if r.key in seen:
                raise DuplicateProvider(f"provider {r.identity.host_id!r} reported twice")
            seen.add(r.key)
    host_ids = {host_id for _, host_id in keys}
    result: dict[tuple[str, str], list[Anomaly]] = {}
    for report in reports:
        found = check_report(report)
        if report.parent_id is not None and report.parent_id not in host_ids:
            found.append(
                Anomaly.of(
                    "tree.unknown_parent",
                    "parent_id",
                    "parent provider is not in this collection",
                    report.parent_id,
                )
            )
        for shared in report.shared_with:
            if shared not in host_ids:
                found.append(
                    Anomaly.of(
                        "tree.unknown_sharer",
                        "shared_with",
                        "sharing host is not in this collection",
                        shared,
                    )
                )
        result[report.key] = found
    return result
