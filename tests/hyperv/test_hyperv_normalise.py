"""The pure part: script JSON → HostReport, field by field, and PowerShell's JSON quirks."""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from collectors.hyperv import SCRIPT, HypervCollector, normalise, parse_document
from collectors.hyperv._errors import clixml_errors, powershell_error
from collectors.hyperv._normalise import (
    HOLDING_STATES,
    NUMA_SPANNING_DISABLED_TRAIT,
    VM_STATES,
    _as_list,
    _date,
    _int,
    hypervisor_held_mib,
)
from collectors.hyperv._script import PROCESSOR_FEATURES, encoded_command
from resmon import cli
from resmon.contract import (
    AuthenticationFailed,
    CollectorInfo,
    HostReport,
    HostState,
    InstanceStates,
    InvalidNativeData,
    UnsupportedTarget,
    vocabulary,
)
from resmon.policy import TargetPolicy, apply_policy
from resmon.validation import check_report

from .conftest import FAULTS, HOSTS, SAVED

GIB = 1024**3
MIB = 1024**2
INFO = CollectorInfo(name="hyperv", version="1.0.0")


def report(profile: str) -> HostReport:
    document = parse_document((HOSTS / f"{profile}.json").read_bytes())
    return normalise(document, target="t", collector=INFO)


def inventory(r: HostReport) -> dict[str, tuple[int, int]]:
    return {i.resource_class: (i.total, i.used) for i in r.inventories}


def test_server2022_two_sockets_field_by_field() -> None:
    r = report("server2022_2socket")
    assert r.identity.host_id == "4c4c4544-0042-3510-8052-b3c04f4b4e32"
    # DNSHostName + Domain of a domain member (VMHost.FullyQualifiedDomainName is only the domain).
    assert r.identity.hostname == "HV22-A.corp.example.com"
    assert r.state is HostState.UP
    assert r.collected_at == datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    hv = r.hypervisor
    assert hv is not None
    assert (hv.hv_type, hv.product, hv.version) == (
        "hyperv",
        "Microsoft Windows Server 2022 Datacenter",
        "10.0.20348",
    )
    assert (hv.version_major, hv.version_minor, hv.version_patch) == (10, 0, 20348)
    cpu = r.cpu
    assert cpu is not None
    # Manufacturer "GenuineIntel" is the CPUID vendor string: named as libvirt and vSphere do.
    assert cpu.arch == "x86_64" and cpu.vendor == "Intel"
    assert cpu.model == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
    assert (cpu.sockets, cpu.cores_per_socket, cpu.threads_per_core) == (2, 32, 2)
    assert (cpu.total_cpus, cpu.online_cpus, cpu.cpu_mhz) == (128, 128, 1995)
    assert "PF_AVX512F_INSTRUCTIONS_AVAILABLE" in cpu.features
    assert "PF_SECOND_LEVEL_ADDRESS_TRANSLATION" in cpu.features  # kept raw: no os-trait
    assert r.memory is not None
    assert r.memory.total_bytes == 536344576 * 1024 == 549_216_845_824
    assert r.memory.free_bytes == 421527552 * 1024
    assert r.memory.used_bytes == (536344576 - 421527552) * 1024
    assert [c.cell_id for c in r.numa_cells] == [0, 1]
    assert r.numa_cells[0].cpus == list(range(64))
    assert r.numa_cells[1].cpus == list(range(64, 128))
    assert r.numa_cells[0].memory_bytes == 261888 * MIB
    assert r.numa_cells[1].free_memory_bytes == 210880 * MIB
    assert inventory(r) == {
        "VCPU": (128, 8 + 16 + 2 + 4 + 2 + 2 + 4),
        "MEMORY_MB": (523774, (16 + 64 + 3 + 8 + 4 + 2 + 6) * 1024),
        # D:\ holds the VHDs: 3,839,862,784,000 bytes, 2 TiB free.
        "DISK_GB": (3576, 1528),
    }
    assert r.traits == sorted(
        [
            "COMPUTE_FIRMWARE_BIOS",
            "COMPUTE_FIRMWARE_UEFI",
            "HW_ARCH_X86_64",
            "HW_CPU_HYPERTHREADING",
            "HW_CPU_X86_MMX",
            "HW_CPU_X86_SSE",
            "HW_CPU_X86_SSE2",
            "HW_CPU_X86_SSE3",
            "HW_CPU_X86_SSSE3",
            "HW_CPU_X86_SSE41",
            "HW_CPU_X86_SSE42",
            "HW_CPU_X86_AVX",
            "HW_CPU_X86_AVX2",
            "HW_CPU_X86_AVX512F",
        ]
    )
    x64, x86 = r.supported_instances
    assert (x64.arch, x64.hv_type, x64.vm_mode, x64.firmware) == (
        "x86_64",
        "hyperv",
        "hvm",
        ["bios", "uefi"],
    )
    # Server 2022 runs configuration versions 8.0 to 10.0 ("Upgrade virtual machine version").
    assert x64.details == {
        "vm_config_versions": "8.0,8.1,8.2,8.3,9.0,9.1,9.2,9.3,10.0",
        "default_vm_config_version": "10.0",
        "vm_config_versions_in_use": "9.0,10.0",
        "vm_generations_in_use": "1,2",
        "vm_generations": "1,2",
        "max_vcpus_generation_1": "64",
    }
    # "Plan for Hyper-V scalability": Server 2022 VMs take 1,024 (gen 2) or 64 (gen 1) VPs.
    assert (x64.max_vcpus, x86.max_vcpus) == (1024, 64)
    assert (x86.arch, x86.firmware, x86.details["vm_generations"]) == ("i686", ["bios"], "1")
    running = r.running_instances
    assert (running.count, running.vcpus, running.memory_bytes) == (7, 38, 103 * GIB)
    by_name = {i.name: i for i in running.instances}
    assert set(by_name) == {
        "web-01",
        "sql-01",
        "legacy-01",
        "Microsoft.Exchange",
        "System.Center",
        "Überwachung-01",
        "会計サーバー",
    }
    assert by_name["legacy-01"].memory_bytes == 3 * GIB  # dynamic: assigned above startup
    assert by_name["Überwachung-01"].memory_bytes == 2 * GIB  # dynamic: trimmed below startup
    assert by_name["会計サーバー"].state == "paused"
    assert by_name["web-01"].instance_id == "6f1c2b7e-3d4a-4c5b-9e8f-0a1b2c3d4e01"
    assert r.instance_states == InstanceStates(running=6, paused=1, suspended=1, stopped=1)
    assert r.observed is not None
    assert r.observed.memory_used_bytes == (536344576 - 421527552) * 1024
    assert r.boot_time == datetime(2024, 5, 20, tzinfo=UTC)  # LastBootUpTime
    memory = r.inventory("MEMORY_MB")
    assert memory is not None and memory.hypervisor_reserved == 6208  # root partition
    assert r.anomalies == []
    assert check_report(r) == []


@pytest.mark.parametrize(
    ("profile", "held_mib"),
    [
        # 523,520 MiB in the nodes, 412,352 available, 104,960 assigned to VMs.
        ("server2022_2socket", 523520 - 412352 - 104960),
        ("server2025_numa_off", 6144),  # 4 GiB on node 0, 2 GiB on node 1, none on the CXL node
        ("hypervisor_off", 65440 - 58744),  # its only VM is off
        ("vmms_stopped", None),  # no NUMA figures without vmms
    ],
)
def test_memory_the_hypervisor_and_root_hold(profile: str, held_mib: int | None) -> None:
    document = parse_document((HOSTS / f"{profile}.json").read_bytes())
    r = normalise(document, target="t", collector=INFO)
    assigned = sum(vm["MemoryAssigned"] for vm in document["VMs"] or [] if vm["State"] in (2, 9))
    assert hypervisor_held_mib(r.numa_cells, assigned) == held_mib
    memory = r.inventory("MEMORY_MB")
    assert memory is not None and memory.hypervisor_reserved == (held_mib or 0)
    # The core adds the operator's reservation (Nova's default 512 MiB) to it.
    (settled,), _ = apply_policy([r], TargetPolicy.defaults())
    settled_memory = settled.inventory("MEMORY_MB")
    assert settled_memory is not None
    if r.state is HostState.UP:
        assert settled_memory.reserved == (held_mib or 0) + 512


def test_escaped_and_non_ascii_names_are_read() -> None:
    raw = (HOSTS / "server2022_2socket.json").read_bytes()
    assert rb"Bob\u0027s \u003ctest\u003e \u0026 demo" in raw  # as JavaScriptSerializer writes
    assert "Überwachung-01".encode() in raw  # non-ASCII is not escaped
    names = [vm["Name"] for vm in parse_document(raw)["VMs"]]
    assert "Bob's <test> & demo" in names and "会計サーバー" in names


def test_workgroup_host_is_named_by_its_dns_host_name() -> None:
    # Domain is the workgroup's name when PartOfDomain is false: not a DNS suffix.
    r = report("server2019_small")
    assert r.identity.hostname == "HV19-EDGE"


def test_server2019_single_vm_and_bom() -> None:
    raw = (HOSTS / "server2019_small.json").read_bytes()
    assert raw.startswith(codecs.BOM_UTF8)
    r = report("server2019_small")
    assert r.identity.host_id == "00000000-0000-0000-0000-ac1f6b4a5c2e"
    assert r.collected_at == datetime(2024, 6, 1, 12, 1, tzinfo=UTC)
    assert r.hypervisor is not None and r.hypervisor.version == "10.0.17763"
    assert r.cpu is not None
    assert (r.cpu.sockets, r.cpu.cores_per_socket, r.cpu.threads_per_core) == (1, 6, 2)
    assert (r.cpu.total_cpus, r.cpu.cpu_mhz) == (12, 3401)
    assert "HW_CPU_X86_AVX2" in r.traits and "HW_CPU_X86_AVX512F" not in r.traits
    assert r.memory is not None
    assert r.memory.total_bytes == 67014656 * 1024
    assert len(r.numa_cells) == 1 and r.numa_cells[0].cpus == list(range(12))
    assert inventory(r) == {
        "VCPU": (12, 2),
        "MEMORY_MB": (65444, 4096),
        "DISK_GB": (476, 176),  # 511,101,108,224 bytes, 300 GiB free
    }
    x64 = r.supported_instances[0]
    assert x64.details["vm_config_versions"] == "5.0,6.2,7.0,7.1,8.0,8.1,8.2,8.3,9.0"
    assert x64.details["default_vm_config_version"] == "9.0"
    assert x64.max_vcpus == 250  # Server 2019, generation 2
    assert [i.name for i in r.running_instances.instances] == ["dc-01"]


def test_server2016_configuration_version_8() -> None:
    r = report("server2016_config8")
    x64, x86 = r.supported_instances
    assert x64.details["vm_config_versions"] == "5.0,6.2,7.0,7.1,8.0"
    assert x64.details["vm_config_versions_in_use"] == "5.0,8.0"
    assert (x64.max_vcpus, x86.max_vcpus) == (240, 64)
    assert "HW_CPU_X86_AVX2" in r.traits and "HW_CPU_X86_AVX512F" not in r.traits
    assert r.anomalies == []


def test_server2025_numa_spanning_disabled() -> None:
    r = report("server2025_numa_off")
    assert NUMA_SPANNING_DISABLED_TRAIT in r.traits
    assert r.cpu is not None and r.cpu.online_cpus == 384  # six processor groups of 64
    assert r.cpu.vendor == "AMD"  # Manufacturer "AuthenticAMD"
    # A memory-only node (CXL) holds memory and no processors.
    assert [(c.cell_id, len(c.cpus)) for c in r.numa_cells] == [(0, 192), (1, 192), (2, 0)]
    assert r.numa_cells[2].memory_bytes == 262144 * MIB
    # Without spanning a VM fits in one node with processors: 192 LPs, node 1's 786,432 MiB.
    vcpu, memory = r.inventory("VCPU"), r.inventory("MEMORY_MB")
    assert vcpu is not None and memory is not None
    assert (vcpu.total, vcpu.max_unit) == (384, 192)
    assert (memory.total, memory.max_unit) == (1833984, 786432)
    x64 = r.supported_instances[0]
    assert x64.max_vcpus == 2048 and x64.details["default_vm_config_version"] == "12.0"
    # The dynamic-memory VM holds 6 GiB (startup 4, minimum 2, maximum 16).
    by_name = {i.name: i for i in r.running_instances.instances}
    assert by_name["vdi-pool-01"].memory_bytes == 6 * GIB
    # A 2012 R2 VM (5.0) cannot start on Server 2025 until Update-VMVersion.
    assert [(a.code, a.raw_value) for a in r.anomalies] == [("hyperv.vm_config_version", "5.0")]
    assert check_report(r) == []


def test_spanning_enabled_keeps_whole_host_limits() -> None:
    r = report("server2022_2socket")
    assert NUMA_SPANNING_DISABLED_TRAIT not in r.traits
    vcpu = r.inventory("VCPU")
    assert vcpu is not None and vcpu.max_unit == 128


def test_arm64_host() -> None:
    r = report("arm64_windows11")
    assert r.cpu is not None
    assert r.cpu.arch == "aarch64" and r.cpu.vendor == "Qualcomm Technologies Inc"
    assert (r.cpu.sockets, r.cpu.cores_per_socket, r.cpu.threads_per_core) == (1, 12, 1)
    # PF_ARM_V8_CRYPTO_INSTRUCTIONS_AVAILABLE stands for AES, PMULL, SHA1 and SHA2.
    assert r.traits == [
        "COMPUTE_FIRMWARE_UEFI",
        "HW_ARCH_AARCH64",
        "HW_CPU_AARCH64_AES",
        "HW_CPU_AARCH64_ASIMD",
        "HW_CPU_AARCH64_ASIMDDP",
        "HW_CPU_AARCH64_ATOMICS",
        "HW_CPU_AARCH64_CRC32",
        "HW_CPU_AARCH64_JSCVT",
        "HW_CPU_AARCH64_LRCPC",
        "HW_CPU_AARCH64_PMULL",
        "HW_CPU_AARCH64_SHA1",
        "HW_CPU_AARCH64_SHA2",
    ]
    (only,) = r.supported_instances  # no 32-bit x86, no generation 1 on ARM64
    assert (only.arch, only.firmware, only.details["vm_generations"]) == ("aarch64", ["uefi"], "2")
    assert only.max_vcpus is None  # client Windows: no documented per-VM maximum
    assert r.collected_at == datetime(2024, 11, 5, 10, 15, 30, 123000, tzinfo=UTC)
    assert [(i.name, i.state) for i in r.running_instances.instances] == [
        ("ubuntu-arm64", "running")
    ]
    assert inventory(r) == {"VCPU": (12, 4), "MEMORY_MB": (32433, 8192), "DISK_GB": (952, 382)}


def test_vms_in_every_state() -> None:
    r = report("server2022_every_vm_state")
    states = {i.name: i.state for i in r.running_instances.instances}
    idle = {"Other", "Off", "Saved", "Hibernated", "OffCritical", "SavedCritical"}
    assert set(VM_STATES.values()) - HOLDING_STATES == idle
    assert set(states.values()) == {s.lower() for s in HOLDING_STATES} | {"state-40000"}
    assert r.running_instances.count == 24 and r.running_instances.vcpus == 48
    # The Starting VM reports MemoryAssigned 0: it holds its startup memory.
    assert states["lab-07"] == "starting"
    assert all(i.memory_bytes == 2 * GIB for i in r.running_instances.instances)
    assert inventory(r) == {"VCPU": (48, 48), "MEMORY_MB": (261631, 48 * 1024)}
    assert [(a.code, a.raw_value) for a in r.anomalies] == [
        ("hyperv.vm_state", "40000"),
        ("hyperv.shared_storage", "C:\\ClusterStorage\\Volume1\\VHDs"),
    ]


@pytest.mark.parametrize(
    ("profile", "reason"),
    [
        ("hypervisor_off", "HypervisorPresent is false"),
        ("vmms_stopped", "(vmms) is Stopped"),
    ],
)
def test_host_whose_hypervisor_is_not_running_is_not_schedulable(profile: str, reason: str) -> None:
    r = report(profile)
    assert r.state is HostState.NOT_RESPONDING
    assert "COMPUTE_STATUS_DISABLED" in r.traits
    (anomaly,) = [a for a in r.anomalies if a.code == "hyperv.hypervisor_not_running"]
    assert reason in anomaly.message
    # Totals stay (the hardware is there); the core lets nothing be allocated.
    (settled,), _ = apply_policy([r], TargetPolicy.defaults())
    for inv in settled.inventories:
        assert inv.total > 0 and inv.capacity == 0, inv
    assert r.running_instances.count == 0


def test_vmms_stopped_reports_what_windows_knows() -> None:
    r = report("vmms_stopped")
    assert r.identity.hostname == "HV22-MAINT.corp.example.com"
    assert r.cpu is not None and r.cpu.online_cpus == 48
    assert r.numa_cells == []
    # What the architecture runs is still known; the configuration versions are not.
    x64, x86 = r.supported_instances
    assert (x64.firmware, x86.firmware) == (["bios", "uefi"], ["bios"])
    assert "vm_config_versions" not in x64.details and x64.max_vcpus == 1024
    # Add-Type was refused (constrained language mode): the reason is kept.
    (features,) = [a for a in r.anomalies if a.code == "hyperv.cpu_features"]
    assert features.raw_value is not None and "language mode" in features.raw_value


def test_host_without_the_hyperv_role_is_unsupported() -> None:
    document = json.loads((HOSTS / "vmms_stopped.json").read_text())
    document["VmmsStatus"] = None
    with pytest.raises(UnsupportedTarget, match="role is not installed"):
        normalise(document, target="t", collector=INFO)


def test_names_that_look_like_type_names_are_kept() -> None:
    """ConvertTo-Json's depth cut is found where objects and arrays belong, not by content."""
    document = json.loads((HOSTS / "server2022_2socket.json").read_text())
    document["Processors"][0]["Name"] = document["Processors"][1]["Name"] = "System.Processor"
    document["OperatingSystem"]["Caption"] = "Microsoft.Windows.Server"
    r = normalise(document, target="t", collector=INFO)
    assert r.cpu is not None and r.cpu.model == "System.Processor"
    names = {i.name for i in r.running_instances.instances}
    assert {"Microsoft.Exchange", "System.Center"} <= names


def test_depth_cut_document_is_rejected_where_the_cut_is() -> None:
    # ConvertTo-Json -Depth 2 (its default) writes the Int32[] as its elements joined by spaces.
    document = parse_document((FAULTS / "depth_truncated.json").read_bytes())
    assert isinstance(document["NumaNodes"][0]["ProcessorsAvailability"], str)
    with pytest.raises(InvalidNativeData, match=r"NumaNodes\[\]\.ProcessorsAvailability .*-Depth"):
        normalise(document, target="t", collector=INFO)


def test_volume_without_capacity() -> None:
    document = json.loads((HOSTS / "server2022_2socket.json").read_text())
    document["VMHost"]["VirtualHardDiskPath"] = "E:\\VMs"  # E: is locked: Capacity null
    r = normalise(document, target="t", collector=INFO)
    assert r.inventory("DISK_GB") is None
    assert [(a.code, a.raw_value) for a in r.anomalies] == [("hyperv.disk_volume", "E:\\")]


def test_dynamic_memory_out_of_order_is_an_anomaly() -> None:
    document = json.loads((HOSTS / "server2022_2socket.json").read_text())
    document["VMs"][2]["MemoryMinimum"] = 4 * GIB  # above its 2 GiB startup
    r = normalise(document, target="t", collector=INFO)
    assert [a.code for a in r.anomalies] == ["hyperv.dynamic_memory"]


def test_offline_normalisation_matches_the_pure_function() -> None:
    path = HOSTS / "server2022_2socket.json"
    (offline,) = HypervCollector.normalise_offline({"json": [path]}, target="t")
    assert offline == report("server2022_2socket")


def _encoded(codec: str, bom: bytes) -> bytes:
    text = (HOSTS / "server2022_2socket.json").read_text(encoding="utf-8")
    # A code page without every character writes "?" for the rest, as Windows does.
    return bom + text.encode(codec, errors="replace")


@pytest.mark.parametrize(
    ("codec", "bom"),
    [
        ("utf-8", b""),
        ("utf-8", codecs.BOM_UTF8),
        ("utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16-be", codecs.BOM_UTF16_BE),
    ],
    ids=["utf8", "utf8-bom", "utf16le-bom", "utf16be-bom"],
)
def test_saved_output_in_every_windows_encoding(codec: str, bom: bytes, tmp_path: Path) -> None:
    path = tmp_path / "inventory.json"
    path.write_bytes(_encoded(codec, bom))
    (offline,) = HypervCollector.normalise_offline({"json": [path]}, target="t")
    assert offline == report("server2022_2socket")


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (lambda: _encoded("utf-16-le", b""), "NUL bytes but no byte-order mark"),
        (lambda: _encoded("cp1252", b""), "neither UTF-8 nor UTF-16"),
        (lambda: codecs.BOM_UTF16_LE + b"{\x00\x00\xd8", "not utf-16-le"),
    ],
    ids=["utf16-without-bom", "cp1252", "broken-utf16"],
)
def test_other_encodings_are_invalid_native_data(data: Any, needle: str, tmp_path: Path) -> None:
    path = tmp_path / "inventory.json"
    path.write_bytes(data())
    with pytest.raises(InvalidNativeData, match=needle) as caught:
        HypervCollector.normalise_offline({"json": [path]}, target="t")
    assert caught.value.target == "t"


def test_cli_normalises_a_utf16_file(capsys: pytest.CaptureFixture[str]) -> None:
    """What Windows PowerShell 5.1's ``>`` saved: UTF-16LE with a BOM."""
    saved = SAVED / "server2022_2socket.utf16le.json"
    assert saved.read_bytes().startswith(codecs.BOM_UTF16_LE)
    assert cli.main(["normalise", "hyperv", "--json", str(saved)]) == 0
    (printed,) = json.loads(capsys.readouterr().out)
    assert printed["identity"]["hostname"] == "HV22-A.corp.example.com"
    assert printed["running_instances"]["count"] == 7


def test_cli_reports_a_non_utf_file_as_invalid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "inventory.json"
    path.write_bytes(_encoded("cp1252", b""))
    assert cli.main(["normalise", "hyperv", "--json", str(path)]) == 1
    assert "invalid_native_data" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.update(Format=1), "Format"),
        (lambda d: d.update(VMs="Microsoft.HyperV.PowerShell.VirtualMachine"), "VMs"),
        (lambda d: d.update(VMHost="@{ComputerName=HV22-A; LogicalProcessorCount=128}"), "VMHost"),
        (lambda d: d["OperatingSystem"].update(FreePhysicalMemory=999999999999), "exceeds"),
        (lambda d: d["OperatingSystem"].update(TotalVisibleMemorySize=True), "boolean"),
        (lambda d: d["OperatingSystem"].update(TotalVisibleMemorySize="12.5"), "integer"),
        (lambda d: d["ComputerSystemProduct"].update(UUID="FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"),
         "placeholder"),
        (lambda d: d["ComputerSystemProduct"].update(UUID="Not Available"), "not a UUID"),
        (lambda d: d["Processors"][1].update(Architecture=12), "differs"),
        (lambda d: d["VMs"][0].update(ProcessorCount=-1), "negative"),
        (lambda d: d["VMs"][0].update(Version="ten"), "not a version"),
        (lambda d: d["ComputerSystem"].update(HypervisorPresent="yes"), "true or false"),
        (lambda d: d.update(SupportedVersions=[]), "SupportedVersions"),
        (lambda d: d.update(CollectedAt="yesterday"), "CollectedAt"),
        (lambda d: d.update(VMHost=None), "VMHost"),
    ],
)  # fmt: skip
def test_bad_documents_raise_invalid_native_data(mutate: Any, needle: str) -> None:
    document = json.loads((HOSTS / "server2022_2socket.json").read_text())
    mutate(document)
    with pytest.raises(InvalidNativeData, match=needle):
        normalise(document, target="t", collector=INFO)


@pytest.mark.parametrize(
    ("stdout", "needle"),
    [(b"", "printed nothing"), (b"[1, 2]", "not a JSON object"), (b'{"Format": 1', "complete")],
)
def test_unusable_stdout(stdout: bytes, needle: str) -> None:
    with pytest.raises(InvalidNativeData, match=needle):
        parse_document(stdout)


def test_truncated_fixture_is_rejected_with_position() -> None:
    with pytest.raises(InvalidNativeData, match=r"not complete JSON .* at char \d+"):
        parse_document((FAULTS / "truncated.json").read_bytes())


def test_powershell_json_quirk_helpers() -> None:
    assert _as_list({"value": [1, 2], "Count": 2}, "x") == [1, 2]
    assert _as_list(None, "x") == []
    with pytest.raises(InvalidNativeData, match="-Depth"):
        _as_list("75 64 80", "x")
    assert _int("67014656", "x") == 67014656 and _int(12.0, "x") == 12
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert _date("/Date(0)/", "x") == epoch
    assert _date("/Date(1717243200000+0200)/", "x") == datetime(2024, 6, 1, 12, tzinfo=UTC)
    wrapped = {"value": "/Date(1717243200000)/", "DisplayHint": 2, "DateTime": "Saturday"}
    assert _date(wrapped, "x") == datetime(2024, 6, 1, 12, tzinfo=UTC)
    assert _date("2024-06-01T12:00:00", "x") == datetime(2024, 6, 1, 12, tzinfo=UTC)


# -- the script --------------------------------------------------------------------------------


def test_script_calls_hyperv_cmdlets_by_module() -> None:
    """VMware PowerCLI exports Get-VM and Get-VMHost too: only Hyper-V\\ names are safe."""
    calls = re.findall(r"(?:[\w-]+\\)?Get-VM\w*", SCRIPT)
    assert calls and all(call.startswith("Hyper-V\\") for call in calls), calls


def test_script_guards_the_console_encoding() -> None:
    lines = [line for line in SCRIPT.splitlines() if "[Console]::OutputEncoding" in line]
    assert lines == [
        "try { [Console]::OutputEncoding = New-Object Text.UTF8Encoding $false } catch { }"
    ]
    assert SCRIPT.index("[Console]::OutputEncoding") < SCRIPT.index("ConvertTo-Json")


def test_script_asks_for_every_feature_the_vocabulary_knows() -> None:
    windows_names = {n for n in vocabulary.CPU_FEATURE_TRAITS if n.startswith("pf_")}
    asked = {name.lower() for name in PROCESSOR_FEATURES}
    assert windows_names <= asked
    for name, value in PROCESSOR_FEATURES.items():
        assert f"{name} = {value}" in SCRIPT
    assert len(encoded_command()) < 32767 - 100  # CreateProcess's command-line limit


# -- PowerShell error streams ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "error"),
    [
        ("role_absent.clixml", UnsupportedTarget),
        ("access_denied.clixml", AuthenticationFailed),
        ("powershell_exception.clixml", InvalidNativeData),
    ],
)
def test_fault_streams_map_to_error_kinds(fixture: str, error: type[Exception]) -> None:
    found = powershell_error((FAULTS / fixture).read_bytes(), 1, target="t")
    assert type(found) is error
    assert "_x000D_" not in str(found) and str(found).startswith("t: ")


def test_corpus_clixml_streams(corpus: Path) -> None:
    data = corpus / "hyperv" / "pypsrp" / "data"
    with_error = (data / "test_sanitise_clixml_with_error.xml").read_bytes()
    text = clixml_errors(with_error.decode())
    assert text.startswith("fake : The term 'fake' is not recognized as the name of a cmdlet")
    assert "CommandNotFoundException" in text and "\r\n" in text
    # A command other than the Hyper-V cmdlets is missing: unsupported, but not "role missing".
    found = powershell_error(with_error, 1)
    assert isinstance(found, UnsupportedTarget) and "Hyper-V" not in str(found)
    # Progress records only ("Preparing modules for first use."): not an error.
    no_errors = (data / "test_sanitise_clixml_with_no_errors.xml").read_bytes()
    assert powershell_error(no_errors, 0) is None


def test_exit_code_without_error_text_is_invalid_data() -> None:
    assert isinstance(powershell_error(b"", 1), InvalidNativeData)
    assert powershell_error(b"", 0) is None


@pytest.mark.parametrize("profile", sorted(p.stem for p in HOSTS.glob("*.json")))
def test_policy_changes_capacity_the_same_way(
    profile: str, check_policy_applies_uniformly: Callable[[list[HostReport]], set[str]]
) -> None:
    assert {"VCPU", "MEMORY_MB"} <= check_policy_applies_uniformly([report(profile)])
