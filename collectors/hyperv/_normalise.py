"""The script's JSON document → HostReport. Pure: no network, no clock unless none is given.

The script runs Windows PowerShell 5.1, whose ``ConvertTo-Json`` has quirks this module absorbs,
each in one helper:

- stdout may be UTF-8 with or without a byte-order mark, and a document saved by hand with
  5.1's ``>`` or ``Out-File`` is UTF-16LE with a BOM (:func:`decode_output`);
- past ``-Depth``, an object or array becomes a string (its ``ToString()``: ``"@{...}"``,
  ``"1 2 3"``, ``"System.Int32[]"``). Depth only runs out at positions that hold objects or
  arrays, so truncation is detected there, by shape (:func:`_as_list`, :func:`_obj`); a string
  where a string belongs (a VM named ``Microsoft.Exchange``) is just a string;
- enums are integers (``State: 2``), or their names when saved by other tools (:func:`_vm_state`);
- dates are ``"/Date(1712345678901)/"`` in 5.1 and ISO 8601 in 7 (:func:`_date`);
- ``System.Version`` is an object of Major/Minor/Build/Revision (:func:`_version`).

Anything else that does not fit raises :class:`InvalidNativeData` naming the field.
"""

from __future__ import annotations

import codecs
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from resmon.contract import (
    Anomaly,
    CollectorInfo,
    Cpu,
    HostIdentity,
    HostReport,
    HostState,
    Hypervisor,
    InstanceAllocation,
    InstanceStates,
    InvalidNativeData,
    Inventory,
    Memory,
    NumaCell,
    ObservedUsage,
    RunningInstances,
    SupportedInstance,
    UnsupportedTarget,
    units,
    vocabulary,
)

from ._script import SCRIPT_FORMAT

__all__ = [
    "HOLDING_STATES",
    "NUMA_SPANNING_DISABLED_TRAIT",
    "VM_STATES",
    "decode_output",
    "hypervisor_held_mib",
    "normalise",
    "parse_document",
]

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

#: VMState → InstanceStates field; the rest (transitions, servicing) count as ``other``.
_STATE_BUCKETS = {
    "Running": "running", "RunningCritical": "running",
    "Paused": "paused", "PausedCritical": "paused",
    "Saved": "suspended", "SavedCritical": "suspended", "FastSaved": "suspended",
    "FastSavedCritical": "suspended", "Hibernated": "suspended",
    "Off": "stopped", "OffCritical": "stopped",
}  # fmt: skip

#: ``Set-VMHost -NumaSpanningEnabled $false``: "whether virtual machines on the Hyper-V host can
#: use resources from more than one NUMA node" (Set-VMHost reference). os-traits has no name.
NUMA_SPANNING_DISABLED_TRAIT = "CUSTOM_HYPERV_NUMA_SPANNING_DISABLED"

#: VM generation → the firmware it boots with (Hyper-V: generation 1 BIOS, 2 UEFI).
_GENERATION_FIRMWARE = {1: "bios", 2: "uefi"}
_FIRMWARE_TRAITS = {"bios": "COMPUTE_FIRMWARE_BIOS", "uefi": "COMPUTE_FIRMWARE_UEFI"}

#: Virtual processors per VM, (generation 2, generation 1), by Windows Server build, from
#: "Plan for Hyper-V scalability in Windows Server" (learn.microsoft.com, 2024-10-25), "Maximums
#: for virtual machines". Other builds (client Windows, Azure Local) are not in that table.
_MAX_VCPUS_BY_SERVER_BUILD: dict[int, tuple[int, int]] = {
    14393: (240, 64),  # Windows Server 2016
    17763: (250, 64),  # Windows Server 2019
    20348: (1024, 64),  # Windows Server 2022
    26100: (2048, 64),  # Windows Server 2025
}

_DATE_MS = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")
_PLACEHOLDER_UUIDS = {uuid.UUID(int=0), uuid.UUID("ffffffff-ffff-ffff-ffff-ffffffffffff")}
_SHARED_PATH = re.compile(r"^(\\\\|[a-z]:\\clusterstorage\\)", re.IGNORECASE)
_DEPTH_CUT = "is a string where ConvertTo-Json writes {what}: the document was cut by its -Depth"


def _bad(field: str, problem: str, value: object = None) -> InvalidNativeData:
    shown = "" if value is None else f" (got {str(value)[:120]!r})"
    return InvalidNativeData(f"Hyper-V inventory: {field} {problem}{shown}")


def _as_list(value: object, field: str) -> list[Any]:
    """A JSON array (``@(...)`` in the script always makes one; null is an empty one).

    A string here is what ``ConvertTo-Json`` leaves of an array past ``-Depth`` (its elements
    joined by spaces, or its type name). Windows PowerShell's ``{"value": [...], "Count": n}``
    wrapper (an array that kept its PSObject wrapper) is unwrapped.
    """
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        raise _bad(field, _DEPTH_CUT.format(what="an array"), value)
    if isinstance(value, dict) and set(value) == {"value", "Count"}:
        return _as_list(value["value"], field)
    raise _bad(field, "is not an array", value)


def _obj(value: object, field: str) -> dict[str, Any]:
    """A JSON object; a string here is what ``ConvertTo-Json`` leaves of it past ``-Depth``."""
    if isinstance(value, str):
        raise _bad(field, _DEPTH_CUT.format(what="an object"), value)
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
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise _bad(field, "is not a string", value)
    text = str(value).strip()
    return text[:255] or None


def _bool(value: object, field: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise _bad(field, "is not true or false", value)


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
    """``System.Version`` as ``major.minor`` (JSON object, or the string it becomes)."""
    if isinstance(value, dict):
        major = _req_int(value.get("Major"), f"{field}.Major")
        minor = _req_int(value.get("Minor"), f"{field}.Minor")
        return f"{major}.{minor}"
    text = _str(value, field, optional=False)
    if text is None or not re.fullmatch(r"\d+\.\d+(\.\d+){0,2}", text):
        raise _bad(field, "is not a version", value)
    return text


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _vm_state(value: object, field: str) -> tuple[str, bool]:
    """(state name, known) for a VMState given as an integer, numeric string or name."""
    if isinstance(value, str) and not value.strip().isdigit():
        name = _STATE_BY_NAME.get(value.strip().lower())
        return (name, True) if name else (value.strip()[:64], False)
    code = _req_int(value, field)
    name = VM_STATES.get(code)
    return (name, True) if name else (f"state-{code}", False)


def decode_output(stdout: bytes) -> str:
    """The script's output (or a saved copy of it) as text.

    UTF-8 with or without a byte-order mark (the script's own stdout, ``Out-File -Encoding
    utf8``), and UTF-16 LE or BE with one (Windows PowerShell 5.1's ``>`` and ``Out-File``
    default) are read; anything else is InvalidNativeData.
    """
    for bom, codec in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if stdout.startswith(bom):
            try:
                return stdout[len(bom) :].decode(codec)
            except UnicodeDecodeError as exc:
                raise InvalidNativeData(
                    f"Hyper-V inventory: output starts with a {codec} byte-order mark but is not "
                    f"{codec} (byte {exc.start + len(bom)})"
                ) from None
    if b"\x00" in stdout:
        raise InvalidNativeData(
            "Hyper-V inventory: output has NUL bytes but no byte-order mark (UTF-16 without a "
            "BOM?); save it as UTF-8, or UTF-16 with a BOM"
        )
    try:
        return stdout.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidNativeData(
            f"Hyper-V inventory: output is neither UTF-8 nor UTF-16 with a byte-order mark "
            f"(byte {exc.start} is {stdout[exc.start : exc.start + 1]!r})"
        ) from None


def parse_document(stdout: bytes | str) -> dict[str, Any]:
    """Decode the script's stdout into the document; InvalidNativeData when it is not one."""
    text = decode_output(stdout) if isinstance(stdout, bytes) else stdout
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


def _hostname(system: Mapping[str, Any], vmhost: Mapping[str, Any] | None) -> str | None:
    """``DNSHostName.Domain`` for a domain member; the bare DNS host name in a workgroup, where
    Win32_ComputerSystem.Domain is the workgroup's name (``WORKGROUP``), not a DNS suffix."""
    host = _str(system.get("DNSHostName"), "ComputerSystem.DNSHostName")
    if host is None and vmhost is not None:
        host = _str(vmhost.get("ComputerName"), "VMHost.ComputerName")
    if host is None:
        return None
    domain = _str(system.get("Domain"), "ComputerSystem.Domain")
    if _bool(system.get("PartOfDomain"), "ComputerSystem.PartOfDomain") and domain:
        return f"{host}.{domain}"[:255]
    return host


def _not_running_reason(document: Mapping[str, Any], system: Mapping[str, Any]) -> str | None:
    """Why the host cannot run VMs now, or None when it can."""
    vmms = _str(document.get("VmmsStatus"), "VmmsStatus")
    if vmms is None:
        raise UnsupportedTarget(
            "the Hyper-V role is not installed on this host (no vmms service; "
            "Install-WindowsFeature Hyper-V -IncludeManagementTools)"
        )
    if _bool(system.get("HypervisorPresent"), "ComputerSystem.HypervisorPresent") is False:
        return (
            "the hypervisor is not running (Win32_ComputerSystem.HypervisorPresent is false: "
            "hypervisorlaunchtype is off in the boot configuration, or virtualisation is disabled "
            "in the firmware)"
        )
    if vmms != "Running":
        return f"the Hyper-V Virtual Machine Management service (vmms) is {vmms}, not Running"
    return None


def _cpu(
    doc: Mapping[str, Any],
    system: Mapping[str, Any],
    vmhost: Mapping[str, Any] | None,
    anomalies: list[Anomaly],
) -> Cpu:
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
    features: list[str] = []
    raw_features = doc.get("CpuFeatures")
    if raw_features is None:
        anomalies.append(
            Anomaly(
                code="hyperv.cpu_features",
                field="CpuFeatures",
                message="CPU features were not collected (IsProcessorFeaturePresent not called)",
                raw_value=_str(doc.get("CpuFeaturesError"), "CpuFeaturesError"),
            )
        )
    else:
        features = sorted(
            {
                _str(f, "CpuFeatures[]", optional=False) or ""
                for f in _as_list(raw_features, "CpuFeatures")
            }
        )
        feature_traits, _unmapped = vocabulary.cpu_feature_traits(features, arch)
        traits.extend(feature_traits)
    if vmhost is not None:
        online = _req_int(vmhost.get("LogicalProcessorCount"), "VMHost.LogicalProcessorCount")
    else:  # vmms is not running: Windows' own count
        online = _int(
            system.get("NumberOfLogicalProcessors"), "ComputerSystem.NumberOfLogicalProcessors",
            optional=True,
        ) or sum(threads)  # fmt: skip
    first = processors[0]
    # Win32_Processor.Manufacturer is the CPUID vendor string ("GenuineIntel", "AuthenticAMD").
    manufacturer = _str(first.get("Manufacturer"), "Processors[].Manufacturer")
    return Cpu(
        arch=arch,
        vendor=None if manufacturer is None else vocabulary.canonical_cpu_vendor(manufacturer)[0],
        model=_str(first.get("Name"), "Processors[].Name"),
        sockets=len(processors),
        cores_per_socket=cores[0] if uniform else None,
        threads_per_core=threads_per_core,
        total_cpus=sum(threads),
        online_cpus=online,
        cpu_mhz=_int(first.get("MaxClockSpeed"), "Processors[].MaxClockSpeed", optional=True),
        features=features,
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
        # Windows numbers logical processors node after node, so the ids follow in order. A
        # memory-only node (CXL, persistent memory) has none.
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


@dataclass
class _VMs:
    """Every VM's facts the report needs."""

    holding: list[InstanceAllocation]
    generations: set[int]
    config_versions: set[str]
    #: Σ MemoryAssigned of the VMs holding resources: what they hold now, in bytes.
    assigned_bytes: int = 0
    #: Every VM counted by power state.
    states: InstanceStates = field(default_factory=InstanceStates)


def _vm_memory(vm: Mapping[str, Any], field: str, anomalies: list[Anomaly]) -> int:
    """Memory a VM holding resources is allocated, in bytes.

    Static memory: MemoryStartup (MemoryAssigned equals it once running). Dynamic memory: the VM
    holds MemoryAssigned now, may be given up to MemoryMaximum, may be trimmed to MemoryMinimum,
    and needs MemoryStartup again at its next start, so it is allocated the larger of assigned
    and startup. (MemoryAssigned is 0 while a VM starts or stops.)
    """
    startup = _req_int(vm.get("MemoryStartup"), f"{field}.MemoryStartup")
    assigned = _int(vm.get("MemoryAssigned"), f"{field}.MemoryAssigned", optional=True) or 0
    if _bool(vm.get("DynamicMemoryEnabled"), f"{field}.DynamicMemoryEnabled"):
        minimum = _int(vm.get("MemoryMinimum"), f"{field}.MemoryMinimum", optional=True)
        maximum = _int(vm.get("MemoryMaximum"), f"{field}.MemoryMaximum", optional=True)
        if minimum is not None and maximum is not None and not minimum <= startup <= maximum:
            anomalies.append(
                Anomaly(
                    code="hyperv.dynamic_memory",
                    field=field,
                    message="dynamic memory settings are out of order (minimum ≤ startup ≤ "
                    "maximum does not hold)",
                    raw_value=f"minimum={minimum} startup={startup} maximum={maximum}",
                )
            )
    return max(assigned, startup)


def _vms(doc: Mapping[str, Any], anomalies: list[Anomaly]) -> _VMs:
    """VMs holding resources, and the generations and configuration versions seen."""
    result = _VMs(holding=[], generations=set(), config_versions=set())
    for i, raw in enumerate(_as_list(doc.get("VMs"), "VMs")):
        field = f"VMs[{i}]"
        vm = _obj(raw, field)
        state, known = _vm_state(vm.get("State"), f"{field}.State")
        generation = _int(vm.get("Generation"), f"{field}.Generation", optional=True)
        if generation is not None:
            result.generations.add(generation)
        config = _str(vm.get("Version"), f"{field}.Version")
        if config is not None:
            result.config_versions.add(_version(config, f"{field}.Version"))
        bucket = _STATE_BUCKETS.get(state, "other")
        setattr(result.states, bucket, getattr(result.states, bucket) + 1)
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
        result.assigned_bytes += (
            _int(vm.get("MemoryAssigned"), f"{field}.MemoryAssigned", optional=True) or 0
        )
        result.holding.append(
            InstanceAllocation(
                instance_id=instance_id,
                name=_str(vm.get("Name"), f"{field}.Name"),
                vcpus=_req_int(vm.get("ProcessorCount"), f"{field}.ProcessorCount"),
                memory_bytes=_vm_memory(vm, field, anomalies),
                state=state.lower(),
            )
        )
    return result


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
    capacity = _int(best.get("Capacity"), "Volumes[].Capacity", optional=True)
    free = _int(best.get("FreeSpace"), "Volumes[].FreeSpace", optional=True)
    if capacity is None or free is None:
        # Win32_Volume leaves both null for a volume without a mounted file system (a locked
        # BitLocker volume, say).
        anomalies.append(
            Anomaly(
                code="hyperv.disk_volume",
                field="Volumes[].Capacity",
                message="the volume holding the virtual hard disk path reports no capacity "
                "(not mounted, or locked)",
                raw_value=best["_mount"],
            )
        )
        return None
    if free > capacity:
        raise _bad("Volumes[].FreeSpace", "exceeds the volume's capacity", free)
    total_gib = units.bytes_to_gib_floor(capacity)
    if total_gib < 1:
        return None
    return Inventory(
        resource_class="DISK_GB",
        total=total_gib,
        max_unit=total_gib,  # no virtual disk outgrows the volume it lives on
        used=min(units.bytes_to_gib_floor(capacity - free), total_gib),
    )


def _boot_time(os_info: Mapping[str, Any]) -> datetime | None:
    raw = os_info.get("LastBootUpTime")
    return None if raw is None else _date(raw, "OperatingSystem.LastBootUpTime")


def _max_vcpus(os_info: Mapping[str, Any]) -> tuple[int, int] | None:
    """(generation 2, generation 1) virtual processors per VM where Microsoft documents them."""
    caption = _str(os_info.get("Caption"), "OperatingSystem.Caption") or ""
    build = _int(os_info.get("BuildNumber"), "OperatingSystem.BuildNumber", optional=True)
    if "Windows Server" not in caption or build is None:
        return None
    return _MAX_VCPUS_BY_SERVER_BUILD.get(build)


def _supported(
    doc: Mapping[str, Any],
    arch: str,
    vms: _VMs,
    max_vcpus: tuple[int, int] | None,
    anomalies: list[Anomaly],
    *,
    versions_known: bool,
) -> tuple[list[SupportedInstance], list[str]]:
    """What the host runs: generation 2 (UEFI) everywhere, generation 1 (BIOS) on x86 only.

    ``versions_known`` is False while vmms is stopped: the configuration versions are then not
    reported, the generations (a property of the architecture) still are.
    """
    versions = []
    default = None
    for i, raw in enumerate(_as_list(doc.get("SupportedVersions"), "SupportedVersions")):
        item = _obj(raw, f"SupportedVersions[{i}]")
        version = _version(item.get("Version"), f"SupportedVersions[{i}].Version")
        versions.append(version)
        if item.get("IsDefault") is True:
            default = version
    if versions_known and not versions:
        raise _bad("SupportedVersions", "is empty (Get-VMHostSupportedVersion returned nothing)")
    versions.sort(key=_version_key)
    for config in sorted(vms.config_versions - set(versions), key=_version_key):
        anomalies.append(
            Anomaly(
                code="hyperv.vm_config_version",
                field="VMs[].Version",
                message="VMs have a configuration version this host does not run; they start "
                "only after Update-VMVersion",
                raw_value=config,
            )
        )
    # Generation 1 emulates a PC (BIOS, IDE): x86 only. Generations seen on VMs are kept as a
    # cross-check: a host running a generation the rules exclude is reported as it is.
    generations = sorted(
        ({1, 2} if arch in ("x86_64", "i686") else {2})
        | (vms.generations & set(_GENERATION_FIRMWARE))
    )
    details = {"vm_config_versions": ",".join(versions)} if versions else {}
    if default:
        details["default_vm_config_version"] = default
    if vms.config_versions:
        details["vm_config_versions_in_use"] = ",".join(
            sorted(vms.config_versions, key=_version_key)
        )
    if vms.generations:
        details["vm_generations_in_use"] = ",".join(str(g) for g in sorted(vms.generations))
    gen2_max, gen1_max = max_vcpus or (None, None)
    top = gen2_max if 2 in generations else gen1_max
    instance_details = {**details, "vm_generations": ",".join(str(g) for g in generations)}
    if gen1_max is not None and 1 in generations:
        instance_details["max_vcpus_generation_1"] = str(gen1_max)
    instances = [
        SupportedInstance(
            arch=arch,
            hv_type="hyperv",
            vm_mode="hvm",
            firmware=[_GENERATION_FIRMWARE[g] for g in generations],
            max_vcpus=top,
            details=instance_details,
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
                max_vcpus=gen1_max,
                details={**details, "vm_generations": "1"},
            )
        )
    traits = [_FIRMWARE_TRAITS[_GENERATION_FIRMWARE[g]] for g in generations]
    return instances, traits


def hypervisor_held_mib(cells: list[NumaCell], vms_assigned_bytes: int) -> int | None:
    """Memory the hypervisor and the root partition hold back from VMs, in MiB.

    Get-VMHostNumaNode's MemoryAvailable is what each node can still give VMs; what its
    MemoryTotal has beyond that and beyond what VMs were assigned is held by the hypervisor and
    the root partition (Windows itself and its root reserve). None without NUMA figures.
    """
    if not cells or any(c.memory_bytes is None or c.free_memory_bytes is None for c in cells):
        return None
    total = sum(c.memory_bytes or 0 for c in cells)
    available = sum(c.free_memory_bytes or 0 for c in cells)
    return units.bytes_to_mib_floor(max(total - available - vms_assigned_bytes, 0))


def _largest_node(cells: list[NumaCell]) -> tuple[int, int]:
    """(logical processors, MiB) of the largest NUMA node with processors: one VM's limit when
    it may not span nodes (a memory-only node cannot host a VM's processors)."""
    with_cpus = [c for c in cells if c.cpus]
    cpus = max((len(c.cpus) for c in with_cpus), default=0)
    mib = max((units.bytes_to_mib_floor(c.memory_bytes or 0) for c in with_cpus), default=0)
    return cpus, mib


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

    A host whose hypervisor is not running (HypervisorPresent false, or vmms not Running) keeps
    its totals but is reported ``not_responding`` with ``COMPUTE_STATUS_DISABLED`` and an
    anomaly giving the reason: it cannot start a VM (the core then gives it capacity 0).

    MEMORY_MB's ``hypervisor_reserved`` is what the hypervisor and the root partition hold back
    (:func:`hypervisor_held_mib`); ratios and operator reservations are the core's policy.
    """
    fmt = _int(document.get("Format"), "Format")
    if fmt != SCRIPT_FORMAT:
        raise _bad("Format", f"is not {SCRIPT_FORMAT}, the format this collector reads", fmt)
    anomalies: list[Anomaly] = []
    system = _obj(document.get("ComputerSystem"), "ComputerSystem")
    os_info = _obj(document.get("OperatingSystem"), "OperatingSystem")
    product = _obj(document.get("ComputerSystemProduct"), "ComputerSystemProduct")
    raw_vmhost = document.get("VMHost")
    vmhost = None if raw_vmhost is None else _obj(raw_vmhost, "VMHost")
    if collected_at is None:
        collected_at = _date(document.get("CollectedAt"), "CollectedAt")
    not_running = _not_running_reason(document, system)
    if not_running is None and vmhost is None:
        raise _bad("VMHost", "is missing although vmms is running")
    up = not_running is None

    cpu = _cpu(document, system, vmhost, anomalies)
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

    vms = _vms(document, anomalies)
    running = RunningInstances.from_instances(vms.holding)
    cells = _numa_cells(document)
    traits = list(cpu.traits)
    vcpus = cpu.online_cpus or 0
    memory_mib = units.bytes_to_mib_floor(total_bytes)
    # A VM gets at most as many virtual processors as the host has logical ones, and at most
    # the documented per-VM maximum of its generation.
    max_vcpus = _max_vcpus(os_info)
    vcpu_max = min(vcpus, max_vcpus[0]) if max_vcpus else vcpus
    memory_max = memory_mib
    if (
        vmhost is not None
        and _bool(vmhost.get("NumaSpanningEnabled"), "VMHost.NumaSpanningEnabled") is False
        and cells
    ):
        traits.append(NUMA_SPANNING_DISABLED_TRAIT)
        node_cpus, node_mib = _largest_node(cells)
        vcpu_max, memory_max = min(vcpu_max, node_cpus), min(memory_max, node_mib)
    held_mib = hypervisor_held_mib(cells, vms.assigned_bytes)
    inventories = [
        Inventory(
            resource_class="VCPU",
            total=vcpus,
            max_unit=max(vcpu_max, 1),
            used=running.vcpus,
        ),
        Inventory(
            resource_class="MEMORY_MB",
            total=memory_mib,
            hypervisor_reserved=min(held_mib or 0, memory_mib),
            max_unit=max(memory_max, 1),
            used=units.bytes_to_mib_floor(running.memory_bytes),
        ),
    ]
    if vmhost is not None:
        disk = _disk_inventory(document, vmhost, anomalies)
        if disk is not None:
            inventories.append(disk)
    supported, firmware_traits = _supported(
        document, cpu.arch, vms, max_vcpus, anomalies, versions_known=vmhost is not None
    )
    traits.extend(firmware_traits)
    if not up:
        traits.append("COMPUTE_STATUS_DISABLED")
        anomalies.append(
            Anomaly(
                code="hyperv.hypervisor_not_running",
                field="state",
                message=f"host cannot run VMs: {not_running}",
                raw_value=f"HypervisorPresent={system.get('HypervisorPresent')} "
                f"vmms={document.get('VmmsStatus')}",
            )
        )

    version = _str(os_info.get("Version"), "OperatingSystem.Version") or ""
    return HostReport(
        identity=HostIdentity(
            host_id=_host_id(product), target=target, hostname=_hostname(system, vmhost)
        ),
        state=HostState.UP if up else HostState.NOT_RESPONDING,
        hypervisor=Hypervisor(
            hv_type="hyperv",
            product=_str(os_info.get("Caption"), "OperatingSystem.Caption") or "Hyper-V",
            version=version,
        ),
        cpu=cpu,
        memory=Memory(
            total_bytes=total_bytes, free_bytes=free_bytes, used_bytes=total_bytes - free_bytes
        ),
        numa_cells=cells,
        inventories=inventories,
        traits=traits,
        supported_instances=supported,
        running_instances=running,
        instance_states=vms.states,
        observed=ObservedUsage(memory_used_bytes=total_bytes - free_bytes),
        boot_time=_boot_time(os_info),
        collected_at=collected_at,
        collector=collector,
        anomalies=anomalies,
    )
