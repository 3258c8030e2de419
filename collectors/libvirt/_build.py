"""Turn parsed libvirt data into schema v1 reports. Pure: no libvirt-python, no I/O.

Two stages, so that the live collector pays for the expensive part once per connection:
:func:`normalise_static` turns capabilities + domain capabilities (which do not change while a
connection lives) into a :class:`StaticHost`; :func:`build_reports` combines it with the
per-cycle :class:`LiveFacts` (online CPUs, free memory, guests, pools) into reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

import os_traits
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from resmon.contract import (
    Anomaly,
    CollectorInfo,
    Cpu,
    HostIdentity,
    HostReport,
    HugePages,
    Hypervisor,
    InstanceAllocation,
    InvalidNativeData,
    Inventory,
    Memory,
    NumaCell,
    ObservedUsage,
    ProviderKind,
    RunningInstances,
    SupportedInstance,
    units,
    vocabulary,
)

from ._parse import (
    CapsGuest,
    DomainCaps,
    HostCaps,
    Machine,
    parse_capabilities,
    parse_domain_capabilities,
)

__all__ = [
    "SHARED_POOL_TYPES",
    "LibvirtOptions",
    "LiveFacts",
    "NodeInfo",
    "PoolFacts",
    "StaticHost",
    "build_reports",
    "normalise_saved",
    "normalise_static",
    "pick_hv_type",
    "version_string",
]

#: Pool types whose storage lives outside the host; they become shared-storage providers so
#: that hosts using the same pool do not each count its capacity.
SHARED_POOL_TYPES = frozenset(
    {"rbd", "netfs", "iscsi", "iscsi-direct", "gluster", "sheepdog", "vstorage"}
)

# With several guest domain types and no driver name (offline), the host is the most capable.
_HV_PREFERENCE = ("kvm", "xen", "lxc", "vz", "bhyve", "hyperv", "vmware", "qemu", "test")
_X86 = frozenset({"x86_64", "i686"})


class LibvirtOptions(BaseModel):
    """``[targets.options]`` of a libvirt target. Allocation ratios and reservations are the
    operator's policy, applied by resmon (``[resmon.policy]``), not options of this collector."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Read-only connections cannot ask for domain capabilities (libvirt forbids it).
    read_only: bool = False
    #: Ask getDomainCapabilities for every guest arch x domain type (cached per connection).
    domain_capabilities: bool = True
    #: Seconds between keepalive probes; default: the target timeout / (keepalive_count + 1),
    #: so that a daemon that stops answering is given up within about the target timeout.
    keepalive_interval_s: Annotated[int | None, Field(ge=1, le=600)] = None
    keepalive_count: Annotated[int, Field(ge=1, le=100)] = 3


@dataclass(frozen=True)
class NodeInfo:
    """``virNodeGetInfo``: memory in MiB as libvirt-python returns it; sockets per node."""

    arch: str
    memory_mib: int
    cpus: int
    mhz: int
    nodes: int
    sockets: int
    cores: int
    threads: int


@dataclass(frozen=True)
class PoolFacts:
    name: str
    uuid: str
    pool_type: str
    capacity_bytes: int
    allocation_bytes: int
    available_bytes: int


@dataclass(frozen=True)
class LiveFacts:
    """What one collection cycle read from a live connection."""

    driver_type: str
    hv_version: str
    lib_version: str
    hostname: str | None
    node: NodeInfo
    online_cpus: int | None
    free_memory_bytes: int | None
    cell_free_bytes: dict[int, int] = field(default_factory=dict)
    #: cell id → page size in bytes → free pages.
    free_pages: dict[int, dict[int, int]] = field(default_factory=dict)
    instances: list[InstanceAllocation] = field(default_factory=list)
    pools: list[PoolFacts] = field(default_factory=list)
    #: The node's cumulative CPU time in ns (virNodeGetCPUStats): (busy, busy + idle).
    cpu_time_ns: tuple[int, int] | None = None


def observed_cpu_mhz(
    before: tuple[int, int] | None, after: tuple[int, int] | None, node: NodeInfo
) -> int | None:
    """CPU in use between two samples of the node's CPU time, in MHz: the busy share of the
    interval × the CPUs × their clock. None without two usable samples."""
    if before is None or after is None or not node.mhz or not node.cpus:
        return None
    busy, total = after[0] - before[0], after[1] - before[1]
    if total <= 0 or busy < 0:
        return None  # counters reset (host rebooted) or no time passed
    return round(min(busy / total, 1.0) * node.cpus * node.mhz)


@dataclass(frozen=True)
class StaticHost:
    """The part of a host report that comes from (domain) capabilities."""

    uuid: str | None
    cpu: Cpu
    numa_cells: list[NumaCell]
    traits: list[str]
    supported_instances: list[SupportedInstance]
    guest_domain_types: frozenset[str]
    anomalies: list[Anomaly]

    @property
    def cells_memory_bytes(self) -> int | None:
        memory = [c.memory_bytes for c in self.numa_cells]
        if not memory or any(m is None for m in memory):
            return None
        return sum(m for m in memory if m is not None)

    @property
    def cells_cpus(self) -> int:
        return sum(len(c.cpus) for c in self.numa_cells)


def version_string(packed: int) -> str:
    """libvirt packs versions as major * 1,000,000 + minor * 1,000 + release."""
    major, rest = divmod(int(packed), 1_000_000)
    minor, release = divmod(rest, 1_000)
    return f"{major}.{minor}.{release}"


def _known_traits(names: Iterable[str]) -> set[str]:
    return {name for name in names if vocabulary.is_known_trait(name)}


def _topology(caps: HostCaps, total_cpus: int, cells: int) -> tuple[int | None, ...]:
    """(sockets, cores per socket, threads per core) from the capabilities' CPU topology.

    libvirt's ``sockets`` is per NUMA node on some hosts (the nodeinfo convention); when the
    numbers only add up with that reading, multiply back.
    """
    if not (caps.sockets and caps.cores and caps.threads):
        return None, None, None
    cores = caps.cores * (caps.dies or 1) * (caps.clusters or 1)
    sockets = caps.sockets
    if cells > 1 and sockets * cores * caps.threads * cells == total_cpus:
        sockets *= cells
    return sockets, cores, caps.threads


def _canonical(kind: str, raw: str, where: str, anomalies: list[Anomaly]) -> str:
    canon = {
        "arch": vocabulary.canonical_arch,
        "hv_type": vocabulary.canonical_hv_type,
        "vm_mode": vocabulary.canonical_vm_mode,
    }[kind]
    value, known = canon(raw)
    if not known:
        anomalies.append(
            Anomaly.of(f"libvirt.unknown_{kind}", where, f"unknown {kind} kept as reported", raw)
        )
    return value


@dataclass
class _Instance:
    arch: str
    hv_type: str
    vm_mode: str
    machines: dict[str, None] = field(default_factory=dict)
    max_vcpus: int | None = None
    firmware: dict[str, None] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)


def _add_machines(inst: _Instance, machines: Sequence[Machine]) -> None:
    for machine in machines:
        inst.machines.setdefault(machine.name, None)
        if machine.max_cpus is not None:
            inst.max_vcpus = max(inst.max_vcpus or 0, machine.max_cpus)


def _domcaps_firmware(dc: DomainCaps, arch: str) -> list[str]:
    firmware = list(dc.firmware)
    # The firmware enum lists what libvirt can auto-select from descriptor files; QEMU on x86
    # always boots its built-in SeaBIOS without one, so BIOS is available whenever the OS is.
    if arch in _X86 and dc.os_supported and dc.domain_type in ("kvm", "qemu"):
        if "bios" not in firmware:
            firmware.insert(0, "bios")
    if not firmware and dc.loaders:
        firmware.append("efi")
    return firmware


def _domcaps_traits(dc: DomainCaps, firmware: Sequence[str]) -> set[str]:
    names = {"bios": os_traits.COMPUTE_FIRMWARE_BIOS, "efi": os_traits.COMPUTE_FIRMWARE_UEFI}
    traits = {names[f] for f in firmware if f in names}
    if dc.secure_boot:
        traits.add(os_traits.COMPUTE_SECURITY_UEFI_SECURE_BOOT)
    traits |= _known_traits(f"COMPUTE_STORAGE_BUS_{b.upper()}" for b in dc.disk_buses)
    traits |= _known_traits(f"COMPUTE_GRAPHICS_MODEL_{m.upper()}" for m in dc.video_models)
    return traits


def _guest_instances(
    guests: Sequence[CapsGuest], anomalies: list[Anomaly]
) -> tuple[dict[str, _Instance], dict[tuple[str, str, str], str]]:
    """Supported instances keyed arch/hv/mode, merged where aliases meet (i386 and i686), and
    which key each (arch, domain type, machine) belongs to."""
    found: dict[str, _Instance] = {}
    machine_keys: dict[tuple[str, str, str], str] = {}
    for i, guest in enumerate(guests):
        where = f"guest[{i}]"
        arch = _canonical("arch", guest.arch, f"{where}/arch/@name", anomalies)
        vm_mode = _canonical("vm_mode", guest.os_type, f"{where}/os_type", anomalies)
        for dom in guest.domains:
            hv_type = _canonical(
                "hv_type", dom.domain_type, f"{where}/arch/domain/@type", anomalies
            )
            key = f"{arch}/{hv_type}/{vm_mode}"
            inst = found.setdefault(key, _Instance(arch, hv_type, vm_mode))
            _add_machines(inst, dom.machines)
            if dom.emulator:
                inst.details.setdefault("emulator", dom.emulator)
            if guest.wordsize:
                inst.details.setdefault("wordsize", str(guest.wordsize))
            for machine in dom.machines:
                machine_keys.setdefault((arch, hv_type, machine.name), key)
    return found, machine_keys


def _apply_domcaps(
    found: dict[str, _Instance],
    machine_keys: dict[tuple[str, str, str], str],
    domcaps: Sequence[DomainCaps],
    traits: set[str],
    anomalies: list[Anomaly],
) -> None:
    for i, dc in enumerate(domcaps):
        arch, _ = vocabulary.canonical_arch(dc.arch)
        hv_type, _ = vocabulary.canonical_hv_type(dc.domain_type)
        # A domcaps document is for one machine; Xen's xenpv/xenfv tell PV from HVM that way.
        key = machine_keys.get((arch, hv_type, dc.machine or ""))
        keys = (
            [key]
            if key
            else [k for k, v in found.items() if (v.arch, v.hv_type) == (arch, hv_type)]
        )
        if not keys:
            anomalies.append(
                Anomaly.of(
                    "libvirt.domcaps_unmatched",
                    f"domcapabilities[{i}]",
                    "domain capabilities for an arch/domain type the capabilities do not list",
                    f"{dc.arch}/{dc.domain_type}",
                )
            )
            continue
        firmware = _domcaps_firmware(dc, arch)
        traits |= _domcaps_traits(dc, firmware)
        for k in keys:
            inst = found[k]
            if dc.max_vcpus is not None:
                inst.max_vcpus = dc.max_vcpus
            for fw in firmware:
                inst.firmware.setdefault(fw, None)
            if dc.machine:
                inst.machines.setdefault(dc.machine, None)
                inst.details["default_machine"] = dc.machine


def normalise_static(
    caps: HostCaps, domcaps: Sequence[DomainCaps] = (), *, source: str = "capabilities"
) -> StaticHost:
    """Normalise capabilities (+ domain capabilities) into the unchanging part of a report."""
    anomalies: list[Anomaly] = []
    if caps.arch is None:
        raise InvalidNativeData(f"{source}: host/cpu/arch is missing")
    arch = _canonical("arch", caps.arch, "host/cpu/arch", anomalies)
    traits: set[str] = {os_traits.COMPUTE_NODE}
    arch_trait = vocabulary.arch_trait(arch)
    if arch_trait:
        traits.add(arch_trait)
    feature_traits, _unmapped = vocabulary.cpu_feature_traits(caps.features, arch)
    traits |= set(feature_traits)

    found, machine_keys = _guest_instances(caps.guests, anomalies)
    traits |= _known_traits(f"COMPUTE_ARCH_{inst.arch.upper()}" for inst in found.values())
    _apply_domcaps(found, machine_keys, domcaps, traits, anomalies)

    total_cpus = sum(len(c.cpus) for c in caps.cells)
    sockets, cores, threads = _topology(caps, total_cpus, len(caps.cells))
    try:
        cells = [
            NumaCell(
                cell_id=c.cell_id,
                cpus=c.cpus,
                memory_bytes=c.memory_bytes,
                huge_pages=[
                    HugePages(page_size_bytes=p.size_bytes, total=p.count or 0) for p in c.pages
                ],
            )
            for c in caps.cells
        ]
        cpu = Cpu(
            arch=arch,
            vendor=None if caps.vendor is None else vocabulary.canonical_cpu_vendor(caps.vendor)[0],
            model=caps.model,
            sockets=sockets,
            cores_per_socket=cores,
            threads_per_core=threads,
            total_cpus=total_cpus or None,
            features=caps.features,
            traits=feature_traits,
        )
        instances = [
            SupportedInstance(
                arch=inst.arch,
                hv_type=inst.hv_type,
                vm_mode=inst.vm_mode,
                machine_types=sorted(inst.machines),
                max_vcpus=inst.max_vcpus,
                firmware=list(inst.firmware),
                details=inst.details,
            )
            for inst in found.values()
        ]
    except ValidationError as exc:
        raise InvalidNativeData(f"{source}: {_first_error(exc)}") from exc
    return StaticHost(
        uuid=caps.uuid,
        cpu=cpu,
        numa_cells=cells,
        traits=sorted(traits),
        supported_instances=instances,
        guest_domain_types=frozenset(inst.hv_type for inst in found.values()),
        anomalies=anomalies,
    )


def pick_hv_type(driver_type: str | None, guest_types: Iterable[str]) -> tuple[str, bool]:
    """The host's hv_type from the connection's driver (getType) and the guests' domain types.

    libvirt's QEMU driver answers "QEMU" for both; it is kvm when KVM guests are offered.
    """
    types = set(guest_types)
    if driver_type is not None:
        if driver_type.strip().upper() == "QEMU":
            return ("kvm" if "kvm" in types else "qemu"), True
        return vocabulary.canonical_hv_type(driver_type)
    for candidate in _HV_PREFERENCE:
        if candidate in types:
            return candidate, True
    if types:
        return sorted(types)[0], False
    return "unknown", False


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    return f"{loc}: {err['msg']} (got {str(err.get('input'))[:100]!r})"


def _inventory(rc: str, total: int, *, used: int) -> list[Inventory]:
    """Facts only: libvirt reports nothing the hypervisor holds back, and ratios and operator
    reservations are the core's policy."""
    # Placement refuses an inventory with total 0 (max_unit >= 1): leave the class out.
    if total <= 0:
        return []
    return [Inventory(resource_class=rc, total=total, max_unit=total, used=used)]


def _memory_total(static: StaticHost, live: LiveFacts | None) -> int | None:
    """Host memory in bytes. The NUMA cells give it to the KiB; getInfo only to the MiB, so the
    cells win when both agree on the MiB (they disagree on libvirt's test driver)."""
    cells = static.cells_memory_bytes
    if live is None:
        return cells
    info = units.mib_to_bytes(live.node.memory_mib)
    if cells is not None and units.bytes_to_mib_floor(cells) == live.node.memory_mib:
        return cells
    return info


def _live_cpu(static: StaticHost, live: LiveFacts) -> Cpu:
    node = live.node
    update: dict[str, object] = {
        "total_cpus": node.cpus,
        "online_cpus": live.online_cpus,
        "cpu_mhz": node.mhz or None,
    }
    if static.cpu.sockets is None and node.sockets and node.cores and node.threads:
        # getInfo's sockets are per NUMA node when the product only adds up that way.
        per_node = node.sockets * node.cores * node.threads
        sockets = node.sockets * node.nodes if per_node * node.nodes == node.cpus else node.sockets
        update.update(sockets=sockets, cores_per_socket=node.cores, threads_per_core=node.threads)
    return static.cpu.model_copy(update=update)


def _live_cells(static: StaticHost, live: LiveFacts) -> list[NumaCell]:
    if not (live.cell_free_bytes or live.free_pages):
        return static.numa_cells
    cells = []
    for cell in static.numa_cells:
        free_pages = live.free_pages.get(cell.cell_id, {})
        pages = [
            p.model_copy(update={"free": free_pages.get(p.page_size_bytes)})
            for p in cell.huge_pages
        ]
        cells.append(
            cell.model_copy(
                update={
                    "free_memory_bytes": live.cell_free_bytes.get(cell.cell_id),
                    "huge_pages": pages,
                }
            )
        )
    return cells


def _pool_report(
    pool: PoolFacts,
    host_id: str,
    *,
    target: str,
    collected_at: datetime,
    collector: CollectorInfo,
) -> HostReport:
    return HostReport(
        provider_kind=ProviderKind.SHARED_STORAGE,
        identity=HostIdentity(host_id=f"pool-{pool.uuid}", target=target, hostname=pool.name),
        inventories=_inventory(
            "DISK_GB",
            units.bytes_to_gib_floor(pool.capacity_bytes),
            used=units.bytes_to_gib_floor(pool.allocation_bytes),
        ),
        traits=[os_traits.MISC_SHARES_VIA_AGGREGATE],
        shared_with=[host_id],
        collected_at=collected_at,
        collector=collector,
    )


def build_reports(
    static: StaticHost,
    live: LiveFacts | None,
    *,
    target: str,
    collected_at: datetime,
    collector: CollectorInfo,
    cpu_used_mhz: int | None = None,
) -> list[HostReport]:
    """The compute host's report, then one report per shared storage pool it uses.

    ``cpu_used_mhz``: observed CPU use, when the collector has two samples to tell it."""
    try:
        return _build_reports(
            static, live, target=target, collected_at=collected_at, collector=collector,
            cpu_used_mhz=cpu_used_mhz,
        )  # fmt: skip
    except ValidationError as exc:
        raise InvalidNativeData(
            f"libvirt data does not fit schema v1: {_first_error(exc)}"
        ) from exc


def _build_reports(
    static: StaticHost,
    live: LiveFacts | None,
    *,
    target: str,
    collected_at: datetime,
    collector: CollectorInfo,
    cpu_used_mhz: int | None,
) -> list[HostReport]:
    anomalies = list(static.anomalies)
    hostname = live.hostname if live is not None else None
    host_id = static.uuid or hostname or target
    if static.uuid is None:
        anomalies.append(
            Anomaly.of(
                "libvirt.no_host_uuid",
                "identity.host_id",
                "capabilities carry no host UUID; the host id falls back to the hostname or "
                "the target name",
                host_id,
            )
        )
    # An hv_type outside the vocabulary is kept raw; the core's vocabulary check records it.
    hv_type, _known = pick_hv_type(
        live.driver_type if live is not None else None, static.guest_domain_types
    )
    if live is not None:
        hypervisor = Hypervisor(
            hv_type=hv_type,
            product=f"{live.driver_type} (libvirt {live.lib_version})",
            version=live.hv_version,
        )
        cpu = _live_cpu(static, live)
        cells = _live_cells(static, live)
        running = RunningInstances.from_instances(live.instances)
    else:
        hypervisor = Hypervisor(hv_type=hv_type, product="libvirt (saved capabilities)")
        cpu, cells, running = static.cpu, static.numa_cells, RunningInstances()

    total_bytes = _memory_total(static, live)
    memory = None
    used = None
    if total_bytes is not None:
        free = live.free_memory_bytes if live is not None else None
        used = max(total_bytes - free, 0) if free is not None else None
        memory = Memory(total_bytes=total_bytes, free_bytes=free, used_bytes=used)
    observed = None
    if cpu_used_mhz is not None or used is not None:
        observed = ObservedUsage(cpu_used_mhz=cpu_used_mhz, memory_used_bytes=used)

    vcpus = cpu.online_cpus if cpu.online_cpus is not None else cpu.total_cpus
    inventories = _inventory(
        "VCPU",
        vcpus or 0,
        used=running.vcpus,
    )
    if total_bytes is not None:
        inventories += _inventory(
            "MEMORY_MB",
            units.bytes_to_mib_floor(total_bytes),
            used=units.bytes_to_mib_floor(running.memory_bytes),
        )
    pools = live.pools if live is not None else []
    local = [p for p in pools if p.pool_type not in SHARED_POOL_TYPES]
    if local:
        inventories += _inventory(
            "DISK_GB",
            units.bytes_to_gib_floor(sum(p.capacity_bytes for p in local)),
            used=units.bytes_to_gib_floor(sum(p.allocation_bytes for p in local)),
        )
    host = HostReport(
        identity=HostIdentity(host_id=host_id, target=target, hostname=hostname),
        hypervisor=hypervisor,
        cpu=cpu,
        memory=memory,
        numa_cells=cells,
        inventories=inventories,
        traits=static.traits,
        supported_instances=static.supported_instances,
        running_instances=running,
        observed=observed,
        collected_at=collected_at,
        collector=collector,
        anomalies=anomalies,
    )
    shared = [
        _pool_report(
            p,
            host_id,
            target=target,
            collected_at=collected_at,
            collector=collector,
        )  # fmt: skip
        for p in pools
        if p.pool_type in SHARED_POOL_TYPES
    ]
    return [host, *shared]


def normalise_saved(
    capabilities: tuple[str, str | bytes],
    domcapabilities: Sequence[tuple[str, str | bytes]] = (),
    *,
    target: str,
    collector: CollectorInfo,
    collected_at: datetime,
) -> list[HostReport]:
    """Reports from saved XML: ``(source name, text)`` of capabilities and domain capabilities.

    What ``resmon normalise libvirt`` runs; needs no libvirt library and no daemon.
    """
    caps_source, caps_text = capabilities
    caps = parse_capabilities(caps_text, caps_source)
    domcaps = [parse_domain_capabilities(text, source) for source, text in domcapabilities]
    static = normalise_static(caps, domcaps, source=caps_source)
    return build_reports(
        static,
        None,
        target=target,
        collected_at=collected_at,
        collector=collector,
    )
