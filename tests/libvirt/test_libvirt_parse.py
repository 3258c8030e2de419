"""Offline normalisation of libvirt XML: the shared corpus, hand-checked files, hostile input.

Needs only defusedxml (no libvirt-python): these are the parsers ``resmon normalise libvirt`` runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from collectors.libvirt._build import normalise_saved
from collectors.libvirt._parse import parse_capabilities, parse_domain_capabilities
from resmon.contract import CollectorInfo, HostReport, InvalidNativeData, ProviderKind
from resmon.validation import check_report

KIB, MIB, GIB = 1024, 1024**2, 1024**3
INFO = CollectorInfo(name="libvirt", version="test")


def normalise(caps: Path | str, *domcaps: Path) -> HostReport:
    text = caps.read_bytes() if isinstance(caps, Path) else caps
    reports = normalise_saved(
        (str(caps) if isinstance(caps, Path) else "inline", text),
        [(str(p), p.read_bytes()) for p in domcaps],
        target="saved",
        collector=INFO,
        collected_at=datetime.now(UTC),
    )
    assert len(reports) == 1 and reports[0].provider_kind is ProviderKind.COMPUTE_HOST
    return reports[0]


def caps_files(corpus: Path) -> list[Path]:
    return sorted((corpus / "libvirt" / "capabilities").rglob("*.xml"))


def test_every_corpus_capabilities_file_normalises_or_is_rejected_clearly(corpus: Path) -> None:
    files = caps_files(corpus)
    assert len(files) >= 20
    accepted = 0
    for path in files:
        try:
            report = normalise(path)
        except InvalidNativeData as exc:
            assert str(path) in str(exc), "the error names the input"
            continue
        again = HostReport.model_validate_json(report.model_dump_json())
        assert again == report
        assert report.cpu is not None and report.cpu.arch
        accepted += 1
    assert accepted == len(files), "every corpus file is a real libvirt answer and must normalise"


def test_every_corpus_domcaps_file_parses(corpus: Path) -> None:
    files = sorted((corpus / "libvirt" / "domaincaps").rglob("*.xml"))
    assert len(files) >= 8
    for path in files:
        dc = parse_domain_capabilities(path.read_bytes(), str(path))
        assert dc.arch and dc.domain_type


# (file, arch, hv_type, vm_modes, NUMA cells, page sizes in bytes, traits that must be there)
HAND_CHECKED = [
    ("capabilityschemadata/caps-qemu-kvm.xml", "x86_64", "kvm", {"hvm", "xen"}, 1, set(),
     {"HW_ARCH_X86_64", "COMPUTE_NODE", "COMPUTE_ARCH_X86_64", "COMPUTE_ARCH_AARCH64"}),
    ("capabilityschemadata/caps-qemu-real-full.xml", "x86_64", "kvm", {"hvm"}, 1,
     {4 * KIB, 2 * MIB, GIB},
     {"HW_CPU_X86_AVX2", "HW_CPU_X86_AVX512F", "HW_CPU_X86_SHA", "HW_CPU_X86_AESNI",
      "HW_CPU_HYPERTHREADING", "HW_CPU_X86_SSE42", "HW_CPU_X86_CLMUL", "HW_CPU_X86_FMA3",
      "HW_CPU_X86_PDPE1GB"}),
    ("capabilityschemadata/caps-test.xml", "i686", "test", {"hvm", "xen"}, 2, set(),
     {"HW_ARCH_I686"}),
    ("vircaps2xmldata/vircaps-x86_64-basic.xml", "x86_64", "unknown", set(), 4,
     {4 * KIB, 2 * MIB, GIB}, {"HW_ARCH_X86_64"}),
    ("vircaps2xmldata/vircaps-aarch64-basic.xml", "aarch64", "unknown", set(), 4,
     {4 * KIB, 2 * MIB, GIB}, {"HW_ARCH_AARCH64"}),
    ("virt-manager/kvm-aarch64.xml", "aarch64", "kvm", {"hvm"}, 2,
     {4 * KIB, 64 * KIB, 2 * MIB, 32 * MIB, GIB},
     {"HW_ARCH_AARCH64", "HW_CPU_AARCH64_FP", "HW_CPU_AARCH64_ASIMD", "HW_CPU_AARCH64_AES",
      "HW_CPU_AARCH64_SHA2", "HW_CPU_AARCH64_ATOMICS", "HW_CPU_AARCH64_CPUID"}),
    ("virt-manager/kvm-x86_64.xml", "x86_64", "kvm", {"hvm"}, 1, {4 * KIB, 2 * MIB, GIB},
     {"HW_CPU_X86_VMX", "HW_CPU_HYPERTHREADING", "HW_CPU_X86_PDPE1GB",
      "HW_CPU_X86_INTEL_MD_CLEAR", "HW_CPU_X86_STIBP", "HW_CPU_X86_INTEL_SSBD"}),
    ("virt-manager/lxc.xml", "x86_64", "lxc", {"exe"}, 1, {4 * KIB, 2 * MIB}, {"HW_ARCH_X86_64"}),
    ("virt-manager/xen-rhel5.4.xml", "x86_64", "xen", {"hvm", "xen"}, 1, set(),
     {"HW_CPU_X86_VMX"}),
    ("virt-manager/test-qemu-no-kvm.xml", "x86_64", "qemu", {"hvm"}, 1, set(), {"HW_ARCH_X86_64"}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "arch", "hv_type", "vm_modes", "cells", "page_sizes", "traits"),
    HAND_CHECKED,
    ids=[row[0].split("/")[-1] for row in HAND_CHECKED],
)
def test_hand_checked_capabilities(
    corpus: Path,
    name: str,
    arch: str,
    hv_type: str,
    vm_modes: set[str],
    cells: int,
    page_sizes: set[int],
    traits: set[str],
) -> None:
    report = normalise(corpus / "libvirt" / "capabilities" / name)
    assert report.cpu is not None and report.hypervisor is not None
    assert report.cpu.arch == arch
    assert report.hypervisor.hv_type == hv_type
    assert {si.vm_mode for si in report.supported_instances} == vm_modes
    assert len(report.numa_cells) == cells
    assert {p.page_size_bytes for c in report.numa_cells for p in c.huge_pages} == page_sizes
    assert traits <= set(report.traits), traits - set(report.traits)
    if hv_type == "unknown":
        # Recorded once, by the core's vocabulary check, not again by the collector.
        codes = [a.code for a in check_report(report) + report.anomalies]
        assert [c for c in codes if "hv_type" in c] == ["vocabulary.hv_type"]


def test_real_full_details(corpus: Path) -> None:
    report = normalise(corpus / "libvirt/capabilities/capabilityschemadata/caps-qemu-real-full.xml")
    assert report.identity.host_id == "29fb382a-ac39-8995-b33c-bcfce7b79434"
    cpu = report.cpu
    assert cpu is not None
    assert (cpu.vendor, cpu.model) == ("AMD", "Opteron_G3-v1")
    assert (cpu.sockets, cpu.cores_per_socket, cpu.threads_per_core, cpu.total_cpus) == (
        1,
        16,
        2,
        32,
    )
    assert report.memory is not None and report.memory.total_bytes == 63393224 * KIB
    cell = report.numa_cells[0]
    assert cell.cpus == list(range(32))
    assert {p.page_size_bytes: p.total for p in cell.huge_pages} == {
        4 * KIB: 15848306,
        2 * MIB: 0,
        GIB: 0,
    }
    by_key = {si.key: si for si in report.supported_instances}
    x86 = by_key["x86_64/kvm/hvm"]
    assert "pc-q35-11.0" in x86.machine_types and "q35" in x86.machine_types
    assert x86.max_vcpus == 4096  # the largest maxCpus of its machines
    assert {"x86_64/qemu/hvm", "s390x/qemu/hvm", "riscv64/qemu/hvm"} <= set(by_key)
    mem = report.inventory("MEMORY_MB")
    assert mem is not None and mem.total == 63393224 // 1024
    vcpu = report.inventory("VCPU")
    assert vcpu is not None and vcpu.total == 32 and vcpu.reserved == 0


def test_numa_memory_and_pages_use_the_unit_attribute(corpus: Path) -> None:
    report = normalise(corpus / "libvirt/capabilities/vircaps2xmldata/vircaps-x86_64-basic.xml")
    assert [c.memory_bytes for c in report.numa_cells] == [GIB, 2 * GIB, 3 * GIB, 4 * GIB]
    assert report.memory is not None and report.memory.total_bytes == 10 * GIB
    pages = {p.page_size_bytes: p.total for p in report.numa_cells[0].huge_pages}
    assert pages == {4 * KIB: 2048, 2 * MIB: 4096, GIB: 6144}
    assert report.numa_cells[3].cpus == [12, 13, 14, 15]


def test_aarch64_sockets_per_node_are_multiplied_back(corpus: Path) -> None:
    report = normalise(corpus / "libvirt/capabilities/virt-manager/kvm-aarch64.xml")
    cpu = report.cpu
    assert cpu is not None
    assert (cpu.sockets, cpu.cores_per_socket, cpu.threads_per_core, cpu.total_cpus) == (
        2,
        80,
        1,
        160,
    )
    assert "HW_CPU_X86_AESNI" not in report.traits  # "aes" on ARM is not AES-NI


def test_alias_arch_is_canonicalised_without_anomaly(corpus: Path) -> None:
    report = normalise(corpus / "libvirt/capabilities/capabilityschemadata/caps-qemu-kvm.xml")
    keys = {si.key for si in report.supported_instances}
    assert "armv6/qemu/hvm" in keys and "armv6l/qemu/hvm" not in keys
    assert not any(a.code == "libvirt.unknown_arch" for a in report.anomalies)
    assert any(a.code == "libvirt.no_host_uuid" for a in report.anomalies)


def test_unknown_arch_is_kept_raw_with_an_anomaly(corpus: Path) -> None:
    path = corpus / "libvirt/capabilities/capabilityschemadata/caps-qemu-kvm.xml"
    text = path.read_text().replace("<arch name='armv6l'>", "<arch name='z80'>")
    assert "<arch name='z80'>" in text, "the derived variant must change the file"
    report = normalise(text)
    assert "z80/qemu/hvm" in {si.key for si in report.supported_instances}
    anomaly = next(a for a in report.anomalies if a.code == "libvirt.unknown_arch")
    assert anomaly.raw_value == "z80"


def test_xen_pv_alias_merges_into_one_instance(corpus: Path) -> None:
    report = normalise(corpus / "libvirt/capabilities/virt-manager/xen-rhel5.4.xml")
    keys = sorted(si.key for si in report.supported_instances)
    # os_type xen and xenpvh both mean vm_mode xen: one instance, machines merged.
    assert keys == ["i686/xen/hvm", "i686/xen/xen", "x86_64/xen/hvm", "x86_64/xen/xen"]
    pv = next(si for si in report.supported_instances if si.key == "x86_64/xen/xen")
    assert set(pv.machine_types) == {"xenpv", "xenpvh"}


# -- domain capabilities ------------------------------------------------------------------------

DOMCAPS = [
    ("qemu_1.5.3-tcg.x86_64.xml", "x86_64", "qemu", "pc-i440fx-1.5", 255, ["bios", "efi"], False),
    ("qemu_11.1.0-q35.x86_64.xml", "x86_64", "kvm", "pc-q35-11.1", 4096, ["bios", "efi"], True),
    ("qemu_11.1.0-virt.aarch64.xml", "aarch64", "kvm", "virt-11.1", 512, ["efi"], False),
    ("libxl-xenpv.xml", "x86_64", "xen", "xenpv", 512, [], False),
    ("libxl-xenfv.xml", "x86_64", "xen", "xenfv", 128, [], False),
    ("empty.xml", "x86_64", "kvm", "my-machine-type", None, [], False),
    ("virt-manager/kvm-x86_64-domcaps-latest.xml", "x86_64", "kvm", "pc-q35-9.0", 4096, ["efi"],
     True),
    ("virt-manager/test-domcaps.xml", "x86_64", "kvm", "my-machine-type", 255, [], False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "arch", "dom_type", "machine", "max_vcpus", "firmware", "secure"),
    DOMCAPS,
    ids=[row[0].split("/")[-1] for row in DOMCAPS],
)
def test_hand_checked_domcaps(
    corpus: Path,
    name: str,
    arch: str,
    dom_type: str,
    machine: str,
    max_vcpus: int | None,
    firmware: list[str],
    secure: bool,
) -> None:
    dc = parse_domain_capabilities((corpus / "libvirt/domaincaps" / name).read_bytes())
    assert (dc.arch, dc.domain_type, dc.machine) == (arch, dom_type, machine)
    assert dc.max_vcpus == max_vcpus
    assert dc.firmware == firmware
    assert dc.secure_boot is secure


def test_domcaps_fill_supported_instance_details(corpus: Path) -> None:
    report = normalise(
        corpus / "libvirt/capabilities/virt-manager/kvm-x86_64.xml",
        corpus / "libvirt/domaincaps/virt-manager/kvm-x86_64-domcaps-latest.xml",
    )
    kvm = next(si for si in report.supported_instances if si.key == "x86_64/kvm/hvm")
    assert kvm.max_vcpus == 4096
    assert kvm.firmware == ["bios", "efi"]
    assert kvm.details["default_machine"] == "pc-q35-9.0"
    assert {
        "COMPUTE_FIRMWARE_BIOS", "COMPUTE_FIRMWARE_UEFI", "COMPUTE_SECURITY_UEFI_SECURE_BOOT",
        "COMPUTE_STORAGE_BUS_VIRTIO", "COMPUTE_STORAGE_BUS_SATA",
    } <= set(report.traits)  # fmt: skip
    qemu = next(si for si in report.supported_instances if si.key == "x86_64/qemu/hvm")
    assert qemu.firmware == []  # no domcaps given for qemu: nothing is guessed


def test_xen_domcaps_match_pv_and_hvm_by_machine(corpus: Path) -> None:
    report = normalise(
        corpus / "libvirt/capabilities/virt-manager/xen-rhel5.4.xml",
        corpus / "libvirt/domaincaps/libxl-xenpv.xml",
        corpus / "libvirt/domaincaps/libxl-xenfv.xml",
    )
    by_key = {si.key: si for si in report.supported_instances}
    assert by_key["x86_64/xen/xen"].max_vcpus == 512
    assert by_key["x86_64/xen/hvm"].max_vcpus == 128


def test_domcaps_for_an_unlisted_guest_is_an_anomaly(corpus: Path) -> None:
    report = normalise(
        corpus / "libvirt/capabilities/virt-manager/lxc.xml",
        corpus / "libvirt/domaincaps/qemu_11.1.0-virt.aarch64.xml",
    )
    assert any(a.code == "libvirt.domcaps_unmatched" for a in report.anomalies)


# -- hostile and absurd input -------------------------------------------------------------------

GOOD_CELL = """<capabilities><host><cpu><arch>x86_64</arch></cpu><topology><cells num='1'>
<cell id='0'><memory unit='{unit}'>{memory}</memory><pages unit='KiB' size='4'>{pages}</pages>
<cpus num='1'><cpu id='{cpu}'/></cpus></cell></cells></topology></host>
<guest><os_type>hvm</os_type><arch name='x86_64'><domain type='kvm'/></arch></guest>
</capabilities>"""


def caps_with(memory: str = "1048576", unit: str = "KiB", pages: str = "10", cpu: str = "0") -> str:
    return GOOD_CELL.format(memory=memory, unit=unit, pages=pages, cpu=cpu)


def test_the_template_itself_is_valid() -> None:
    report = normalise(caps_with())
    assert report.memory is not None and report.memory.total_bytes == GIB
    assert (
        caps_with(memory="1", unit="GiB")
        and normalise(caps_with("1", "GiB")).memory == report.memory
    )


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        ("<capabilities><host>", "malformed XML"),
        ("not xml at all", "malformed XML"),
        ("<domainCapabilities/>", "root element is <domainCapabilities>"),
        (caps_with(memory="-1048576"), "cell[0]/memory = -1048576 is negative"),
        (caps_with(memory=str(2**61)), "cell[0]/memory"),
        (caps_with(memory="1", unit="parsecs"), "unknown unit 'parsecs'"),
        (caps_with(memory="lots"), "'lots' is not an integer"),
        (caps_with(pages="-5"), "pages[0] = -5 is negative"),
        (caps_with(pages=str(2**40)), "pages[0] = 1099511627776 is larger than"),
        (caps_with(cpu="-1"), "cpus/cpu[0]/@id = -1 is negative"),
        ("<capabilities><host/></capabilities>", "host/cpu/arch is missing"),
    ],
)
def test_bad_capabilities_raise_invalid_native_data(xml: str, expected: str) -> None:
    with pytest.raises(InvalidNativeData) as info:
        normalise(xml)
    assert expected in str(info.value)


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<capabilities><host><uuid>&lol9;</uuid></host></capabilities>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE c [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<capabilities><host><uuid>&x;</uuid></host></capabilities>"""


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion-laughs", "xxe"])
def test_xml_bombs_are_refused(xml: str) -> None:
    with pytest.raises(InvalidNativeData, match="refused hostile XML"):
        parse_capabilities(xml)
    with pytest.raises(InvalidNativeData, match="refused hostile XML"):
        parse_domain_capabilities(xml.replace("capabilities>", "domainCapabilities>"))


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        ("<domainCapabilities><domain>kvm</domain></domainCapabilities>", "lacks <domain> or"),
        (
            "<domainCapabilities><domain>kvm</domain><arch>x86_64</arch>"
            "<vcpu max='-4'/></domainCapabilities>",
            "vcpu/@max = -4 is negative",
        ),
        (
            "<domainCapabilities><domain>kvm</domain><arch>x86_64</arch>"
            "<vcpu max='99999999999'/></domainCapabilities>",
            "vcpu/@max = 99999999999 is larger than",
        ),
    ],
)
def test_bad_domcaps_raise_invalid_native_data(xml: str, expected: str) -> None:
    with pytest.raises(InvalidNativeData) as info:
        parse_domain_capabilities(xml)
    assert expected in str(info.value)


def test_oversized_document_is_refused() -> None:
    with pytest.raises(InvalidNativeData, match="more than"):
        parse_capabilities(b" " * (32 * 1024 * 1024 + 1))


def test_observed_cpu_is_the_busy_share_of_two_node_cpu_samples() -> None:
    from collectors.libvirt._build import NodeInfo, observed_cpu_mhz

    node = NodeInfo("x86_64", 4096, cpus=8, mhz=2000, nodes=1, sockets=1, cores=8, threads=1)
    # 2 s of busy time in 8 s of CPU time (1 s wall on 8 CPUs): a quarter of 8 × 2000 MHz.
    assert observed_cpu_mhz((10**9, 4 * 10**9), (3 * 10**9, 12 * 10**9), node) == 4000
    assert observed_cpu_mhz(None, (3 * 10**9, 12 * 10**9), node) is None, "one sample only"
    assert observed_cpu_mhz((5, 10), (5, 10), node) is None, "no time passed"
    assert observed_cpu_mhz((9 * 10**9, 10**10), (10**8, 10**9), node) is None, "rebooted"
