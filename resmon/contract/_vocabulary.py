"""Canonical vocabulary: architectures, hypervisor types, VM modes, CPU-feature traits.

Values follow Nova's lists (``nova.objects.fields``); architectures are spelled as libvirt spells
them. Every ``canonical_*`` function returns ``(value, known)``: an unknown value is returned raw
(lower-cased, stripped) with ``known=False`` so that the caller can record an anomaly instead of
dropping it.
"""

from __future__ import annotations

from collections.abc import Iterable

import os_traits

__all__ = [
    "ARCHITECTURES",
    "CPU_FEATURE_TRAITS",
    "CPU_VENDORS",
    "HV_TYPES",
    "VM_MODES",
    "WINDOWS_ARCHITECTURE_CODES",
    "arch_trait",
    "canonical_arch",
    "canonical_cpu_vendor",
    "canonical_hv_type",
    "canonical_vm_mode",
    "cpu_feature_traits",
    "is_known_trait",
    "windows_arch",
]

ARCHITECTURES: frozenset[str] = frozenset(
    {
        "alpha", "armv6", "armv7l", "armv7b", "aarch64", "cris", "i686", "ia64", "lm32", "m68k",
        "microblaze", "microblazeel", "mips", "mipsel", "mips64", "mips64el", "openrisc",
        "parisc", "parisc64", "ppc", "ppcle", "ppc64", "ppc64le", "ppcemb", "s390", "s390x",
        "sh4", "sh4eb", "sparc", "sparc64", "unicore32", "x86_64", "xtensa", "xtensaeb",
        "loongarch64", "riscv32", "riscv64",
    }
)  # fmt: skip

_ARCH_ALIASES: dict[str, str] = {
    "amd64": "x86_64",
    "x64": "x86_64",
    "x86-64": "x86_64",
    "x86_64": "x86_64",
    "em64t": "x86_64",
    "intel64": "x86_64",
    "i386": "i686",
    "i486": "i686",
    "i586": "i686",
    "x86": "i686",
    "x86_32": "i686",
    "ia32": "i686",
    "arm64": "aarch64",
    "armv8": "aarch64",
    "armv8l": "aarch64",
    "armv7": "armv7l",
    "armhf": "armv7l",
    "armv6l": "armv6",
    "ppc64el": "ppc64le",
    "powerpc": "ppc",
    "powerpc64": "ppc64",
    "powerpc64le": "ppc64le",
}

#: Win32_Processor.Architecture (Microsoft's documented codes) → canonical architecture.
WINDOWS_ARCHITECTURE_CODES: dict[int, str] = {
    0: "i686",
    1: "mips",
    2: "alpha",
    3: "ppc",
    5: "armv7l",
    6: "ia64",
    9: "x86_64",
    12: "aarch64",
}

#: CPU vendor names as libvirt's CPU map spells them (``cpu_map/x86_vendors.xml``: the name each
#: CPUID vendor string stands for), keyed by every spelling a hypervisor reports: the CPUID
#: vendor string itself (Windows' ``Win32_Processor.Manufacturer``, ``/proc/cpuinfo``'s
#: ``vendor_id``), the name (libvirt), and vSphere's ``cpuid.<vendor>`` feature key without its
#: prefix. Keys are lower case. The one table: add spellings here.
CPU_VENDORS: dict[str, str] = {
    "genuineintel": "Intel",
    "intel": "Intel",
    "authenticamd": "AMD",
    "amd": "AMD",
    "hygongenuine": "Hygon",
    "hygon": "Hygon",
}

HV_TYPES: frozenset[str] = frozenset(
    {
        "baremetal", "bhyve", "docker", "fake", "hyperv", "ironic", "kqemu", "kvm", "lxc", "lxd",
        "openvz", "parallels", "vz", "phyp", "qemu", "test", "uml", "vbox", "vmware", "xen",
        "zvm",
    }
)  # fmt: skip

_HV_TYPE_ALIASES: dict[str, str] = {
    "xapi": "xen",
    "xenapi": "xen",
    "libxl": "xen",
    "virtuozzo": "vz",
    "esx": "vmware",
    "esxi": "vmware",
    "vsphere": "vmware",
    "vmwareapi": "vmware",
    "hyper-v": "hyperv",
    "microsoft hyper-v": "hyperv",
    "virtualbox": "vbox",
}

VM_MODES: frozenset[str] = frozenset({"hvm", "xen", "exe", "uml"})

_VM_MODE_ALIASES: dict[str, str] = {
    "hv": "hvm",
    "baremetal": "hvm",
    "pv": "xen",
    "xenpv": "xen",
    "xenpvh": "xen",
    "linux": "xen",
}

#: CPU feature names as hypervisors spell them (libvirt/QEMU, /proc/cpuinfo, vSphere
#: featureCapability keys, Windows) → os-traits. The one table: add spellings here.
CPU_FEATURE_TRAITS: dict[str, str] = {
    # x86
    "mmx": os_traits.HW_CPU_X86_MMX,
    "sse": os_traits.HW_CPU_X86_SSE,
    "sse2": os_traits.HW_CPU_X86_SSE2,
    "pni": os_traits.HW_CPU_X86_SSE3,
    "sse3": os_traits.HW_CPU_X86_SSE3,
    "ssse3": os_traits.HW_CPU_X86_SSSE3,
    "sse4.1": os_traits.HW_CPU_X86_SSE41,
    "sse4_1": os_traits.HW_CPU_X86_SSE41,
    "sse41": os_traits.HW_CPU_X86_SSE41,
    "sse4.2": os_traits.HW_CPU_X86_SSE42,
    "sse4_2": os_traits.HW_CPU_X86_SSE42,
    "sse42": os_traits.HW_CPU_X86_SSE42,
    "sse4a": os_traits.HW_CPU_X86_SSE4A,
    "avx": os_traits.HW_CPU_X86_AVX,
    "avx2": os_traits.HW_CPU_X86_AVX2,
    "avx512f": os_traits.HW_CPU_X86_AVX512F,
    "avx512cd": os_traits.HW_CPU_X86_AVX512CD,
    "avx512pf": os_traits.HW_CPU_X86_AVX512PF,
    "avx512er": os_traits.HW_CPU_X86_AVX512ER,
    "avx512vl": os_traits.HW_CPU_X86_AVX512VL,
    "avx512bw": os_traits.HW_CPU_X86_AVX512BW,
    "avx512dq": os_traits.HW_CPU_X86_AVX512DQ,
    "avx512vnni": os_traits.HW_CPU_X86_AVX512VNNI,
    "avx512-vnni": os_traits.HW_CPU_X86_AVX512VNNI,
    "avx512vbmi": os_traits.HW_CPU_X86_AVX512VBMI,
    "avx512ifma": os_traits.HW_CPU_X86_AVX512IFMA,
    "avx512vbmi2": os_traits.HW_CPU_X86_AVX512VBMI2,
    "avx512bitalg": os_traits.HW_CPU_X86_AVX512BITALG,
    "vaes": os_traits.HW_CPU_X86_AVX512VAES,
    "gfni": os_traits.HW_CPU_X86_AVX512GFNI,
    "vpclmulqdq": os_traits.HW_CPU_X86_AVX512VPCLMULQDQ,
    "avx512-vpopcntdq": os_traits.HW_CPU_X86_AVX512VPOPCNTDQ,
    "avx512vpopcntdq": os_traits.HW_CPU_X86_AVX512VPOPCNTDQ,
    "abm": os_traits.HW_CPU_X86_ABM,
    "lzcnt": os_traits.HW_CPU_X86_ABM,
    "bmi1": os_traits.HW_CPU_X86_BMI,
    "bmi": os_traits.HW_CPU_X86_BMI,
    "bmi2": os_traits.HW_CPU_X86_BMI2,
    "tbm": os_traits.HW_CPU_X86_TBM,
    "aes": os_traits.HW_CPU_X86_AESNI,
    "aesni": os_traits.HW_CPU_X86_AESNI,
    "pclmuldq": os_traits.HW_CPU_X86_CLMUL,
    "pclmulqdq": os_traits.HW_CPU_X86_CLMUL,
    "clmul": os_traits.HW_CPU_X86_CLMUL,
    "fma": os_traits.HW_CPU_X86_FMA3,
    "fma3": os_traits.HW_CPU_X86_FMA3,
    "fma4": os_traits.HW_CPU_X86_FMA4,
    "f16c": os_traits.HW_CPU_X86_F16C,
    "xop": os_traits.HW_CPU_X86_XOP,
    "3dnow": os_traits.HW_CPU_X86_3DNOW,
    "sha-ni": os_traits.HW_CPU_X86_SHA,
    "sha_ni": os_traits.HW_CPU_X86_SHA,
    "sha": os_traits.HW_CPU_X86_SHA,
    "mpx": os_traits.HW_CPU_X86_MPX,
    "sgx": os_traits.HW_CPU_X86_SGX,
    "rtm": os_traits.HW_CPU_X86_TSX,
    "hle": os_traits.HW_CPU_X86_TSX,
    "vmx": os_traits.HW_CPU_X86_VMX,
    "svm": os_traits.HW_CPU_X86_SVM,
    "pdpe1gb": os_traits.HW_CPU_X86_PDPE1GB,
    "stibp": os_traits.HW_CPU_X86_STIBP,
    "amx-bf16": os_traits.HW_CPU_X86_AMXBF16,
    "amx-int8": os_traits.HW_CPU_X86_AMXINT8,
    "amx-tile": os_traits.HW_CPU_X86_AMXTILE,
    "ibpb": os_traits.HW_CPU_X86_AMD_IBPB,
    "amd-ssbd": os_traits.HW_CPU_X86_AMD_SSBD,
    "virt-ssbd": os_traits.HW_CPU_X86_AMD_VIRT_SSBD,
    "amd-no-ssb": os_traits.HW_CPU_X86_AMD_NO_SSB,
    "md-clear": os_traits.HW_CPU_X86_INTEL_MD_CLEAR,
    "mdclear": os_traits.HW_CPU_X86_INTEL_MD_CLEAR,
    "pcid": os_traits.HW_CPU_X86_INTEL_PCID,
    "spec-ctrl": os_traits.HW_CPU_X86_INTEL_SPEC_CTRL,
    "ssbd": os_traits.HW_CPU_X86_INTEL_SSBD,
    "ht": os_traits.HW_CPU_HYPERTHREADING,
    # aarch64 (names as in /proc/cpuinfo and libvirt)
    "fp": os_traits.HW_CPU_AARCH64_FP,
    "asimd": os_traits.HW_CPU_AARCH64_ASIMD,
    "evtstrm": os_traits.HW_CPU_AARCH64_EVTSTRM,
    "pmull": os_traits.HW_CPU_AARCH64_PMULL,
    "sha1": os_traits.HW_CPU_AARCH64_SHA1,
    "sha2": os_traits.HW_CPU_AARCH64_SHA2,
    "crc32": os_traits.HW_CPU_AARCH64_CRC32,
    "fphp": os_traits.HW_CPU_AARCH64_FPHP,
    "asimdhp": os_traits.HW_CPU_AARCH64_ASIMDHP,
    "asimdrdm": os_traits.HW_CPU_AARCH64_ASIMDRDM,
    "atomics": os_traits.HW_CPU_AARCH64_ATOMICS,
    "jscvt": os_traits.HW_CPU_AARCH64_JSCVT,
    "fcma": os_traits.HW_CPU_AARCH64_FCMA,
    "lrcpc": os_traits.HW_CPU_AARCH64_LRCPC,
    "dcpop": os_traits.HW_CPU_AARCH64_DCPOP,
    "sha3": os_traits.HW_CPU_AARCH64_SHA3,
    "sm3": os_traits.HW_CPU_AARCH64_SM3,
    "sm4": os_traits.HW_CPU_AARCH64_SM4,
    "asimddp": os_traits.HW_CPU_AARCH64_ASIMDDP,
    "sha512": os_traits.HW_CPU_AARCH64_SHA512,
    "sve": os_traits.HW_CPU_AARCH64_SVE,
    "cpuid": os_traits.HW_CPU_AARCH64_CPUID,
    # Windows: IsProcessorFeaturePresent's PF_* names (processthreadsapi.h; learn.microsoft.com
    # "IsProcessorFeaturePresent function"). PF_NX_ENABLED, PF_SECOND_LEVEL_ADDRESS_TRANSLATION,
    # PF_VIRT_FIRMWARE_ENABLED, PF_RDRAND_INSTRUCTION_AVAILABLE, ... have no os-trait and stay raw.
    "pf_mmx_instructions_available": os_traits.HW_CPU_X86_MMX,
    "pf_xmmi_instructions_available": os_traits.HW_CPU_X86_SSE,
    "pf_xmmi64_instructions_available": os_traits.HW_CPU_X86_SSE2,
    "pf_3dnow_instructions_available": os_traits.HW_CPU_X86_3DNOW,
    "pf_sse3_instructions_available": os_traits.HW_CPU_X86_SSE3,
    "pf_ssse3_instructions_available": os_traits.HW_CPU_X86_SSSE3,
    "pf_sse4_1_instructions_available": os_traits.HW_CPU_X86_SSE41,
    "pf_sse4_2_instructions_available": os_traits.HW_CPU_X86_SSE42,
    "pf_avx_instructions_available": os_traits.HW_CPU_X86_AVX,
    "pf_avx2_instructions_available": os_traits.HW_CPU_X86_AVX2,
    "pf_avx512f_instructions_available": os_traits.HW_CPU_X86_AVX512F,
    "pf_arm_neon_instructions_available": os_traits.HW_CPU_AARCH64_ASIMD,
    "pf_arm_v8_crc32_instructions_available": os_traits.HW_CPU_AARCH64_CRC32,
    "pf_arm_v81_atomic_instructions_available": os_traits.HW_CPU_AARCH64_ATOMICS,
    "pf_arm_v82_dp_instructions_available": os_traits.HW_CPU_AARCH64_ASIMDDP,
    "pf_arm_v83_jscvt_instructions_available": os_traits.HW_CPU_AARCH64_JSCVT,
    "pf_arm_v83_lrcpc_instructions_available": os_traits.HW_CPU_AARCH64_LRCPC,
    "pf_arm_sve_instructions_available": os_traits.HW_CPU_AARCH64_SVE,
}

#: Feature names that stand for several of the names above: Windows reports the Armv8 crypto
#: extension (AES, PMULL, SHA1, SHA2) as one flag.
_FEATURE_BUNDLES: dict[str, tuple[str, ...]] = {
    "pf_arm_v8_crypto_instructions_available": ("aes", "pmull", "sha1", "sha2"),
}

# Names that mean different things per architecture ("aes" on aarch64 is not AES-NI).
_AARCH64_OVERRIDES: dict[str, str] = {"aes": os_traits.HW_CPU_AARCH64_AES}
_AARCH64_ONLY = frozenset(
    {"fp", "asimd", "evtstrm", "pmull", "sha1", "sha2", "crc32", "fphp", "asimdhp", "asimdrdm",
     "atomics", "jscvt", "fcma", "lrcpc", "dcpop", "sha3", "sm3", "sm4", "asimddp", "sha512",
     "sve", "cpuid"}
    | {name for name in CPU_FEATURE_TRAITS if name.startswith("pf_arm_")}
    | set(_FEATURE_BUNDLES)
)  # fmt: skip

_KNOWN_TRAITS: frozenset[str] = frozenset(os_traits.get_traits())


def _clean(value: object) -> str:
    return str(value).strip().lower()


def canonical_arch(value: object) -> tuple[str, bool]:
    """Canonical architecture name for ``value``; ``known`` is False for unknown names."""
    raw = _clean(value)
    name = _ARCH_ALIASES.get(raw, raw)
    return name, name in ARCHITECTURES


def windows_arch(code: object) -> tuple[str, bool]:
    """Architecture for a Win32_Processor.Architecture code (an int or a numeric string)."""
    try:
        number = int(str(code).strip())
    except ValueError:
        return _clean(code), False
    name = WINDOWS_ARCHITECTURE_CODES.get(number)
    if name is None:
        return f"win32-arch-{number}", False
    return name, True


def canonical_cpu_vendor(value: object) -> tuple[str, bool]:
    """The vendor name for a CPUID vendor string or a vendor name (``GenuineIntel`` → ``Intel``);
    an unknown vendor (an Arm licensee's name, say) is returned stripped, as given."""
    raw = str(value).strip()
    name = CPU_VENDORS.get(raw.lower())
    return (name, True) if name else (raw, False)


def canonical_hv_type(value: object) -> tuple[str, bool]:
    """Canonical hypervisor type for ``value``; ``known`` is False for unknown names."""
    raw = _clean(value)
    name = _HV_TYPE_ALIASES.get(raw, raw)
    return name, name in HV_TYPES


def canonical_vm_mode(value: object) -> tuple[str, bool]:
    """Canonical VM mode for ``value``; ``known`` is False for unknown names."""
    raw = _clean(value)
    name = _VM_MODE_ALIASES.get(raw, raw)
    return name, name in VM_MODES


def arch_trait(arch: str) -> str | None:
    """The HW_ARCH_* trait of a canonical architecture, if os-traits has one."""
    trait = "HW_ARCH_" + arch.upper()
    if arch == "armv7l":
        trait = "HW_ARCH_ARMV7"
    return trait if trait in _KNOWN_TRAITS else None


def cpu_feature_traits(features: Iterable[str], arch: str) -> tuple[list[str], list[str]]:
    """Map CPU feature names to os-traits for ``arch``.

    Returns ``(traits, unmapped)``: sorted unique traits, and the feature names the table does
    not know (kept by the caller as raw features; not every CPU flag has a trait).
    """
    traits: set[str] = set()
    unmapped: list[str] = []
    is_arm = arch == "aarch64"
    for feature in features:
        name = _clean(feature)
        if is_arm and name in _FEATURE_BUNDLES:
            traits.update(
                _AARCH64_OVERRIDES.get(n) or CPU_FEATURE_TRAITS[n] for n in _FEATURE_BUNDLES[name]
            )
            continue
        trait: str | None
        if is_arm:
            trait = _AARCH64_OVERRIDES.get(name) or CPU_FEATURE_TRAITS.get(name)
        else:
            trait = None if name in _AARCH64_ONLY else CPU_FEATURE_TRAITS.get(name)
        if trait is None:
            unmapped.append(str(feature))
        else:
            traits.add(trait)
    return sorted(traits), unmapped


def is_known_trait(name: str) -> bool:
    """True for os-traits standard names and CUSTOM_* traits."""
    return name in _KNOWN_TRAITS or name.startswith("CUSTOM_")
