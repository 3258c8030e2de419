"""The pure part: script JSON → HostReport, field by field, and PowerShell's JSON quirks."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from collectors.hyperv import HypervCollector, normalise, parse_document
from collectors.hyperv._errors import clixml_errors, powershell_error
from collectors.hyperv._normalise import HOLDING_STATES, VM_STATES, _as_list, _date, _int
from resmon.contract import (
    AuthenticationFailed,
    CollectorInfo,
    HostReport,
    InvalidNativeData,
    UnsupportedTarget,
)

from .conftest import FAULTS, HOSTS

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
    assert r.identity.hostname == "hv22-a.corp.example.com"
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
    assert cpu.arch == "x86_64" and cpu.vendor == "GenuineIntel"
    assert cpu.model == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
    assert (cpu.sockets, cpu.cores_per_socket, cpu.threads_per_core) == (2, 32, 2)
    assert (cpu.total_cpus, cpu.online_cpus, cpu.cpu_mhz) == (128, 128, 1995)
    assert r.memory is not None
    assert r.memory.total_bytes == 536344576 * 1024 == 549_216_845_824
    assert r.memory.free_bytes == 301989888 * 1024
    assert r.memory.used_bytes == (536344576 - 301989888) * 1024
    assert [c.cell_id for c in r.numa_cells] == [0, 1]
    assert r.numa_cells[0].cpus == list(range(64))
    assert r.numa_cells[1].cpus == list(range(64, 128))
    assert r.numa_cells[0].memory_bytes == 261888 * MIB
    assert r.numa_cells[1].free_memory_bytes == 148992 * MIB
    assert inventory(r) == {
        "VCPU": (128, 8 + 16 + 2),
        "MEMORY_MB": (523774, (16 + 64 + 3) * 1024),
        # D:\ holds the VHDs: 3,839,862,784,000 bytes, 2 TiB free.
        "DISK_GB": (3576, 1528),
    }
    assert r.traits == sorted(
        [
            "COMPUTE_FIRMWARE_BIOS",
            "COMPUTE_FIRMWARE_UEFI",
            "HW_ARCH_X86_64",
            "HW_CPU_HYPERTHREADING",
        ]
    )
    x64, x86 = r.supported_instances
    assert (x64.arch, x64.hv_type, x64.vm_mode, x64.firmware) == (
        "x86_64",
        "hyperv",
        "hvm",
        ["bios", "uefi"],
    )
    assert x64.details == {
        "vm_config_versions": "5.0,6.2,7.0,7.1,8.0,8.1,8.2,8.3,9.0,9.1,9.2,9.3,10.0",
        "default_vm_config_version": "10.0",
        "vm_generations": "1,2",
    }
    assert (x86.arch, x86.firmware, x86.details["vm_generations"]) == ("i686", ["bios"], "1")
    running = r.running_instances
    assert (running.count, running.vcpus, running.memory_bytes) == (3, 26, 83 * GIB)
    by_name = {i.name: i for i in running.instances}
    assert set(by_name) == {"web-01", "sql-01", "legacy-01"}
    assert by_name["legacy-01"].memory_bytes == 3 * GIB  # assigned (dynamic), not startup
    assert by_name["web-01"].instance_id == "6f1c2b7e-3d4a-4c5b-9e8f-0a1b2c3d4e01"
    assert all(i.state == "running" for i in running.instances)
    assert r.anomalies == []


def test_server2019_single_objects_and_numbers_as_strings() -> None:
    r = report("server2019_small")
    assert r.identity.host_id == "00000000-0000-0000-0000-ac1f6b4a5c2e"
    assert r.collected_at == datetime(2024, 6, 1, 12, 1, tzinfo=UTC)
    assert r.hypervisor is not None and r.hypervisor.version == "10.0.17763"
    assert r.cpu is not None
    assert (r.cpu.sockets, r.cpu.cores_per_socket, r.cpu.threads_per_core) == (1, 6, 2)
    assert (r.cpu.total_cpus, r.cpu.cpu_mhz) == (12, 3401)
    assert r.memory is not None
    assert r.memory.total_bytes == 67014656 * 1024
    assert r.memory.free_bytes == 41943040 * 1024
    assert len(r.numa_cells) == 1 and r.numa_cells[0].cpus == list(range(12))
    assert r.numa_cells[0].memory_bytes == 65440 * MIB
    assert inventory(r) == {
        "VCPU": (12, 2),
        "MEMORY_MB": (65444, 4096),
        "DISK_GB": (476, 176),  # 511,101,108,224 bytes, 300 GiB free
    }
    assert r.supported_instances[0].details["vm_config_versions"] == (
        "5.0,6.2,7.0,7.1,8.0,8.1,8.2,8.3,9.0"
    )
    assert r.supported_instances[0].details["default_vm_config_version"] == "9.0"
    assert [i.name for i in r.running_instances.instances] == ["dc-01"]


def test_arm64_host() -> None:
    r = report("arm64_windows11")
    assert r.cpu is not None
    assert r.cpu.arch == "aarch64" and r.cpu.vendor == "Qualcomm Technologies Inc"
    assert (r.cpu.sockets, r.cpu.cores_per_socket, r.cpu.threads_per_core) == (1, 12, 1)
    assert r.traits == ["COMPUTE_FIRMWARE_UEFI", "HW_ARCH_AARCH64"]
    (only,) = r.supported_instances  # no 32-bit x86, no generation 1 on ARM64
    assert (only.arch, only.firmware, only.details["vm_generations"]) == ("aarch64", ["uefi"], "2")
    assert only.details["vm_config_versions"] == "10.0,11.0,12.0"
    assert r.collected_at == datetime(2024, 11, 5, 10, 15, 30, 123456, tzinfo=UTC)
    assert r.memory is not None and r.memory.total_bytes == 33211844 * 1024
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


def test_offline_normalisation_matches_the_pure_function() -> None:
    path = HOSTS / "server2022_2socket.json"
    (offline,) = HypervCollector.normalise_offline({"json": [path]}, target="t")
    assert offline == report("server2022_2socket")


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.update(Format=2), "Format"),
        (lambda d: d["NumaNodes"][0].update(ProcessorsAvailability="System.Int32[]"), "depth"),
        (lambda d: d.update(VMs="Microsoft.HyperV.PowerShell.VirtualMachine"), "VMs"),
        (lambda d: d["OperatingSystem"].update(FreePhysicalMemory=999999999999), "exceeds"),
        (lambda d: d["OperatingSystem"].update(TotalVisibleMemorySize=True), "boolean"),
        (lambda d: d["OperatingSystem"].update(TotalVisibleMemorySize="12.5"), "integer"),
        (lambda d: d["ComputerSystemProduct"].update(UUID="FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"),
         "placeholder"),
        (lambda d: d["ComputerSystemProduct"].update(UUID="Not Available"), "not a UUID"),
        (lambda d: d["Processors"][1].update(Architecture=12), "differs"),
        (lambda d: d["VMs"][0].update(ProcessorCount=-1), "negative"),
        (lambda d: d.update(SupportedVersions=[]), "SupportedVersions"),
        (lambda d: d.update(CollectedAt="yesterday"), "CollectedAt"),
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
    assert _as_list({"NodeId": 0}, "x") == [{"NodeId": 0}]
    assert _as_list(None, "x") == []
    assert _int("67014656", "x") == 67014656 and _int(12.0, "x") == 12
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert _date("/Date(0)/", "x") == epoch
    assert _date("/Date(1717243200000+0200)/", "x") == datetime(2024, 6, 1, 12, tzinfo=UTC)
    wrapped = {"value": "/Date(1717243200000)/", "DisplayHint": 2, "DateTime": "Saturday"}
    assert _date(wrapped, "x") == datetime(2024, 6, 1, 12, tzinfo=UTC)
    assert _date("2024-06-01T12:00:00", "x") == datetime(2024, 6, 1, 12, tzinfo=UTC)


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
