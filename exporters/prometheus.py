"""Prometheus exporter: the store's current state in the text exposition format.

Nothing is collected on scrape: hypervisors are slow, so the daemon collects on its own schedule
and every value here is as of the last collection (``resmon_host_last_collected_timestamp_seconds``
says how old). Names follow Prometheus conventions: ``resmon_`` prefix, base units in the name
(Placement's MEMORY_MB and DISK_GB inventories are exported in bytes, other classes in their own
unit, e.g. VCPU in CPUs, under ``*_units``), ``_total`` only on counters, identity in ``_info``
gauges of 1. Labels never clash with the target labels Prometheus adds (``cluster``,
``datacenter``, ``instance``, ``job``, ``region``): a provider is ``{target, host_id}``; its
parent provider (a managed-object id on vSphere) is the ``parent`` label of ``resmon_host_info``,
and the names operators know it by are ``datacenter_name`` and ``cluster_name`` there.

:func:`render_metrics` writes the exposition text straight from the rows (a fleet of 10,000 hosts
is ~300,000 samples; building an object per sample would cost seconds). :class:`StoreCollector`
is the prometheus_client face of the same text, for embedding in a registry: it renders, then
parses, so both can never disagree.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from sqlalchemy import Select, Text, cast, func, select
from sqlalchemy.exc import SQLAlchemyError

from resmon.contract import units
from resmon.store import BoundedReads, Store

from ._answer_cache import AnswerCache
from ._queries import TargetStatus, target_statuses
from ._sync_status import ERROR_KINDS, SyncStatus
from ._tables import ANOMALIES, COUNTS, HOSTS, INVENTORIES, NUMA_CELLS, SUPPORTED_INSTANCES

__all__ = [
    "CONTENT_TYPE",
    "FORBIDDEN_LABELS",
    "METRICS",
    "PLACEMENT_SYNC_METRICS",
    "StoreCollector",
    "render_metrics",
    "render_placement_sync",
]

log = logging.getLogger("resmon.exporters.prometheus")

#: Content type of the text exposition format (version 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Labels Prometheus or federation attach to targets; resmon never uses them.
FORBIDDEN_LABELS = frozenset({"cluster", "datacenter", "instance", "job", "region"})
#: Placement classes counted in MiB/GiB, exported in bytes (conversions live in contract.units).
_TO_BYTES: dict[str, int] = {"MEMORY_MB": units.MIB, "DISK_GB": units.GIB}
_AS_OF = " As of the last collection (collected on the daemon's schedule, not at scrape)."
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
#: Rows fetched per driver call: few enough that a chunk never sets off a full collection.
_CHUNK_ROWS = 500
_TARGET = ("collector", "target")
_HOST = ("host_id", "target")
_INVENTORY = ("host_id", "target", "resource_class")
_CELL = ("host_id", "target", "cell")
_PAGES = ("host_id", "target", "cell", "page_size_bytes")
_FIELDS = (
    "total", "reserved", "hypervisor_reserved", "operator_reserved", "used", "capacity", "free",
)  # fmt: skip
_FIELD_HELP = {
    "total": "Placement total",
    "reserved": "Placement reserved amount, hypervisor_reserved + operator_reserved (total "
    "when the provider is not up)",
    "hypervisor_reserved": "Part of reserved the hypervisor itself holds back (a fact it reports)",
    "operator_reserved": "Part of reserved the operator's policy holds back ([resmon.policy])",
    "used": "Allocated to running instances (Placement's used), not observed use",
    "capacity": "Capacity after the allocation ratio, (total - reserved) x ratio",
    "free": "Capacity not used, capacity - used, never negative",
}

#: Every family: name -> (type, HELP, label names). The catalogue operators and tests read.
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "resmon_collector_success": (
        "gauge", "1 when the target's last collection succeeded, else 0.", _TARGET),
    "resmon_collector_duration_seconds": (
        "gauge", "Duration of the target's last collection, successful or not.", _TARGET),
    "resmon_collector_last_success_timestamp_seconds": (
        "gauge", "Unix time of the target's last successful collection.", _TARGET),
    "resmon_collector_last_attempt_timestamp_seconds": (
        "gauge", "Unix time of the target's last collection attempt.", _TARGET),
    "resmon_collector_consecutive_failures": (
        "gauge", "Failed collections of the target since its last success.", _TARGET),
    "resmon_collector_runs_total": (
        "counter", "Collections of the target ever recorded in the store (pruning old history "
        "does not lower it).", _TARGET),
    "resmon_collector_errors_total": (
        "counter", "Failed collections of the target ever recorded in the store, by error kind.",
        ("collector", "target", "kind")),
    "resmon_target_stale": (
        "gauge", "1 when the target failed its last collection or has not succeeded for "
        "max(2 x interval, stale-after) seconds; its providers are then stale.", _TARGET),
    "resmon_target_replica_info": (
        "gauge", "The daemon replica leasing (collecting) the target, always 1; absent on "
        "SQLite and while no replica holds it.", ("collector", "target", "replica")),
    "resmon_target_providers": (
        "gauge", "Providers (hosts, clusters, shared storage) the target reported.", _TARGET),
    "resmon_stale_hosts": (
        "gauge", "Providers whose target is stale (see resmon_target_stale).", _TARGET),
    "resmon_host_info": (
        "gauge", "Provider identity, location and software, always 1; parent is the parent "
        "provider's id, datacenter_name and cluster_name the names the hypervisor gives them "
        "(empty when it reports none).",
        ("host_id", "target", "hostname", "provider_kind", "parent", "datacenter_name",
         "cluster_name", "hv_type",
         "hypervisor_version", "arch", "cpu_model", "collector", "collector_version")),
    "resmon_host_state": (
        "gauge", "1 for the provider's current state (up, maintenance, disconnected, ...); one "
        "series per provider.", ("host_id", "target", "state")),
    "resmon_host_last_collected_timestamp_seconds": (
        "gauge", "Unix time at which the provider's values were collected.", _HOST),
    "resmon_host_observed_cpu_used_hertz": (
        "gauge", "CPU the hypervisor observes in use on the provider (vSphere quickStats), in "
        "hertz; allocations are resmon_inventory_used_units{resource_class=\"VCPU\"}.", _HOST),
    "resmon_host_observed_memory_used_bytes": (
        "gauge", "Memory the hypervisor observes in use on the provider; allocations are "
        "resmon_inventory_used_bytes{resource_class=\"MEMORY_MB\"}.", _HOST),
    "resmon_host_boot_timestamp_seconds": (
        "gauge", "Unix time at which the host booted, as the hypervisor reports it.", _HOST),
    "resmon_host_health": (
        "gauge", "1 for the overall health the hypervisor reports for the provider (ok, "
        "warning, critical, unknown); absent when it reports none.",
        ("host_id", "target", "health")),
    "resmon_host_instances": (
        "gauge", "Instances on the provider per power state (running, paused, suspended, "
        "stopped, other).", ("host_id", "target", "state")),
    "resmon_storage_provisioned_bytes": (
        "gauge", "Space the shared storage's disks may grow to in all (used + uncommitted, "
        "thin provisioning), which may exceed its capacity.", _HOST),
    "resmon_storage_uncommitted_bytes": (
        "gauge", "Space the shared storage's thin disks may still grow by.", _HOST),
    "resmon_host_supported_instance_info": (
        "gauge", "An arch/hv_type/vm_mode the provider says it can run, always 1.",
        ("host_id", "target", "arch", "hv_type", "vm_mode")),
    **{
        f"resmon_inventory_{name}_units": (
            "gauge", f"{text}, in the resource class's own unit (VCPU: CPUs); classes counted "
            "in MiB or GiB are in resmon_inventory_*_bytes.", _INVENTORY)
        for name, text in _FIELD_HELP.items()
    },
    **{
        f"resmon_inventory_{name}_bytes": (
            "gauge", f"{text}, in bytes (MEMORY_MB and DISK_GB converted from MiB and GiB).",
            _INVENTORY)
        for name, text in _FIELD_HELP.items()
    },
    "resmon_inventory_allocation_ratio": (
        "gauge", "Placement allocation ratio (overcommit factor).", _INVENTORY),
    "resmon_numa_cell_cpus": ("gauge", "Logical CPUs of the NUMA cell.", _CELL),
    "resmon_numa_cell_memory_bytes": ("gauge", "Memory of the NUMA cell.", _CELL),
    "resmon_numa_cell_memory_free_bytes": ("gauge", "Free memory of the NUMA cell.", _CELL),
    "resmon_numa_cell_huge_pages": ("gauge", "Huge pages of one size in the cell.", _PAGES),
    "resmon_numa_cell_huge_pages_free": (
        "gauge", "Free huge pages of one size in the cell.", _PAGES),
    "resmon_anomalies": (
        "gauge", "Anomalies (soft-invariant violations, unknown values) by code.",
        ("target", "code")),
    "resmon_exporter_store_success": (
        "gauge", "1 when this scrape could read the store, 0 when the database failed.", ()),
    "resmon_exporter_store_read_duration_seconds": (
        "gauge", "Time this scrape spent reading the store.", ()),
    "resmon_exporter_store_up": (
        "gauge", "1 when this process's last database operation succeeded (its writes "
        "included), 0 while the database is unavailable.", ()),
    "resmon_exporter_store_last_error_timestamp_seconds": (
        "gauge", "When this process last found the database unavailable (0: never).", ()),
}  # fmt: skip


class _Lines:
    """Sample lines per family, without the family name (``{labels} value``).

    ``lines[name]`` is the family's open list; :meth:`flush` joins the open lists into chunks
    (``name`` between lines), so that a large fleet's ~300,000 short strings are joined and freed
    while still in the CPU cache instead of all at the end.
    """

    def __init__(self) -> None:
        self._open: dict[str, list[str]] = {name: [] for name in METRICS}
        self._chunks: dict[str, list[str]] = {name: [] for name in METRICS}

    def __getitem__(self, name: str) -> list[str]:
        return self._open[name]

    def flush(self) -> None:
        for name, lines in self._open.items():
            if lines:
                self._chunks[name].append(f"\n{name}".join(lines))
                lines.clear()  # in place: writers hold the list

    def text(self, name: str) -> bytes:
        """The family's sample lines, newline-terminated (empty when it has none), encoded.

        Each family is taken out as it is encoded, so a large body is never held three times.
        """
        self.flush()
        chunks = self._chunks.pop(name, [])
        return (name + f"\n{name}".join(chunks) + "\n").encode() if chunks else b""


def _escape(value: str) -> str:
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _float(value: float) -> str:
    """A sample value as Go's ParseFloat reads it."""
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Labels:
    """Label fragments ``a="x",b="y"``, with escaped values cached (hosts repeat a lot)."""

    def __init__(self) -> None:
        self._cache: dict[str, str] = {}

    def escape(self, value: str) -> str:
        escaped = self._cache.get(value)
        if escaped is None:
            escaped = self._cache[value] = _escape(value)
        return escaped

    def __call__(self, names: tuple[str, ...], values: tuple[str, ...]) -> str:
        parts = []
        for name, value in zip(names, values, strict=True):
            escaped = self._cache.get(value)
            if escaped is None:
                escaped = self._cache[value] = _escape(value)
            parts.append(f'{name}="{escaped}"')
        return ",".join(parts)


def _write(reads: BoundedReads, lines: _Lines, now: datetime, stale_after_s: float | None) -> None:
    # Each table is one statement: a collection stored in between can add providers whose rows
    # the later statements see but the hosts statement did not; those are left to the next
    # scrape rather than failing this one.
    label = _Labels()
    with reads.call() as session:
        targets = target_statuses(session, now=now, stale_after_s=stale_after_s)
    by_id = {t.id: t for t in targets}
    hosts: dict[int, str] = {}  # provider primary key -> its label fragment
    host_count = _write_hosts(reads, lines, label, by_id, hosts)
    _write_targets(reads, lines, label, targets, host_count)
    _write_inventories(reads, lines, label, hosts)
    _write_instances_and_cells(reads, lines, hosts)
    _write_anomalies(reads, lines, label, by_id)


def _write_targets(
    reads: BoundedReads,
    lines: _Lines,
    label: _Labels,
    targets: list[TargetStatus],
    host_count: dict[int, int],
) -> None:
    # Counters kept apart from the history (which retention prunes): they never go down.
    runs: dict[int, int] = {}
    errors: list[tuple[int, str, int]] = []
    with reads.call() as session:
        counts = session.execute(
            select(COUNTS.c.target_id, COUNTS.c.error_kind, COUNTS.c.runs).order_by(
                COUNTS.c.target_id, COUNTS.c.error_kind
            )
        ).all()
    for target_id, kind, count in counts:
        runs[target_id] = runs.get(target_id, 0) + count
        if kind:  # "" counts the successes
            errors.append((target_id, kind, count))
    keys = {}
    for t in targets:
        key = keys[t.id] = "{" + label(_TARGET, (t.collector, t.name)) + "} "
        lines["resmon_collector_success"].append(key + ("1" if t.last_status == "success" else "0"))
        if t.last_duration_s is not None:
            lines["resmon_collector_duration_seconds"].append(key + _float(t.last_duration_s))
        if t.last_success_at is not None:
            lines["resmon_collector_last_success_timestamp_seconds"].append(
                key + _float(t.last_success_at.timestamp())
            )
        if t.last_attempt_at is not None:
            lines["resmon_collector_last_attempt_timestamp_seconds"].append(
                key + _float(t.last_attempt_at.timestamp())
            )
        lines["resmon_collector_consecutive_failures"].append(key + str(t.consecutive_failures))
        lines["resmon_collector_runs_total"].append(key + str(runs.get(t.id, 0)))
        lines["resmon_target_stale"].append(key + ("1" if t.stale else "0"))
        if t.replica is not None:
            replica = label(("collector", "target", "replica"), (t.collector, t.name, t.replica))
            lines["resmon_target_replica_info"].append("{" + replica + "} 1")
        count = host_count.get(t.id, 0)
        lines["resmon_target_providers"].append(key + str(count))
        lines["resmon_stale_hosts"].append(key + str(count if t.stale else 0))
    by_id = {t.id: t for t in targets}
    for target_id, kind, count in errors:
        errored = by_id.get(target_id)
        if errored is None:  # a target stored after the targets were read (see _write)
            continue
        fragment = label(("collector", "target", "kind"), (errored.collector, errored.name, kind))
        lines["resmon_collector_errors_total"].append("{" + fragment + "} " + str(count))


def _stream(reads: BoundedReads, stmt: Select[Any], lines: _Lines) -> Iterator[Any]:
    """The rows of ``stmt``, fetched a chunk at a time and never all held at once; the lines
    written from each chunk are joined after it.

    Holding the ~70,000 rows of a large fleet at once (``.all()``) kept enough objects alive to
    set off full garbage collections in the middle of a render, which cost more than the
    rendering itself; fetching row by row costs a driver call per row.
    """
    for chunk in reads.stream(stmt, _CHUNK_ROWS):
        yield from chunk
        lines.flush()


def _write_hosts(
    reads: BoundedReads,
    lines: _Lines,
    label: _Labels,
    targets: dict[int, TargetStatus],
    hosts: dict[int, str],
) -> dict[int, int]:
    """Per-provider families; fills ``hosts`` and returns the provider count per target id."""
    rows = _stream(
        reads,
        select(
            HOSTS.c.id, HOSTS.c.target_id, HOSTS.c.host_id, HOSTS.c.hostname,
            HOSTS.c.state, HOSTS.c.collected_at, HOSTS.c.provider_kind,
            HOSTS.c.parent_id, HOSTS.c.datacenter, HOSTS.c.cluster, HOSTS.c.hv_type,
            HOSTS.c.hypervisor_version, HOSTS.c.arch, HOSTS.c.cpu_model,
            HOSTS.c.collector_name, HOSTS.c.collector_version,
            HOSTS.c.observed_cpu_used_mhz, HOSTS.c.observed_memory_used_bytes,
            HOSTS.c.boot_time, HOSTS.c.health, HOSTS.c.instance_states,
            HOSTS.c.storage_provisioned_bytes, HOSTS.c.storage_uncommitted_bytes,
        ).order_by(HOSTS.c.id),
        lines,
    )  # fmt: skip
    e = label.escape
    info = lines["resmon_host_info"]
    state = lines["resmon_host_state"]
    collected = lines["resmon_host_last_collected_timestamp_seconds"]
    observed_cpu = lines["resmon_host_observed_cpu_used_hertz"]
    observed_memory = lines["resmon_host_observed_memory_used_bytes"]
    booted = lines["resmon_host_boot_timestamp_seconds"]
    health_lines = lines["resmon_host_health"]
    instances = lines["resmon_host_instances"]
    provisioned = lines["resmon_storage_provisioned_bytes"]
    uncommitted = lines["resmon_storage_uncommitted_bytes"]
    target_labels = {pk: e(t.name) for pk, t in targets.items()}
    # The info labels after hostname repeat across a fleet (kind, location, hypervisor, CPU):
    # each distinct combination is escaped and formatted once.
    tails: dict[tuple[str | None, ...], str] = {}
    counts: dict[int, int] = {}
    for row in rows:
        pk, target_id, host_id, hostname, host_state, collected_at = row[:6]
        tail_key = tuple(row[6:16])
        cpu_mhz, memory_bytes, boot_time, health, instance_states = row[16:21]
        storage_provisioned, storage_uncommitted = row[21:]
        tail = tails.get(tail_key)
        if tail is None:
            (
                kind, parent, datacenter, cluster, hv_type, version, arch, cpu_model, collector,
                collector_version,
            ) = tail_key  # fmt: skip
            tail = tails[tail_key] = (
                f'provider_kind="{e(kind)}",parent="{e(parent or "")}",'
                f'datacenter_name="{e(datacenter or "")}",cluster_name="{e(cluster or "")}",'
                f'hv_type="{e(hv_type or "")}",hypervisor_version="{e(version or "")}",'
                f'arch="{e(arch or "")}",cpu_model="{e(cpu_model or "")}",'
                f'collector="{e(collector)}",collector_version="{e(collector_version)}"'
            )
        target = target_labels.get(target_id)
        if target is None:  # a target stored after the targets were read (see _write)
            continue
        counts[target_id] = counts.get(target_id, 0) + 1
        # host_id and hostname are unique per provider: escaped, not cached.
        host = hosts[pk] = f'host_id="{_escape(host_id)}",target="{target}"'
        info.append(f'{{{host},hostname="{_escape(hostname or "")}",{tail}}} 1')
        state.append(f'{{{host},state="{e(host_state)}"}} 1')
        # Seconds since the epoch as datetime.timestamp() computes them; SQLite's naive values
        # are UTC. A finite float, so repr() is what _float() would give.
        since = collected_at - (_EPOCH if collected_at.tzinfo else _NAIVE_EPOCH)
        collected.append(f"{{{host}}} {since.total_seconds()!r}")
        if cpu_mhz is not None:
            observed_cpu.append(f"{{{host}}} {cpu_mhz * 1_000_000}")
        if memory_bytes is not None:
            observed_memory.append(f"{{{host}}} {memory_bytes}")
        if boot_time is not None:
            boot = boot_time - (_EPOCH if boot_time.tzinfo else _NAIVE_EPOCH)
            booted.append(f"{{{host}}} {boot.total_seconds()!r}")
        if health is not None:
            health_lines.append(f'{{{host},health="{e(health)}"}} 1')
        if instance_states:
            for power_state, count in sorted(instance_states.items()):
                instances.append(f'{{{host},state="{e(power_state)}"}} {int(count)}')
        if storage_provisioned is not None:
            provisioned.append(f"{{{host}}} {storage_provisioned}")
        if storage_uncommitted is not None:
            uncommitted.append(f"{{{host}}} {storage_uncommitted}")
    return counts


def _write_inventories(
    reads: BoundedReads, lines: _Lines, label: _Labels, hosts: dict[int, str]
) -> None:
    rows = _stream(
        reads,
        select(
            INVENTORIES.c.host_pk, INVENTORIES.c.resource_class, INVENTORIES.c.total,
            INVENTORIES.c.reserved, INVENTORIES.c.hypervisor_reserved,
            INVENTORIES.c.operator_reserved, INVENTORIES.c.used, INVENTORIES.c.capacity,
            INVENTORIES.c.free, INVENTORIES.c.allocation_ratio,
        ).order_by(INVENTORIES.c.host_pk, INVENTORIES.c.resource_class),
        lines,
    )  # fmt: skip
    units_ = [lines[f"resmon_inventory_{name}_units"] for name in _FIELDS]
    bytes_ = [lines[f"resmon_inventory_{name}_bytes"] for name in _FIELDS]
    ratio = lines["resmon_inventory_allocation_ratio"]
    # Per class: its label, its factor to the exported unit and the families of that unit.
    classes: dict[str, tuple[str, int, list[list[str]]]] = {}
    ratios: dict[float, str] = {}
    for (
        host_pk, rc, total, reserved, hypervisor_reserved, operator_reserved, used, capacity,
        free, allocation_ratio,
    ) in rows:  # fmt: skip
        known = classes.get(rc)
        if known is None:
            factor = _TO_BYTES.get(rc)
            known = classes[rc] = (
                label(("resource_class",), (rc,)),
                factor or 1,
                units_ if factor is None else bytes_,
            )
        rc_label, factor, families = known
        f_total, f_reserved, f_hypervisor, f_operator, f_used, f_capacity, f_free = families
        host = hosts.get(host_pk)
        if host is None:  # stored after the hosts were read (see _write)
            continue
        key = f"{{{host},{rc_label}}} "
        f_total.append(f"{key}{total * factor}")
        f_reserved.append(f"{key}{reserved * factor}")
        f_hypervisor.append(f"{key}{hypervisor_reserved * factor}")
        f_operator.append(f"{key}{operator_reserved * factor}")
        f_used.append(f"{key}{used * factor}")
        f_capacity.append(f"{key}{capacity * factor}")
        f_free.append(f"{key}{free * factor}")
        ratio_text = ratios.get(allocation_ratio)
        if ratio_text is None:
            ratio_text = ratios[allocation_ratio] = _float(allocation_ratio)
        ratio.append(key + ratio_text)


def _write_instances_and_cells(reads: BoundedReads, lines: _Lines, hosts: dict[int, str]) -> None:
    label = _Labels()
    supported = lines["resmon_host_supported_instance_info"]
    instances: dict[tuple[str, str, str], str] = {}
    for host_pk, arch, hv_type, vm_mode in _stream(
        reads,
        select(
            SUPPORTED_INSTANCES.c.host_pk, SUPPORTED_INSTANCES.c.arch,
            SUPPORTED_INSTANCES.c.hv_type, SUPPORTED_INSTANCES.c.vm_mode,
        ).order_by(SUPPORTED_INSTANCES.c.host_pk, SUPPORTED_INSTANCES.c.id),
        lines,
    ):  # fmt: skip
        fragment = instances.get((arch, hv_type, vm_mode))
        if fragment is None:
            fragment = instances[arch, hv_type, vm_mode] = label(
                ("arch", "hv_type", "vm_mode"), (arch, hv_type, vm_mode)
            )
        host = hosts.get(host_pk)
        if host is not None:
            supported.append(f"{{{host},{fragment}}} 1")

    cpus = lines["resmon_numa_cell_cpus"]
    memory = lines["resmon_numa_cell_memory_bytes"]
    memory_free = lines["resmon_numa_cell_memory_free_bytes"]
    pages = lines["resmon_numa_cell_huge_pages"]
    pages_free = lines["resmon_numa_cell_huge_pages_free"]
    decode = json.JSONDecoder().raw_decode
    page_sizes: dict[str, str] = {}  # JSON key -> label, checked to be an integer
    # Huge pages are read as JSON text on every backend (PostgreSQL's driver would otherwise
    # decode each through the json module's Python layer): cells without any need no decoding.
    for host_pk, cell_id, cpu_count, memory_bytes, free_bytes, huge_pages in _stream(
        reads,
        select(
            NUMA_CELLS.c.host_pk, NUMA_CELLS.c.cell_id, NUMA_CELLS.c.cpu_count,
            NUMA_CELLS.c.memory_bytes, NUMA_CELLS.c.free_memory_bytes,
            cast(NUMA_CELLS.c.huge_pages, Text),
        ).order_by(NUMA_CELLS.c.host_pk, NUMA_CELLS.c.cell_id),
        lines,
    ):  # fmt: skip
        host = hosts.get(host_pk)
        if host is None:
            continue
        key = f'{{{host},cell="{cell_id}"}} '
        cpus.append(f"{key}{cpu_count}")
        if memory_bytes is not None:
            memory.append(f"{key}{memory_bytes}")
        if free_bytes is not None:
            memory_free.append(f"{key}{free_bytes}")
        if not huge_pages or huge_pages == "{}":
            continue
        sizes: dict[str, dict[str, int | None]] = decode(huge_pages.strip())[0] or {}
        items = sorted(sizes.items(), key=_page_size) if len(sizes) > 1 else sizes.items()
        for size, count in items:
            size_label = page_sizes.get(size)
            if size_label is None:
                size_label = page_sizes[size] = f'page_size_bytes="{int(size)}"'
            page_key = f'{{{host},cell="{cell_id}",{size_label}}} '
            pages.append(f"{page_key}{int(count.get('total') or 0)}")
            page_free = count.get("free")
            if page_free is not None:
                pages_free.append(f"{page_key}{int(page_free)}")


def _page_size(item: tuple[str, Any]) -> int:
    return int(item[0])


def _write_anomalies(
    reads: BoundedReads, lines: _Lines, label: _Labels, targets: dict[int, TargetStatus]
) -> None:
    with reads.call() as session:
        rows = session.execute(
            select(HOSTS.c.target_id, ANOMALIES.c.code, func.count())
            .join(HOSTS, HOSTS.c.id == ANOMALIES.c.host_pk)
            .group_by(HOSTS.c.target_id, ANOMALIES.c.code)
            .order_by(HOSTS.c.target_id, ANOMALIES.c.code)
        ).all()
    out = lines["resmon_anomalies"]
    for target_id, code, count in rows:
        target = targets.get(target_id)
        if target is not None:  # else stored after the targets were read (see _write)
            out.append("{" + label(("target", "code"), (target.name, code)) + "} " + str(count))


def render_metrics(
    store: Store, *, stale_after_s: float | None = None, now: datetime | None = None
) -> bytes:
    """The ``/metrics`` body for ``store`` (text exposition format 0.0.4), with staleness and
    leases judged as of ``now`` (default: the current time).

    A database that fails gives ``resmon_exporter_store_success 0`` and no store families, never
    a failed scrape.
    """
    lines = _Lines()
    reading: BoundedReads | None = None
    try:
        # Each database call is bounded by the store's timeout, not the whole render: turning
        # a large fleet's rows into text takes longer than reading them.
        with store.reads() as reading:
            _write(reading, lines, now or datetime.now(UTC), stale_after_s)
        ok = "1"
    except SQLAlchemyError as exc:
        log.error("reading the store for /metrics failed: %s", exc)
        lines = _Lines()
        ok = "0"
    lines["resmon_exporter_store_success"].append(" " + ok)
    read_s = reading.db_seconds if reading is not None else 0.0
    lines["resmon_exporter_store_read_duration_seconds"].append(" " + _float(read_s))
    health = store.health()
    lines["resmon_exporter_store_up"].append(" 1" if health.up else " 0")
    error_at = health.last_error_at.timestamp() if health.last_error_at else 0.0
    lines["resmon_exporter_store_last_error_timestamp_seconds"].append(" " + _float(error_at))
    out: list[bytes] = []
    for name, (kind, help_, _labels) in METRICS.items():
        text = help_ if name.startswith("resmon_exporter_") else help_ + _AS_OF
        out.append(f"# HELP {name} {text}\n# TYPE {name} {kind}\n".encode())
        out.append(lines.text(name))
    return b"".join(out)


# -- the Placement sync --------------------------------------------------------------------------

#: The Placement sync's families, exported by the daemon that runs the sync ([placement]) from
#: its own memory, after the store's families: counters count this process's syncs.
PLACEMENT_SYNC_METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "resmon_placement_sync_runs_total": (
        "counter", "Placement syncs this process ran, failed or not.", ()),
    "resmon_placement_sync_errors_total": (
        "counter", "Failed Placement syncs of this process, by error kind.", ("kind",)),
    "resmon_placement_sync_success": (
        "gauge", "1 when the last Placement sync succeeded, else 0 (also before the first).", ()),
    "resmon_placement_sync_lease_held": (
        "gauge", "1 when this process holds the sync's lease (runs the syncs), else 0.", ()),
    "resmon_placement_sync_last_attempt_timestamp_seconds": (
        "gauge", "Unix time at which the last Placement sync of this process ended.", ()),
    "resmon_placement_sync_last_success_timestamp_seconds": (
        "gauge", "Unix time at which the last successful Placement sync ended.", ()),
    "resmon_placement_sync_duration_seconds": (
        "gauge", "Duration of the last Placement sync, successful or not.", ()),
    "resmon_placement_sync_consecutive_failures": (
        "gauge", "Failed Placement syncs since the last success.", ()),
    "resmon_placement_sync_providers": (
        "gauge", "Providers the last Placement sync made Placement hold.", ()),
    "resmon_placement_sync_writes": (
        "gauge", "Writes (POST, PUT, DELETE) the last Placement sync made; 0 when Placement "
        "already held everything.", ()),
}  # fmt: skip


def render_placement_sync(status: SyncStatus) -> bytes:
    """The Placement sync's families (text exposition format 0.0.4) for ``status``."""
    samples: dict[str, list[str]] = {name: [] for name in PLACEMENT_SYNC_METRICS}
    samples["resmon_placement_sync_runs_total"].append(f" {status.runs}")
    for kind in sorted({*ERROR_KINDS, *status.errors}):
        samples["resmon_placement_sync_errors_total"].append(
            f'{{kind="{_escape(kind)}"}} {status.errors.get(kind, 0)}'
        )
    samples["resmon_placement_sync_success"].append(" 1" if status.status == "success" else " 0")
    samples["resmon_placement_sync_lease_held"].append(" 1" if status.lease_held else " 0")
    optional = {
        "resmon_placement_sync_last_attempt_timestamp_seconds": status.last_attempt_at,
        "resmon_placement_sync_last_success_timestamp_seconds": status.last_success_at,
        "resmon_placement_sync_duration_seconds": status.duration_s,
        "resmon_placement_sync_providers": status.providers,
        "resmon_placement_sync_writes": status.writes,
    }
    for name, value in optional.items():
        if value is not None:
            samples[name].append(" " + _float(value))
    failures = samples["resmon_placement_sync_consecutive_failures"]
    failures.append(f" {status.consecutive_failures}")
    out = []
    for name, (kind, help_, _labels) in PLACEMENT_SYNC_METRICS.items():
        out.append(f"# HELP {name} {help_}\n# TYPE {name} {kind}\n")
        out.extend(f"{name}{sample}\n" for sample in samples[name])
    return "".join(out).encode()


# -- the candidate answer cache ------------------------------------------------------------------

#: The answer cache's families (exporters/_answer_cache.py), from this API process's memory.
ANSWER_CACHE_METRICS: dict[str, tuple[str, str]] = {
    "resmon_api_answer_cache_requests_total": (
        "counter", "Candidate queries of this API process, by whether their answer was kept "
        "(hit) or computed (miss)."),
    "resmon_api_answer_cache_entries": ("gauge", "Candidate answers kept."),
    "resmon_api_answer_cache_bytes": ("gauge", "Size of the candidate answers kept."),
}  # fmt: skip


def render_answer_cache(cache: AnswerCache) -> bytes:
    """The answer cache's families (text exposition format 0.0.4)."""
    samples = {
        "resmon_api_answer_cache_requests_total": [
            f'{{result="hit"}} {cache.hits}', f'{{result="miss"}} {cache.misses}'
        ],
        "resmon_api_answer_cache_entries": [f" {len(cache)}"],
        "resmon_api_answer_cache_bytes": [f" {cache.size_bytes}"],
    }  # fmt: skip
    out = []
    for name, (kind, help_) in ANSWER_CACHE_METRICS.items():
        out.append(f"# HELP {name} {help_}\n# TYPE {name} {kind}\n")
        out.extend(f"{name}{sample}\n" for sample in samples[name])
    return "".join(out).encode()


class StoreCollector(Collector):
    """prometheus_client custom collector over ``store``, for use in a registry.

    Each ``collect()`` reads the store afresh through :func:`render_metrics` and yields the
    parsed families, so the registry and ``/metrics`` always say the same thing.
    """

    def __init__(self, store: Store, *, stale_after_s: float | None = None) -> None:
        self.store = store
        self.stale_after_s = stale_after_s

    def collect(self) -> Iterator[Metric]:
        text = render_metrics(self.store, stale_after_s=self.stale_after_s).decode("utf-8")
        yield from text_string_to_metric_families(text)
