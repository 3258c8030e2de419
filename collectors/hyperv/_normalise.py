"""The script's JSON document → HostReport. Pure: no network, no clock unless none is given.

PowerShell's ``ConvertTo-Json`` has quirks this module absorbs, each in one helper:

- a collection of one comes out as a bare object, and Windows PowerShell 5.1 sometimes wraps an
  array as ``{"value": [...], "Count": n}`` (:func:`_as_list`);
- past ``-Depth`` an object becomes its type name, e.g. ``"System.Object[]"`` or
  ``"Microsoft.HyperV.PowerShell.VMHostNumaNode"`` (:func:`_truncated`);
- enums are integers (``State: 2``), or their names when saved by other tools (:func:`_vm_state`);
- dates are ``"/Date(1712345678901)/"`` in 5.1 and ISO 8601 in 7 (:func:`_date`);
- numbers may arrive as strings (WMI uint64 through some paths) (:func:`_int`);
- ``System.Version`` is an object of Major/Minor/Build/Revision (:func:`_version`).

Anything else that does not fit raises :class:`InvalidNativeData` naming the field.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from resmon.contract import (
    Anomaly,
    CollectorInfo,
    Cpu,
    HostIdentity,
    HostReport,
    Hypervisor,
    InstanceAllocation,
    InvalidNativeData,
    Inventory,
    Memory,
    NumaCell,
    RunningInstances,
    SupportedInstance,
    units,
    vocabulary,
)

from ._script import SCRIPT_FORMAT

__all__ = ["HOLDING_STATES", "VM_STATES", "normalise", "parse_document"]

#: Microsoft.HyperV.PowerShell.VMState (the enum Get-VM's State property has).
VM_STATES: dict[int, str] = {
    1: "Other", 2: "Running", 3: "Off", 4: "Stopping", 6: "Saved", 9: "Paused", 10: "Starting",
    11: "Reset", 32773: "Saving", 32776: "Pausing", 32777: "Resuming", 32779: "FastSaved",
    32780: "FastSaving", 32781: "ForceShutdown", 32782: "ForceReboot", 32783: "Hibernated",
    32784: "ComponentServicing", 32785: "RunningCritical", 32786: "OffCritical",
    32787: "StoppingCritical", 32788: "SavedCritical", 32789: "PausedCritical",
    32790: "StartingCritical", 32791: "ResetCritical", 32792: "SavingCritical",
    32793: "PausingCritical", 32794: "ResumingCritical", 32795: "FastSavedCritical",
    32796: "FastSavingCritical",
}  # fmt: skip
_STATE_BY_NAME = {name.lower(): name for name in VM_STATES.values()}

#: States in which a VM holds host CPUs and memory. Off, Saved and Hibernated VMs hold none
#: (their memory is on disk); FastSaved keeps its memory resident, so it counts.
HOLDING_STATES = frozenset(
    {
        "Running", "Stopping", "Paused", "Starting", "Reset", "Saving", "Pausing", "Resuming",
        "FastSaved", "FastSaving", "ForceShutdown", "ForceReboot", "ComponentServicing",
        "RunningCritical", "StoppingCritical", "PausedCritical", "StartingCritical",
        "ResetCritical", "SavingCritical", "PausingCritical", "ResumingCritical",
        "FastSavedCritical", "FastSavingCritical",
    }
)  # fmt: skip

#: VM generation → the firmware it boots with (Hyper-V: generation 1 BIOS, 2 UEFI).
_GENERATION_FIRMWARE = {1: "bios", 2: "uefi"}
_FIRMWARE_TRAITS = {"bios": "COMPUTE_FIRMWARE_BIOS", "uefi": "COMPUTE_FIRMWARE_UEFI"}

_DATE_MS = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
# Type names ConvertTo-Json writes in place of objects deeper than -Depth.
_TRUNCATED = re.compile(r"^(System|Microsoft)\.[\w.`\[\], ]+$")
_PLACEHOLDER_UUIDS = {uuid.UUID(int=0), uuid.UUID("ffffffff-ffff-ffff-ffff-ffffffffffff")}
_SHARED_PATH = re.compile(r"^(\\\\|[a-z]:\\clusterstorage\\)", re.IGNORECASE)


def _bad(field: str, problem: str, value: object = None) -> InvalidNativeData:
    shown = "" if value is None else f" (got {str(value)[:120]!r})"
    return InvalidNativeData(f"Hyper-V inventory: {field} {problem}{shown}")


def _truncated(value: object) -> bool:
    return isinstance(value, str) and bool(_TRUNCATED.match(value))


def _as_list(value: object, field: str) -> list[Any]:
    """A JSON collection as a list, whichever of PowerShell's shapes it came in."""
    if value is None:
        return []
    if _truncated(value):
        raise _bad(field, "was cut by ConvertTo-Json's depth limit", value)
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        if set(value) == {"value", "Count"} and isinstance(value["value"], list):
            return list(value["value"])
        return [value]
    raise _bad(field, "is neither an object nor an array", value)


def _obj(value: object, field: str) -> dict[str, Any]:
    if _truncated(value):
        raise _bad(field, "was cut by ConvertTo-Json's depth limit", value)
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, dict):
        raise _bad(field, "is not an object", value)
    return value


def _int(value: object, field: str, *, optional: bool = False) -> int | None:
    """An integer from a JSON number or a numeric string; never from a bool or a fraction."""
    if value is None or value == "":
        if optional:
            return None
        raise _bad(field, "is missing")
    if isinstance(value, bool):
        raise _bad(field, "is a boolean, not a number", value)
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        number = int(value)
    else:
        raise _bad(field, "is not an integer", value)
    if number < 0:
        raise _bad(field, "is negative", value)
    return number


def _req_int(value: object, field: str) -> int:
    number = _int(value, field)
    assert number is not None  # _int raises for a missing required value
    return number


def _str(value: object, field: str, *, optional: bool = True) -> str | None:
    if value is None:
        if optional:
            return None
        raise _bad(field, "is missing")
    if _truncated(value):
        raise _bad(field, "was cut by ConvertTo-Json's depth limit", value)
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise _bad(field, "is not a string", value)
    text = str(value).strip()
    return text[:255] or None


def _date(value: object, field: str) -> datetime:
    """A ``DateTime`` as 5.1 (``/Date(ms)/``, maybe with DisplayHint) or 7 (ISO) writes it."""
    if isinstance(value, dict) and "value" in value:
        value = value["value"]
    if not isinstance(value, str):
        raise _bad(field, "is not a date", value)
    match = _DATE_MS.match(value.strip())
    if match:
        # The offset suffix of /Date(ms+hhmm)/ is informational: ms already counts from UTC.
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(match.group(1)))
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise _bad(field, "is not a date", value) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _version(value: object, field: str) -> str:
    """``System.Version`` as ``major.minor`` (JSON object or string)."""
    if isinstance(value, dict):
        major = _req_int(value.get("Major"), f"{field}.Major")
        minor = _req_int(value.get("Minor"), f"{field}.Minor")
        return f"{major}.{minor}"
    text = _str(value, field, optional=False)
    if text is None or not re.fullmatch(r"\d+\.\d+(\.\d+){0,2}", text):
        raise _bad(field, "is not a version", value)
    return text


def _vm_state(value: object, field: str) -> tuple[str, bool]:
    """(state name, known) for a VMState given as an integer, numeric string or name."""
    if isinstance(value, str) and not value.strip().isdigit():
        name = _STATE_BY_NAME.get(value.strip().lower())
        return (name, True) if name else (value.strip()[:64], False)
    code = _req_int(value, field)
    name = VM_STATES.get(code)
    return (name, True) if name else (f"state-{code}", False)


def parse_document(stdout: bytes | str) -> dict[str, Any]:
    """Decode the script's stdout into the document; InvalidNativeData when it is not one."""
    text = stdout.decode("utf-8", errors="strict") if isinstance(stdout, bytes) else stdout
    text = text.lstrip("\ufeff").strip()
    if not text:
        raise InvalidNativeData("Hyper-V inventory: the script printed nothing")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidNativeData(
            f"Hyper-V inventory: output is not complete JSON ({exc.msg} at char {exc.pos} "
            f"of {len(text)})"
        ) from None
    if not isinstance(document, dict):
        raise _bad("document", "is not a JSON object", type(document).__name__)
    return document


def _host_id(product: dict[str, Any]) -> str:
    raw = product.get("UUID")
    try:
        parsed = uuid.UUID(str(raw))
    except ValueError:
        raise _bad("ComputerSystemProduct.UUID", "is not a UUID", raw) from None
    if parsed in _PLACEHOLDER_UUIDS:
        raise _bad("ComputerSystemProduct.UUID", "is a placeholder, not a host identity", raw)
    return str(parsed)


def _cpu(doc: Mapping[str, Any], vmhost: Mapping[str, Any]) -> Cpu:
    processors = [_obj(p, "Processors[]") for p in _as_list(doc.get("Processors"), "Processors")]
    if not processors:
        raise _bad("Processors", "is empty")
    codes = {str(p.get("Architecture")) for p in processors}
    if len(codes) != 1:
        raise _bad("Processors[].Architecture", "differs between sockets", sorted(codes))
    arch, _known = vocabulary.windows_arch(processors[0].get("Architecture"))
    cores = [_req_int(p.get("NumberOfCores"), "Processors[].NumberOfCores") for p in processors]
    threads = [
        _req_int(p.get("NumberOfLogicalProcessors"), "Processors[].NumberOfLogicalProcessors")
        for p in processors
    ]
    uniform = len(set(cores)) == 1 and len(set(threads)) == 1 and cores[0] > 0
    threads_per_core = threads[0] // cores[0] if uniform else None
    traits = [t for t in [vocabulary.arch_trait(arch)] if t]
    if threads_per_core is not None and threads_per_core > 1:
        traits.append("HW_CPU_HYPERTHREADING")
    first = processors[0]
    return Cpu(
        arch=arch,
        vendor=_str(first.get("Manufacturer"), "Processors[].Manufacturer"),
        model=_str(first.get("Name"), "Processors[].Name"),
        sockets=len(processors),
        cores_per_socket=cores[0] if uniform else None,
        threads_per_core=threads_per_core,
        total_cpus=sum(threads),
        online_cpus=_req_int(vmhost.get("LogicalProcessorCount"), "VMHost.LogicalProcessorCount"),
        cpu_mhz=_int(first.get("MaxClockSpeed"), "Processors[].MaxClockSpeed", optional=True),
        traits=traits,
    )


def _numa_cells(doc: Mapping[str, Any]) -> list[NumaCell]:
    nodes = [_obj(n, "NumaNodes[]") for n in _as_list(doc.get("NumaNodes"), "NumaNodes")]
    nodes.sort(key=lambda n: _req_int(n.get("NodeId"), "NumaNodes[].NodeId"))
    cells = []
    next_cpu = 0
    for node in nodes:
        node_id = _req_int(node.get("NodeId"), "NumaNodes[].NodeId")
        # The cmdlet gives one availability entry per logical processor but not their numbers;
        # Windows numbers logical processors node after node, so the ids follow in order.
        lps = len(
            _as_list(node.get("ProcessorsAvailability"), "NumaNodes[].ProcessorsAvailability")
        )
        total_mb = _req_int(node.get("MemoryTotal"), "NumaNodes[].MemoryTotal")
        free_mb = _int(node.get("MemoryAvailable"), "NumaNodes[].MemoryAvailable", optional=True)
        cells.append(
            NumaCell(
                cell_id=node_id,
                cpus=list(range(next_cpu, next_cpu + lps)),
                memory_bytes=units.mib_to_bytes(total_mb),
                free_memory_bytes=None if free_mb is None else units.mib_to_bytes(free_mb),
            )
        )
        next_cpu += lps
    return cells


def _instances(
    doc: Mapping[str, Any], anomalies: list[Anomaly]
) -> tuple[list[InstanceAllocation], set[int]]:
    """VMs holding resources, and the generations seen on the host."""
    held = []
    generations: set[int] = set()
    for i, raw in enumerate(_as_list(doc.get("VMs"), "VMs")):
        vm = _obj(raw, f"VMs[{i}]")
        field = f"VMs[{i}]"
        state, known = _vm_state(vm.get("State"), f"{field}.State")
        generation = _int(vm.get("Generation"), f"{field}.Generation", optional=True)
        if generation is not None:
            generations.add(generation)
        if not known:
            # Unknown states count as holding: over-reporting use is safer for a scheduler.
            anomalies.append(
                Anomaly(
                    code="hyperv.vm_state",
                    field=f"{field}.State",
                    message="VM state not in Microsoft.HyperV.PowerShell.VMState",
                    raw_value=str(vm.get("State"))[:1000],
                )
            )
        elif state not in HOLDING_STATES:
            continue
        vm_id = vm.get("Id")
        if isinstance(vm_id, dict):  # a Guid that kept its ETS wrapper
            vm_id = vm_id.get("Guid", vm_id.get("value"))
        try:
            instance_id = str(uuid.UUID(str(vm_id)))
        except ValueError:
            raise _bad(f"{field}.Id", "is not a GUID", vm_id) from None
        assigned = _int(vm.get("MemoryAssigned"), f"{field}.MemoryAssigned", optional=True)
        if not assigned:  # 0 while a VM starts or stops: it will hold its startup memory
            assigned = _req_int(vm.get("MemoryStartup"), f"{field}.MemoryStartup")
        held.append(
            InstanceAllocation(
                instance_id=instance_id,
                name=_str(vm.get("Name"), f"{field}.Name"),
                vcpus=_req_int(vm.get("ProcessorCount"), f"{field}.ProcessorCount"),
                memory_bytes=assigned,
                state=state.lower(),
            )
        )
    return held, generations


def _disk_inventory(
    doc: Mapping[str, Any], vmhost: Mapping[str, Any], anomalies: list[Anomaly]
) -> Inventory | None:
    """DISK_GB from the volume holding VirtualHardDiskPath (the longest matching mount path)."""
    path = _str(vmhost.get("VirtualHardDiskPath"), "VMHost.VirtualHardDiskPath") or ""
    if _SHARED_PATH.match(path):
        # Cluster Shared Volumes and SMB shares are shared by several hosts; counting them here
        # would count them once per host.
        anomalies.append(
            Anomaly(
                code="hyperv.shared_storage",
                field="VMHost.VirtualHardDiskPath",
                message="virtual disks live on shared storage; DISK_GB not reported per host",
                raw_value=path,
            )
        )
        return None
    best: dict[str, Any] | None = None
    for raw in _as_list(doc.get("Volumes"), "Volumes"):
        volume = _obj(raw, "Volumes[]")
        name = _str(volume.get("Name"), "Volumes[].Name") or ""
        if not name.endswith("\\"):
            name += "\\"
        if (path.lower() + "\\").startswith(name.lower()) and (
            best is None or len(name) > len(best["_mount"])
        ):
            best = {**volume, "_mount": name}
    if best is None:
        anomalies.append(
            Anomaly(
                code="hyperv.disk_volume",
                field="VMHost.VirtualHardDiskPath",
                message="no local volume holds the virtual hard disk path",
                raw_value=path,
            )
        )
        return None
    capacity = _req_int(best.get("Capacity"), "Volumes[].Capacity")
    free = _req_int(best.get("FreeSpace"), "Volumes[].FreeSpace")
    if free > capacity:
        raise _bad("Volumes[].FreeSpace", "exceeds the volume's capacity", free)
    total_gib = units.bytes_to_gib_floor(capacity)
    if total_gib < 1:
        return None
    return Inventory(
        resource_class="DISK_GB",
        total=total_gib,
        used=min(units.bytes_to_gib_floor(capacity - free), total_gib),
    )


def _supported(
    doc: Mapping[str, Any], arch: str, generations_seen: set[int]
) -> tuple[list[SupportedInstance], list[str]]:
    """What the host runs: generation 2 (UEFI) everywhere, generation 1 (BIOS) on x86 only."""
    versions = []
    default = None
    for i, raw in enumerate(_as_list(doc.get("SupportedVersions"), "SupportedVersions")):
        item = _obj(raw, f"SupportedVersions[{i}]")
        version = _version(item.get("Version"), f"SupportedVersions[{i}].Version")
        versions.append(version)
        if item.get("IsDefault") is True:
            default = version
    if not versions:
        raise _bad("SupportedVersions", "is empty (Get-VMHostSupportedVersion returned nothing)")
    versions.sort(key=lambda v: tuple(int(p) for p in v.split(".")))
    # Generation 1 emulates a PC (BIOS, IDE): x86 only. Generations seen on VMs are kept as a
    # cross-check: a host running a generation the rules exclude is reported as it is.
    generations = sorted(
        ({1, 2} if arch in ("x86_64", "i686") else {2})
        | (generations_seen & set(_GENERATION_FIRMWARE))
    )
    details = {"vm_config_versions": ",".join(versions)}
    if default:
        details["default_vm_config_version"] = default
    instances = [
        SupportedInstance(
            arch=arch,
            hv_type="hyperv",
            vm_mode="hvm",
            firmware=[_GENERATION_FIRMWARE[g] for g in generations],
            details={**details, "vm_generations": ",".join(str(g) for g in generations)},
        )
    ]
    if arch == "x86_64":
        # 32-bit guests boot only in generation 1 VMs.
        instances.append(
            SupportedInstance(
                arch="i686",
                hv_type="hyperv",
                vm_mode="hvm",
                firmware=["bios"],
                details={**details, "vm_generations": "1"},
            )
        )
    traits = [_FIRMWARE_TRAITS[_GENERATION_FIRMWARE[g]] for g in generations]
    return instances, traits


def normalise(
    document: Mapping[str, Any],
    *,
    target: str,
    collector: CollectorInfo,
    collected_at: datetime | None = None,
) -> HostReport:
    """One HostReport from the script's document.

    ``collected_at`` defaults to the time the script recorded (``CollectedAt``), which is what a
    saved document should keep when it is normalised later.
    """
    fmt = _int(document.get("Format"), "Format")
    if fmt != SCRIPT_FORMAT:
        raise _bad("Format", f"is not {SCRIPT_FORMAT}, the format this collector reads", fmt)
    anomalies: list[Anomaly] = []
    vmhost = _obj(document.get("VMHost"), "VMHost")
    os_info = _obj(document.get("OperatingSystem"), "OperatingSystem")
    product = _obj(document.get("ComputerSystemProduct"), "ComputerSystemProduct")
    if collected_at is None:
        collected_at = _date(document.get("CollectedAt"), "CollectedAt")

    cpu = _cpu(document, vmhost)
    total_kib = _req_int(
        os_info.get("TotalVisibleMemorySize"), "OperatingSystem.TotalVisibleMemorySize"
    )
    free_kib = _req_int(os_info.get("FreePhysicalMemory"), "OperatingSystem.FreePhysicalMemory")
    if free_kib > total_kib:
        raise _bad("OperatingSystem.FreePhysicalMemory", "exceeds TotalVisibleMemorySize", free_kib)
    total_bytes = units.kib_to_bytes(total_kib)
    free_bytes = units.kib_to_bytes(free_kib)
    if total_bytes <= 0:
        raise _bad("OperatingSystem.TotalVisibleMemorySize", "is zero")

    instances, generations = _instances(document, anomalies)
    running = RunningInstances.from_instances(instances)
    inventories = [
        Inventory(resource_class="VCPU", total=cpu.online_cpus or 0, used=running.vcpus),
        Inventory(
            resource_class="MEMORY_MB",
            total=units.bytes_to_mib_floor(total_bytes),
            used=units.bytes_to_mib_floor(running.memory_bytes),
        ),
    ]
    disk = _disk_inventory(document, vmhost, anomalies)
    if disk is not None:
        inventories.append(disk)
    supported, firmware_traits = _supported(document, cpu.arch, generations)

    version = _str(os_info.get("Version"), "OperatingSystem.Version") or ""
    hostname = _str(vmhost.get("FullyQualifiedDomainName"), "VMHost.FullyQualifiedDomainName")
    return HostReport(
        identity=HostIdentity(
            host_id=_host_id(product),
            target=target,
            hostname=hostname or _str(vmhost.get("ComputerName"), "VMHost.ComputerName"),
        ),
        hypervisor=Hypervisor(
            hv_type="hyperv",
            product=_str(os_info.get("Caption"), "OperatingSystem.Caption") or "Hyper-V",
            version=version,
        ),
        cpu=cpu,
        memory=Memory(
            total_bytes=total_bytes, free_bytes=free_bytes, used_bytes=total_bytes - free_bytes
        ),
        numa_cells=_numa_cells(document),
        inventories=inventories,
        traits=[*cpu.traits, *firmware_traits],
        supported_instances=supported,
        running_instances=running,
        collected_at=collected_at,
        collector=collector,
        anomalies=anomalies,
    )
