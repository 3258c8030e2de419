"""The contract's public surface is pinned: collectors rely on exactly these names."""

from __future__ import annotations

import pytest

import resmon.contract
from resmon.contract import (
    CONTRACT_VERSION,
    SCHEMA_VERSION,
    CollectorError,
    ContractViolation,
    units,
    vocabulary,
)


def test_all_is_sorted_and_complete() -> None:
    names = resmon.contract.__all__
    upper = [n for n in names if n.isupper()]
    rest = [n for n in names if not n.isupper()]
    assert upper == sorted(upper) and rest == sorted(rest)
    for name in names:
        assert hasattr(resmon.contract, name), name


def test_versions() -> None:
    assert CONTRACT_VERSION == "1.1"
    assert SCHEMA_VERSION == "1.1"


def test_contract_violation_is_outside_the_collector_tree() -> None:
    # ``except CollectorError`` in a collector must never swallow the core's own verdicts.
    assert not issubclass(ContractViolation, CollectorError)


def test_units_convert_exactly() -> None:
    assert units.kib_to_bytes(1) == 1024
    assert units.mib_to_bytes(3) == 3 * 2**20
    assert units.bytes_to_mib_floor(2**20 * 5 + 1) == 5
    assert units.bytes_to_gib_floor(2**30 - 1) == 0


def test_vocabulary_aliases_follow_nova() -> None:
    cases = {
        "amd64": "x86_64", "x64": "x86_64", "x86-64": "x86_64", "i386": "i686",
        "i486": "i686", "i586": "i686", "x86_32": "i686", "arm64": "aarch64",
    }  # fmt: skip
    for raw, canonical in cases.items():
        assert vocabulary.canonical_arch(raw) == (canonical, True)
    assert vocabulary.canonical_hv_type("xapi") == ("xen", True)
    assert vocabulary.canonical_hv_type("QEMU") == ("qemu", True)
    assert vocabulary.canonical_vm_mode("pv") == ("xen", True)
    assert vocabulary.canonical_vm_mode("hv") == ("hvm", True)
    assert vocabulary.canonical_arch("z80") == ("z80", False)
    assert vocabulary.windows_arch(9) == ("x86_64", True)
    assert vocabulary.windows_arch("12") == ("aarch64", True)
    assert vocabulary.windows_arch(0) == ("i686", True)
    assert vocabulary.windows_arch(77) == ("win32-arch-77", False)


@pytest.mark.parametrize(
    ("raw", "vendor", "known"),
    [
        ("GenuineIntel", "Intel", True),  # Win32_Processor.Manufacturer, /proc/cpuinfo vendor_id
        ("AuthenticAMD", "AMD", True),
        ("HygonGenuine", "Hygon", True),
        ("Intel", "Intel", True),  # libvirt's <vendor>
        ("amd", "AMD", True),  # vSphere's cpuid.amd capability key
        (" Qualcomm Technologies Inc ", "Qualcomm Technologies Inc", False),
    ],
)
def test_cpu_vendors_map_through_one_table(raw: str, vendor: str, known: bool) -> None:
    assert vocabulary.canonical_cpu_vendor(raw) == (vendor, known)


def test_cpu_features_map_through_one_table() -> None:
    traits, unmapped = vocabulary.cpu_feature_traits(
        ["pni", "sse4.2", "avx2", "aes", "ht", "vme"], "x86_64"
    )
    assert traits == [
        "HW_CPU_HYPERTHREADING", "HW_CPU_X86_AESNI", "HW_CPU_X86_AVX2", "HW_CPU_X86_SSE3",
        "HW_CPU_X86_SSE42",
    ]  # fmt: skip
    assert unmapped == ["vme"]
    arm, _ = vocabulary.cpu_feature_traits(["aes", "asimd"], "aarch64")
    assert arm == ["HW_CPU_AARCH64_AES", "HW_CPU_AARCH64_ASIMD"]
    every_trait_is_real = all(
        vocabulary.is_known_trait(t) for t in vocabulary.CPU_FEATURE_TRAITS.values()
    )
    assert every_trait_is_real
