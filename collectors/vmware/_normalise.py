"""Pure normalisation: an :class:`Inventory` read from vSphere → schema v1 reports.

No network here: the collector, the offline normaliser and the tests all call
:func:`normalise` on plain property dicts.

Choices a reader of the reports should know:

- Every HostSystem is a ``compute_host``; its id is the hardware UUID (``summary.hardware.uuid``),
  or its managed-object id when the UUID is missing or shared with another host (then an
  anomaly says so).
- Facts only: allocation ratios and operator reservations are the core's policy. A host that is
  not up (disconnected, notResponding, maintenance, standby) keeps its inventory totals (the core
  then sets ``reserved = total``: "exists, not schedulable") and the ``COMPUTE_STATUS_DISABLED``
  trait. ``used`` and ``running_instances`` always agree: a host in maintenance or standby is
  still managed, so its powered-on VMs count in both; vCenter's view of a disconnected or
  notResponding host's VMs is stale, so both are empty.
- A host in quarantine (``runtime.inQuarantineMode``: Proactive HA saw degraded hardware) stays
  up, with an anomaly; a cluster whose hosts are all down takes their state and an anomaly
  naming them.
- A ClusterComputeResource is a ``cluster`` provider: totals, hypervisor-held reservations and
  used are the sums over its hosts, and HA admission control's failover capacity and the
  reservations of its resource pools (:func:`pool_reservations`) are held too; ``max_unit`` is
  the largest single up host (a VM lands on one host). A standalone host holds its own pools'.
  Both are checked against vSphere's ``effectiveCpu``/``effectiveMemory``
  (:data:`EFFECTIVE_TOLERANCE`).
- Every Datastore is a ``shared_storage`` provider with ``DISK_GB`` (a local datastore too, shared
  with one host); hosts carry no DISK_GB, so disk is never counted twice. A host whose mount is
  unmounted or inaccessible (all paths down) is not among its sharers; a datastore in
  maintenance keeps its real ``used``.
- Allocated use (inventory ``used``, ``running_instances``) counts powered-on VMs that are not
  templates; observed use (``observed``: CPU MHz and memory, and ``memory.used_bytes``) comes
  from ``summary.quickStats``.
- NUMA cells come from ``hardware.numaInfo``, with each node's logical CPUs and memory.
- Supported instances: the host's architecture (from ``config.product.osType``) × vmware × hvm,
  with the VM hardware versions the EnvironmentBrowser says the host can run as details.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import os_traits

from resmon.contract import (
    Anomaly,
    CollectorInfo,
    Cpu,
    Health,
    HostIdentity,
    HostReport,
    HostState,
    Hypervisor,
    InstanceAllocation,
    InstanceStates,
    InvalidNativeData,
    Inventory,
    Location,
    Memory,
    NumaCell,
    ObservedUsage,
    ProviderKind,
    RunningInstances,
    SharedStorageUsage,
    SupportedInstance,
    units,
    vocabulary,
)

from ._native import Inventory as NativeInventory
from ._native import NativeObject

__all__ = ["host_state", "normalise"]

#: config.product.osType → architecture. ESXi has been 64-bit only since 4.0.
_OS_TYPE_ARCH = {"vmnix-x86": "x86_64", "vmnix-arm64": "aarch64", "vmnix-aarch64": "aarch64"}
_HOST_CONNECTION_STATES = {
    "disconnected": HostState.DISCONNECTED,
    "notResponding": HostState.NOT_RESPONDING,
}
_DATASTORE_MAINTENANCE = {"inMaintenance", "enteringMaintenance"}
#: ManagedEntity.overallStatus → Health.
_HEALTH = {
    "green": Health.OK, "yellow": Health.WARNING, "red": Health.CRITICAL, "gray": Health.UNKNOWN,
}  # fmt: skip
#: Host states in which vCenter still manages the host, so its view of the host's VMs is current.
_MANAGED_STATES = {HostState.UP, HostState.MAINTENANCE, HostState.STANDBY}
_CLUSTER_TYPES = ("ClusterComputeResource",)
#: VirtualMachinePowerState → the schema's instance state counter.
_POWER_STATES = {"poweredOn": "running", "poweredOff": "stopped", "suspended": "suspended"}
_COMPUTE_TYPES = ("ComputeResource", "ClusterComputeResource")


class _Props:
    """Typed access to one object's properties; wrong types raise InvalidNativeData."""

    def __init__(self, obj: NativeObject) -> None:
        self.obj = obj

    def _bad(self, path: str, value: object, expected: str) -> InvalidNativeData:
        return InvalidNativeData(
            f"{self.obj.type} {self.obj.moref}: {path} = {value!r:.80} is not {expected}"
        )

    def integer(self, path: str, *, limit: int = units.MAX_COUNT) -> int | None:
        value = self.obj.props.get(path)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
            raise self._bad(path, value, f"an integer in [0, {limit}]")
        return value

    def text(self, path: str) -> str | None:
        value = self.obj.props.get(path)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._bad(path, value, "a string")
        return value

    def flag(self, path: str) -> bool | None:
        value = self.obj.props.get(path)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise self._bad(path, value, "a boolean")
        return value

    def items(self, path: str) -> list[Any]:
        value = self.obj.props.get(path)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._bad(path, value, "a list")
        return value

    def dicts(self, path: str) -> list[Mapping[str, Any]]:
        items = self.items(path)
        for item in items:
            if not isinstance(item, Mapping):
                raise self._bad(path, item, "a list of objects")
        return items


def _datacenter_names(inventory: NativeInventory) -> dict[str, str]:
    """Datacenter name per managed object below it, following ``parent`` links."""
    parents = {
        o.moref: parent
        for o in inventory.objects
        if isinstance(parent := o.props.get("parent"), str)
    }
    names = {
        dc.moref: _Props(dc).text("name") or dc.moref for dc in inventory.of_type("Datacenter")
    }
    found: dict[str, str] = {}
    for moref in parents:
        node: str | None = moref
        for _ in range(64):  # folders nest, but never this deep
            if node is None or node in names:
                break
            node = parents.get(node)
        if node is not None and node in names:
            found[moref] = names[node]
    return found


def _location(datacenter: str | None, cluster: str | None) -> Location | None:
    if datacenter is None and cluster is None:
        return None
    return Location(datacenter=datacenter, cluster=cluster)


def _instance_states(inventory: NativeInventory) -> dict[str, InstanceStates]:
    """VMs that are not templates, per host moref and power state."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for vm in inventory.of_type("VirtualMachine"):
        props = _Props(vm)
        host = props.text("runtime.host")
        if host is None or props.flag("summary.config.template"):
            continue
        counts[host][_POWER_STATES.get(props.text("runtime.powerState") or "", "other")] += 1
    return {host: InstanceStates(**counter) for host, counter in counts.items()}


def host_state(props: _Props) -> HostState:
    """Runtime state: connection first, then standby, then maintenance."""
    connection = props.text("runtime.connectionState")
    if connection in _HOST_CONNECTION_STATES:
        return _HOST_CONNECTION_STATES[connection]
    if connection not in (None, "connected"):
        return HostState.UNKNOWN
    power = props.text("runtime.powerState")
    if power == "standBy":
        return HostState.STANDBY
    if props.flag("runtime.inMaintenanceMode"):
        return HostState.MAINTENANCE
    if connection is None or power not in (None, "poweredOn"):
        return HostState.UNKNOWN
    return HostState.UP


def _cpuid_features(props: _Props, path: str) -> list[str]:
    return [
        str(f.get("key", "")).removeprefix("cpuid.")
        for f in props.dicts(path)
        if str(f.get("key", "")).startswith("cpuid.") and f.get("value") == "1"
    ]


def _reservation(node: Mapping[str, Any], allocation: str, where: str) -> int:
    config = node.get("config") or {}
    value = (
        (config.get(allocation) or {}).get("reservation", 0) if isinstance(config, Mapping) else 0
    )
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidNativeData(
            f"{where}: {allocation}.reservation = {value!r:.40} is not an integer"
        )
    return value


def system_reservations(props: _Props) -> tuple[int, int]:
    """(MHz, MB) the ESXi host reserves for itself: its system resource pools.

    ``config.systemResources`` is the tree of the host's own resource pools under ``host``:
    ``host/system`` (the VMkernel), ``host/vim`` (hostd, vpxa), ``host/iofilters``, ``host/opt``
    … and ``host/user``, where the VMs run. What the first level reserves, ``host/user`` left
    out, is held by the hypervisor.
    """
    root = props.obj.props.get("config.systemResources")
    if root is None:
        return 0, 0
    where = f"{props.obj.type} {props.obj.moref}: config.systemResources"
    if not isinstance(root, Mapping) or not isinstance(root.get("child", []), list):
        raise InvalidNativeData(f"{where} is not a resource tree")
    mhz = mb = 0
    for child in root.get("child", []):
        if not isinstance(child, Mapping):
            raise InvalidNativeData(f"{where}: a child is not an object")
        if child.get("key") == "host/user":
            continue
        mhz += _reservation(child, "cpuAllocation", where)
        mb += _reservation(child, "memoryAllocation", where)
    return mhz, mb


def numa_cells(props: _Props) -> list[NumaCell]:
    """``hardware.numaInfo`` (HostNumaInfo): one cell per ``numaNode``, its ``typeId`` the cell
    id, its ``cpuID`` the logical CPUs, its memory ``memorySize`` (API 8.0 and later; the
    collector speaks 6.5, a capture may be newer) or else ``memoryRangeLength`` (the node's one
    memory range). ESXi does not report free memory per node."""
    info = props.obj.props.get("hardware.numaInfo")
    if info is None:
        return []
    where = f"{props.obj.type} {props.obj.moref}: hardware.numaInfo"
    if not isinstance(info, Mapping) or not isinstance(info.get("numaNode", []), list):
        raise InvalidNativeData(f"{where} is not a HostNumaInfo")
    cells = []
    for i, node in enumerate(info.get("numaNode", [])):
        if not isinstance(node, Mapping):
            raise InvalidNativeData(f"{where}.numaNode[{i}] is not an object")
        memory = node.get("memorySize", node.get("memoryRangeLength"))
        cpus = node.get("cpuID", [])
        node_id = node.get("typeId")
        if (
            not _is_count(node_id)
            or not isinstance(cpus, list)
            or not all(_is_count(c) for c in cpus)
            or (memory is not None and not _is_count(memory, units.MAX_BYTES))
        ):
            raise InvalidNativeData(
                f"{where}.numaNode[{i}]: typeId, cpuID[] and memory sizes must be "
                f"non-negative integers ({dict(node)!r:.200})"
            )
        cells.append(NumaCell(cell_id=node_id, cpus=sorted(cpus), memory_bytes=memory))
    ids = [c.cell_id for c in cells]
    if len(ids) != len(set(ids)):
        raise InvalidNativeData(f"{where}: node ids repeat: {ids}")
    return sorted(cells, key=lambda c: c.cell_id)


def _is_count(value: object, limit: int = units.MAX_COUNT) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= limit


def _timestamp(props: _Props, path: str) -> datetime | None:
    text = props.text(path)
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidNativeData(
            f"{props.obj.type} {props.obj.moref}: {path} = {text!r:.40}"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass
class _Allocations:
    instances: list[InstanceAllocation]

    @property
    def vcpus(self) -> int:
        return sum(i.vcpus for i in self.instances)

    @property
    def memory_mib(self) -> int:
        return units.bytes_to_mib_floor(sum(i.memory_bytes for i in self.instances))


def _allocations(inventory: NativeInventory) -> dict[str, _Allocations]:
    """Powered-on, non-template VMs per host id (managed-object id)."""
    per_host: dict[str, _Allocations] = defaultdict(lambda: _Allocations([]))
    for vm in inventory.of_type("VirtualMachine"):
        props = _Props(vm)
        host = props.text("runtime.host")
        if host is None or props.flag("summary.config.template"):
            continue
        if props.text("runtime.powerState") != "poweredOn":
            continue
        per_host[host].instances.append(
            InstanceAllocation(
                instance_id=props.text("summary.config.instanceUuid") or vm.moref,
                name=props.text("name"),
                vcpus=props.integer("summary.config.numCpu") or 0,
                memory_bytes=units.mib_to_bytes(
                    props.integer("summary.config.memorySizeMB", limit=units.MAX_BYTES // units.MIB)
                    or 0
                ),
                state="running",
            )
        )
    return per_host


def _host_ids(hosts: list[NativeObject]) -> tuple[dict[str, str], set[str]]:
    """Report id per host moref: the hardware UUID unless missing or repeated."""
    uuids = {h.moref: _Props(h).text("summary.hardware.uuid") for h in hosts}
    counts = Counter(u for u in uuids.values() if u)
    repeated = {u for u, n in counts.items() if n > 1}
    ids = {
        moref: (uuid if uuid and uuid not in repeated else moref) for moref, uuid in uuids.items()
    }
    return ids, repeated


def _hardware_versions(
    inventory: NativeInventory, compute_of_host: Mapping[str, str]
) -> dict[str, dict[str, str]]:
    """SupportedInstance details per host moref, from the EnvironmentBrowser descriptors."""
    details: dict[str, dict[str, str]] = {}
    members: dict[str, list[str]] = defaultdict(list)
    for host, compute in compute_of_host.items():
        members[compute].append(host)
    for compute, descriptors in inventory.descriptors.items():
        run: dict[str, list[str]] = defaultdict(list)
        create: dict[str, list[str]] = defaultdict(list)
        default: dict[str, str] = {}
        for d in descriptors:
            key = d.get("key")
            if not isinstance(key, str) or not key:
                raise InvalidNativeData(f"config option descriptor of {compute} has no key: {d!r}")
            hosts = d.get("host") or members.get(compute, [])
            if not isinstance(hosts, list):
                raise InvalidNativeData(f"descriptor {key} of {compute}: host is not a list")
            for host in hosts:
                if d.get("runSupported", True):
                    run[host].append(key)
                if d.get("createSupported", True):
                    create[host].append(key)
                if d.get("defaultConfigOption"):
                    default[host] = key
        for host in members.get(compute, []):
            info = {
                "vm_hardware_versions": ",".join(sorted(run[host], key=_vmx_order)),
                "vm_hardware_versions_create": ",".join(sorted(create[host], key=_vmx_order)),
            }
            if host in default:
                info["default_vm_hardware_version"] = default[host]
            details[host] = {k: v for k, v in info.items() if v}
    return details


def _vmx_order(key: str) -> tuple[int, str]:
    number = key.removeprefix("vmx-")
    return (int(number), key) if number.isdigit() else (10**6, key)


@dataclass
class _HostResult:
    report: HostReport
    up: bool
    #: MHz of one core, the cores' MHz together, and what the system resource pools reserve.
    cpu_mhz: int = 0
    capacity_mhz: int = 0
    held_mhz: int = 0
    memory_mib: int = 0
    held_mb: int = 0


def _host_report(
    host: NativeObject,
    host_id: str,
    *,
    target: str,
    parent_id: str | None,
    allocations: _Allocations,
    instance_details: dict[str, str],
    location: Location | None,
    instance_states: InstanceStates | None,
    collected_at: datetime,
    collector: CollectorInfo,
    anomalies: list[Anomaly],
) -> _HostResult:
    props = _Props(host)
    state = host_state(props)
    up = state is HostState.UP
    if state not in _MANAGED_STATES:
        allocations = _Allocations([])  # vCenter's view of this host's VMs is stale
    if props.flag("runtime.inQuarantineMode"):
        anomalies.append(
            Anomaly.of(
                "vmware.host_quarantine",
                "state",
                "host in quarantine mode: Proactive HA reports degraded hardware; DRS moves "
                "VMs off it and places new ones elsewhere when it can",
                props.text("name"),
            )
        )
    if state is HostState.UNKNOWN:
        anomalies.append(
            Anomaly.of(
                "vmware.host_state_unknown",
                "state",
                "connection/power state not understood",
                f"{props.text('runtime.connectionState')}/{props.text('runtime.powerState')}",
            )
        )

    os_type = props.text("config.product.osType")
    # An osType without a known architecture is kept raw, never guessed: the core's vocabulary
    # check records it as an unknown architecture.
    arch = _OS_TYPE_ARCH.get(os_type or "") or os_type or "unknown"

    packages = props.integer("summary.hardware.numCpuPkgs")
    cores = props.integer("summary.hardware.numCpuCores")
    threads = props.integer("summary.hardware.numCpuThreads")
    features = _cpuid_features(props, "config.featureCapability")
    # What VMs see: the features left after the cluster's EVC mask (the same list without EVC).
    masked = _cpuid_features(props, "config.maskedFeatureCapability")
    if not props.items("config.maskedFeatureCapability"):
        masked = list(features)
    vendor = None
    for f in props.dicts("config.featureCapability"):
        # The vendor is a capability of its own: cpuid.intel, cpuid.amd, cpuid.hygon = 1.
        key = str(f.get("key", ""))
        if f.get("value") == "1" and key.startswith("cpuid."):
            name, known = vocabulary.canonical_cpu_vendor(key.removeprefix("cpuid."))
            vendor = name if known else vendor
    if threads and cores and threads > cores:
        features.append("ht")
        masked.append("ht")
    # ESXi lists no cpuid key for what every x86-64 CPU has (MMX, SSE and SSE2 are in the AMD64
    # baseline); the other drivers report them, so the same host gets the same traits.
    baseline = ["mmx", "sse", "sse2"] if arch == "x86_64" else []
    cpu_traits, _unmapped = vocabulary.cpu_feature_traits([*masked, *baseline], arch)
    cpu = Cpu(
        arch=arch,
        vendor=vendor,
        model=props.text("summary.hardware.cpuModel"),
        sockets=packages,
        cores_per_socket=cores // packages if cores and packages else None,
        threads_per_core=threads // cores if threads and cores else None,
        total_cpus=threads,
        # A host in maintenance mode is connected and powered on: its CPUs are online.
        online_cpus=threads if state in (HostState.UP, HostState.MAINTENANCE) else None,
        cpu_mhz=props.integer("summary.hardware.cpuMhz"),
        features=sorted(set(features)),
        traits=cpu_traits,
    )

    memory_bytes = props.integer("summary.hardware.memorySize", limit=units.MAX_BYTES)
    memory = None
    used = None
    if memory_bytes is not None:
        used_mib = props.integer("summary.quickStats.overallMemoryUsage") if up else None
        used = units.mib_to_bytes(used_mib) if used_mib is not None else None
        memory = Memory(
            total_bytes=memory_bytes,
            used_bytes=used,
            free_bytes=max(memory_bytes - used, 0) if used is not None else None,
        )
    cpu_used_mhz = props.integer("summary.quickStats.overallCpuUsage") if up else None
    observed = None
    if cpu_used_mhz is not None or used is not None:
        observed = ObservedUsage(cpu_used_mhz=cpu_used_mhz, memory_used_bytes=used)

    held_mhz, held_mb = system_reservations(props)
    cpu_mhz = props.integer("summary.hardware.cpuMhz")
    inventories = []
    if threads:
        # ESXi reserves CPU in MHz; in logical CPUs that is MHz / (MHz of one), rounded up.
        held_cpus = -(-held_mhz // cpu_mhz) if cpu_mhz else 0
        inventories.append(
            Inventory(
                resource_class="VCPU",
                total=threads,
                hypervisor_reserved=min(held_cpus, threads),
                max_unit=threads,
                used=allocations.vcpus,
            )
        )
    if memory_bytes:
        memory_mib = units.bytes_to_mib_floor(memory_bytes)
        inventories.append(
            Inventory(
                resource_class="MEMORY_MB",
                total=memory_mib,
                hypervisor_reserved=min(held_mb, memory_mib),
                max_unit=max(memory_mib, 1),
                used=allocations.memory_mib,
            )
        )

    traits = list(cpu_traits)
    arch_trait = vocabulary.arch_trait(arch)
    if arch_trait:
        traits.append(arch_trait)
    if not up:
        traits.append(os_traits.COMPUTE_STATUS_DISABLED)

    version = props.text("config.product.version") or ""
    build = props.text("config.product.build")
    hypervisor = Hypervisor(
        hv_type="vmware",
        product=props.text("config.product.name") or "",
        version=f"{version} build-{build}" if version and build else version,
    )
    report = HostReport(
        provider_kind=ProviderKind.COMPUTE_HOST,
        identity=HostIdentity(host_id=host_id, target=target, hostname=props.text("name")),
        parent_id=parent_id,
        state=state,
        hypervisor=hypervisor,
        cpu=cpu,
        memory=memory,
        numa_cells=numa_cells(props),
        inventories=inventories,
        traits=traits,
        supported_instances=[
            SupportedInstance(arch=arch, hv_type="vmware", vm_mode="hvm", details=instance_details)
        ],
        running_instances=RunningInstances.from_instances(allocations.instances),
        observed=observed,
        health=_HEALTH.get(props.text("overallStatus") or "gray", Health.UNKNOWN),
        boot_time=_timestamp(props, "runtime.bootTime"),
        location=location,
        instance_states=instance_states,
        collected_at=collected_at,
        collector=collector,
        anomalies=anomalies,
    )
    return _HostResult(
        report,
        up,
        cpu_mhz=cpu_mhz or 0,
        capacity_mhz=(cores or 0) * (cpu_mhz or 0),
        held_mhz=held_mhz,
        memory_mib=units.bytes_to_mib_floor(memory_bytes or 0),
        held_mb=held_mb,
    )


def _sum_inventory(resource_class: str, members: list[_HostResult]) -> Inventory | None:
    found = [(m, m.report.inventory(resource_class)) for m in members]
    invs = [(m, inv) for m, inv in found if inv is not None]
    if not invs:
        return None
    largest_up = max((inv.total for m, inv in invs if m.up), default=1)
    return Inventory(
        resource_class=resource_class,
        total=sum(inv.total for _, inv in invs),
        hypervisor_reserved=sum(inv.hypervisor_reserved for _, inv in invs),
        max_unit=max(largest_up, 1),
        used=sum(inv.used for _, inv in invs),
    )


def _cluster_state(members: list[_HostResult]) -> HostState:
    if not members or any(m.up for m in members):
        return HostState.UP
    states = {m.report.state for m in members}
    return states.pop() if len(states) == 1 else HostState.UNKNOWN


def _cluster_cpu_traits(
    cluster: _Props, members: list[_HostResult]
) -> tuple[list[str], list[Anomaly]]:
    """CPU traits a VM gets on whichever host of the cluster it lands: those every member
    offers (under EVC, each host's features are already masked to the cluster's EVC mode), plus
    ``CUSTOM_VMWARE_EVC_<MODE>``. Members of different CPU vendors without EVC cannot pass VMs
    to one another with vMotion: an anomaly says so."""
    cpus = [m.report.cpu for m in members if m.report.cpu is not None]
    anomalies: list[Anomaly] = []
    evc = cluster.text("summary.currentEVCModeKey")
    traits: list[str] = []
    if cpus:
        common = set.intersection(*(set(c.traits) for c in cpus))
        arches = {c.arch for c in cpus}
        arch_trait = vocabulary.arch_trait(arches.pop()) if len(arches) == 1 else None
        traits = sorted(common | ({arch_trait} if arch_trait else set()))
    if evc:
        traits.append(
            "CUSTOM_VMWARE_EVC_" + "".join(c if c.isalnum() else "_" for c in evc.upper())
        )
    vendors = {c.vendor for c in cpus if c.vendor}
    if len(vendors) > 1 and not evc:
        anomalies.append(
            Anomaly.of(
                "vmware.cluster_mixed_cpu_vendors",
                "traits",
                "hosts of different CPU vendors and no EVC mode: vMotion between them fails",
                ",".join(sorted(vendors)),
            )
        )
    return traits, anomalies


#: How far what resmon offers for VMs may differ from vSphere's own figure (either way, as a
#: share of resmon's figure) before an anomaly says so. ESXi keeps some memory and CPU for the
#: VMkernel outside its system resource pools, so vSphere's figure is usually a few percent
#: lower; a tenth apart means a reservation one side reads and the other does not.
EFFECTIVE_TOLERANCE = 0.10


def _effective_checks(compute: _Props, members: list[_HostResult]) -> list[Anomaly]:
    """Cross-check with ``summary.effectiveCpu`` (MHz) and ``effectiveMemory`` (MB) of the
    compute resource, which vSphere documents as the resources of its running hosts left to run
    virtual machines: what the root resource pool holds (pools and HA inside it are not yet
    subtracted). resmon's side: the up hosts' CPU capacity (cores × MHz, hyperthreads add
    none) and memory, less their system resource pools."""
    up = [m for m in members if m.up]
    if not up:
        return []  # vSphere counts no host either; the state already says why
    checks = (
        ("cpu", "effectiveCpu", "VCPU", "MHz", sum(m.capacity_mhz - m.held_mhz for m in up)),
        ("memory", "effectiveMemory", "MEMORY_MB", "MB", sum(m.memory_mib - m.held_mb for m in up)),
    )
    anomalies = []
    for kind, prop, resource_class, unit, offered in checks:
        effective = compute.integer(f"summary.{prop}", limit=units.MAX_BYTES // units.MIB)
        if effective is None or abs(offered - effective) <= EFFECTIVE_TOLERANCE * offered:
            continue
        why = (
            "more is held back than resmon reads"
            if offered > effective
            else "resmon holds back more than vSphere does"
        )
        anomalies.append(
            Anomaly.of(
                f"vmware.effective_{kind}",
                f"inventories[{resource_class}]",
                f"up hosts offer {offered} {unit} for VMs after their system reservations, "
                f"vSphere's {prop} is {effective} {unit}: {why}",
                effective,
            )
        )
    return anomalies


@dataclass
class _PoolHold:
    """What the resource pools of one compute resource hold for their own VMs."""

    cpu_mhz: int = 0
    memory_mb: int = 0
    vcpus_inside: int = 0
    memory_mib_inside: int = 0


def pool_reservations(inventory: NativeInventory, computes: set[str]) -> dict[str, list[_PoolHold]]:
    """Per compute resource, what each pool just below its root resource pool holds back.

    A pool's ``config.*Allocation.reservation`` (MHz, MB) is "guaranteed available to a
    resource pool": vSphere admission control keeps it for the pool whether or not its VMs use
    it, so VMs outside the pool cannot be started against it. A pool with an
    ``expandableReservation`` may reserve more than its own figure by borrowing from its parent
    for its children, so a subtree holds the larger of its own reservation and its children's
    together (for a fixed reservation, admission control keeps the children's within the
    pool's own, so that is the pool's figure: the flag itself need not be read). The root
    resource pool (its parent is the compute resource) is the whole compute resource and is not
    a reservation. The powered-on VMs inside a pool are counted in the hosts' ``used`` already:
    the pool holds back only what its reservation has beyond them.
    """
    pools = {p.moref: p for p in inventory.of_type("ResourcePool", "VirtualApp")}
    parent = {m: _Props(p).text("parent") for m, p in pools.items()}
    children: dict[str, list[str]] = defaultdict(list)
    for moref, up in parent.items():
        if up is not None:
            children[up].append(moref)
    roots = {m for m, up in parent.items() if up in computes}

    def held(moref: str, allocation: str, seen: frozenset[str]) -> int:
        if moref in seen:
            raise InvalidNativeData(f"resource pool {moref} is its own ancestor")
        path = f"config.{allocation}.reservation"
        own = _Props(pools[moref]).integer(path, limit=units.MAX_BYTES) or 0
        below = sum(held(c, allocation, seen | {moref}) for c in children.get(moref, []))
        return max(own, below)

    top: dict[str, tuple[str, _PoolHold]] = {}  # pool moref → (compute, its hold)
    for root in roots:
        compute = parent[root]
        assert compute is not None
        for pool in children.get(root, []):
            top[pool] = (
                compute,
                _PoolHold(
                    cpu_mhz=held(pool, "cpuAllocation", frozenset()),
                    memory_mb=held(pool, "memoryAllocation", frozenset()),
                ),
            )
    for vm in inventory.of_type("VirtualMachine"):
        props = _Props(vm)
        if props.text("runtime.powerState") != "poweredOn" or props.flag("summary.config.template"):
            continue
        node = props.text("resourcePool")
        for _ in range(len(pools) + 1):  # up to the pool below the root, if any
            if node is None or node in top or node not in pools:
                break
            node = parent[node]
        if node in top:
            hold = top[node][1]
            hold.vcpus_inside += props.integer("summary.config.numCpu") or 0
            hold.memory_mib_inside += (
                props.integer("summary.config.memorySizeMB", limit=units.MAX_BYTES // units.MIB)
                or 0
            )
    found: dict[str, list[_PoolHold]] = defaultdict(list)
    for compute, hold in top.values():
        found[compute].append(hold)
    return found


def _pools_held(holds: list[_PoolHold], resource_class: str, members: list[_HostResult]) -> int:
    """What the pools hold beyond their VMs' allocations, in ``resource_class`` units: MiB, or
    logical CPUs of the slowest up host's MHz (rounded up, as for the system pools), each vCPU
    of a VM inside taking one of them."""
    if resource_class == "MEMORY_MB":
        return sum(max(h.memory_mb - h.memory_mib_inside, 0) for h in holds)
    mhz = min((m.cpu_mhz for m in members if m.up and m.cpu_mhz), default=0)
    if not mhz:
        return 0
    return sum(max(-(-h.cpu_mhz // mhz) - h.vcpus_inside, 0) for h in holds)


def _failover_reserve(
    cluster: _Props, resource_class: str, total: int, by_moref: Mapping[str, _HostResult]
) -> int:
    """What vSphere HA admission control keeps free for failover, in ``resource_class`` units.

    ``configuration.dasConfig``: the percentage policy reserves its percentages of the cluster;
    dedicated failover hosts reserve themselves whole; "host failures to tolerate" (N) reserves
    the N largest up hosts (what its slot policy approaches, and what the percentage it
    computes from N gives for equal hosts).
    """
    das = cluster.obj.props.get("configuration.dasConfig")
    if (
        not isinstance(das, Mapping)
        or not das.get("enabled")
        or not das.get("admissionControlEnabled")
    ):
        return 0
    policy = das.get("admissionControlPolicy")
    if not isinstance(policy, Mapping):
        return 0
    key = {"VCPU": "cpuFailoverResourcesPercent", "MEMORY_MB": "memoryFailoverResourcesPercent"}
    percent = policy.get(key[resource_class])
    if isinstance(percent, int) and not isinstance(percent, bool) and "failoverHosts" not in policy:
        return min(-(-total * max(percent, 0) // 100), total)

    def size(result: _HostResult) -> int:
        inv = result.report.inventory(resource_class)
        return 0 if inv is None else inv.total

    hosts = policy.get("failoverHosts")
    if isinstance(hosts, list):
        return min(sum(size(by_moref[h]) for h in map(str, hosts) if h in by_moref), total)
    level = policy.get("failoverLevel", das.get("failoverLevel"))
    if isinstance(level, int) and not isinstance(level, bool) and level > 0:
        largest = sorted((size(r) for r in by_moref.values() if r.up), reverse=True)
        return min(sum(largest[:level]), total)
    return 0


def _cluster_report(
    cluster: NativeObject,
    by_moref: Mapping[str, _HostResult],
    *,
    target: str,
    datacenter: str | None,
    pools: list[_PoolHold],
    collected_at: datetime,
    collector: CollectorInfo,
) -> HostReport:
    members = list(by_moref.values())
    inventories = [
        inv
        for inv in (
            _sum_inventory("VCPU", members),
            _sum_inventory("MEMORY_MB", members),
        )
        if inv is not None
    ]
    anomalies = _effective_checks(_Props(cluster), members)
    for inv in inventories:
        failover = _failover_reserve(_Props(cluster), inv.resource_class, inv.total, by_moref)
        in_pools = _pools_held(pools, inv.resource_class, members)
        inv.hypervisor_reserved = min(inv.hypervisor_reserved + failover + in_pools, inv.total)
    totals = [m.report.memory for m in members if m.report.memory is not None]
    used = [m.used_bytes for m in totals if m.used_bytes is not None]
    memory = None
    if totals:
        total = sum(m.total_bytes for m in totals)
        memory = Memory(total_bytes=total, used_bytes=sum(used) if used else None)
    state = _cluster_state(members)
    if state is not HostState.UP:
        why = ", ".join(
            sorted(f"{m.report.identity.hostname} {m.report.state.value}" for m in members)
        )
        anomalies.append(
            Anomaly.of(
                "vmware.cluster_down",
                "state",
                f"no host of the cluster can run VMs: {why}",
                state.value,
            )
        )
    observed_cpu = [
        m.report.observed.cpu_used_mhz
        for m in members
        if m.report.observed is not None and m.report.observed.cpu_used_mhz is not None
    ]
    observed = None
    if observed_cpu or used:
        observed = ObservedUsage(
            cpu_used_mhz=sum(observed_cpu) if observed_cpu else None,
            memory_used_bytes=sum(used) if used else None,
        )
    traits, cpu_anomalies = _cluster_cpu_traits(_Props(cluster), members)
    anomalies += cpu_anomalies
    if state is not HostState.UP:
        traits.append(os_traits.COMPUTE_STATUS_DISABLED)
    return HostReport(
        provider_kind=ProviderKind.CLUSTER,
        identity=HostIdentity(
            host_id=cluster.moref, target=target, hostname=_Props(cluster).text("name")
        ),
        state=state,
        memory=memory,
        inventories=inventories,
        traits=traits,
        observed=observed,
        location=_location(datacenter, _Props(cluster).text("name")),
        collected_at=collected_at,
        collector=collector,
        anomalies=anomalies,
    )


def _thin_provisioning(props: _Props, capacity: int, free: int) -> SharedStorageUsage | None:
    """``summary.uncommitted``: what thin disks may still grow by; provisioned = used + it."""
    uncommitted = props.integer("summary.uncommitted", limit=units.MAX_BYTES)
    if uncommitted is None:
        return None
    provisioned = min(max(capacity - free, 0) + uncommitted, units.MAX_BYTES)
    return SharedStorageUsage(provisioned_bytes=provisioned, uncommitted_bytes=uncommitted)


def _datastore_report(
    datastore: NativeObject,
    host_ids: Mapping[str, str],
    listed_by: set[str],
    *,
    target: str,
    collected_at: datetime,
    collector: CollectorInfo,
) -> HostReport:
    props = _Props(datastore)
    capacity = props.integer("summary.capacity", limit=units.MAX_BYTES) or 0
    free = props.integer("summary.freeSpace", limit=units.MAX_BYTES) or 0
    anomalies = []
    if free > capacity:
        anomalies.append(
            Anomaly.of(
                "vmware.datastore_free_exceeds_capacity", "inventories", "free > capacity", free
            )
        )
    if props.flag("summary.accessible") is False:
        state = HostState.DISCONNECTED
    elif props.text("summary.maintenanceMode") in _DATASTORE_MAINTENANCE:
        state = HostState.MAINTENANCE
    else:
        state = HostState.UP
    total_gib = units.bytes_to_gib_floor(capacity)
    # Free is rounded down, so used is rounded up: never promise a partial GiB.
    used_gib = max(total_gib - units.bytes_to_gib_floor(min(free, capacity)), 0)
    # Sharers: hosts that list the datastore, plus the datastore's own mount list, minus
    # mounts marked unmounted. (The simulator fills only one side completely.)
    mounted = set(listed_by)
    for mount in props.dicts("host"):
        info = mount.get("mountInfo") or {}
        if not isinstance(info, Mapping):
            raise InvalidNativeData(f"Datastore {datastore.moref}: host mountInfo is not an object")
        if info.get("mounted", True) is False or info.get("accessible", True) is False:
            # Unmounted, or all paths down: the host cannot use it now.
            mounted.discard(str(mount.get("key")))
        else:
            mounted.add(str(mount.get("key")))
    sharers = [host_ids[moref] for moref in mounted if moref in host_ids]
    traits = [os_traits.MISC_SHARES_VIA_AGGREGATE]
    ds_type = props.text("summary.type")
    if ds_type:
        custom = "".join(c if c.isalnum() else "_" for c in ds_type.upper())
        traits.append(f"CUSTOM_VMWARE_DATASTORE_{custom}")
    if state is not HostState.UP:
        traits.append(os_traits.COMPUTE_STATUS_DISABLED)
    return HostReport(
        provider_kind=ProviderKind.SHARED_STORAGE,
        identity=HostIdentity(
            host_id=datastore.moref, target=target, hostname=props.text("summary.name")
        ),
        state=state,
        inventories=[
            Inventory(
                resource_class="DISK_GB",
                total=total_gib,
                max_unit=max(total_gib, 1),
                # Inaccessible: capacity and free are stale. In maintenance: still true.
                used=0 if state is HostState.DISCONNECTED else used_gib,
            )
        ],
        traits=traits,
        shared_with=sorted(set(sharers)),
        storage=_thin_provisioning(props, capacity, free),
        health=_HEALTH.get(props.text("overallStatus") or "gray", Health.UNKNOWN),
        collected_at=collected_at,
        collector=collector,
        anomalies=anomalies,
    )


def normalise(
    inventory: NativeInventory,
    *,
    target: str,
    collector: CollectorInfo,
    collected_at: datetime,
) -> list[HostReport]:
    """Reports for every host, cluster and datastore in ``inventory``."""
    hosts = inventory.of_type("HostSystem")
    clusters = {c.moref: c for c in inventory.of_type(*_CLUSTER_TYPES)}
    computes = {c.moref for c in inventory.of_type(*_COMPUTE_TYPES)}
    host_ids, repeated = _host_ids(hosts)
    compute_of_host = {
        h.moref: parent
        for h in hosts
        if (parent := _Props(h).text("parent")) is not None and parent in computes
    }
    details = _hardware_versions(inventory, compute_of_host)
    allocations = _allocations(inventory)
    datacenters = _datacenter_names(inventory)
    states = _instance_states(inventory)

    results: dict[str, _HostResult] = {}
    for host in hosts:
        anomalies = []
        uuid = _Props(host).text("summary.hardware.uuid")
        if uuid in repeated:
            anomalies.append(
                Anomaly.of(
                    "vmware.duplicate_hardware_uuid",
                    "identity.host_id",
                    "hardware UUID shared by several hosts; the managed-object id is used",
                    uuid,
                )
            )
        parent = compute_of_host.get(host.moref)
        cluster_name = _Props(clusters[parent]).text("name") if parent in clusters else None
        results[host.moref] = _host_report(
            host,
            host_ids[host.moref],
            target=target,
            parent_id=parent if parent in clusters else None,
            allocations=allocations.get(host.moref, _Allocations([])),
            instance_details=details.get(host.moref, {}),
            location=_location(datacenters.get(host.moref), cluster_name),
            instance_states=states.get(host.moref, InstanceStates()),
            collected_at=collected_at,
            collector=collector,
            anomalies=anomalies,
        )

    reports = [r.report for r in results.values()]
    pools = pool_reservations(inventory, computes)
    for moref, cluster in clusters.items():
        members = {h: results[h] for h, c in compute_of_host.items() if c == moref}
        reports.append(
            _cluster_report(
                cluster,
                members,
                target=target,
                datacenter=datacenters.get(moref),
                pools=pools.get(moref, []),
                collected_at=collected_at,
                collector=collector,
            )
        )
    for compute in inventory.of_type("ComputeResource"):
        # A standalone host (or an ESXi host on its own): its compute resource's pools and
        # effective figures are the host's.
        alone = [results[h] for h, c in compute_of_host.items() if c == compute.moref]
        if len(alone) != 1:
            continue
        member = alone[0]
        member.report.anomalies += _effective_checks(_Props(compute), [member])
        for inv in member.report.inventories:
            in_pools = _pools_held(pools.get(compute.moref, []), inv.resource_class, [member])
            inv.hypervisor_reserved = min(inv.hypervisor_reserved + in_pools, inv.total)
    listed_by: dict[str, set[str]] = defaultdict(set)
    for host in hosts:
        for ds in _Props(host).items("datastore"):
            listed_by[str(ds)].add(host.moref)
    for datastore in inventory.of_type("Datastore"):
        reports.append(
            _datastore_report(
                datastore,
                host_ids,
                listed_by[datastore.moref],
                target=target,
                collected_at=collected_at,
                collector=collector,
            )
        )
    return reports
