"""The golden host: one machine every collector must describe the same way.

A collector's author describes this machine in the collector's native format (libvirt XML, a
vSphere dump, a Hyper-V JSON document, a /proc and /sys tree...), runs the collector on it, and
compares what comes out with :func:`golden_view` through :func:`equivalence_problems`. Differences
that must exist (the hypervisor type, what a hypervisor cannot report) are declared in a Markdown
table (:func:`parse_declared_differences`); any other difference is a bug of the collector.

The comparison is over a *view* of a report (:func:`report_view`): a flat mapping from field
names to JSON values, covering what schedulers rely on. Labels (hostnames, product strings, CPU
model names), observed figures and hypervisor-specific traits (firmware, buses) are left out.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from ._schema import HostReport, HostState, ProviderKind

__all__ = [
    "DEFAULT_POLICY",
    "GOLDEN_HOST",
    "VARIANTS",
    "DeclaredDifference",
    "GoldenGuest",
    "GoldenHost",
    "NOT_EXPRESSIBLE",
    "Variant",
    "equivalence_problems",
    "golden_view",
    "parse_declared_differences",
    "report_view",
]

Variant = Literal["running", "maintenance"]
#: ``running``: the host up with its three guests; ``maintenance``: the same host in
#: maintenance mode, its guests moved away (vSphere will not enter maintenance otherwise).
VARIANTS: Final[tuple[Variant, ...]] = ("running", "maintenance")
#: The declared value of the ``(variant)`` field for a collector whose hypervisor has no such
#: state, so that the variant cannot be described to it natively.
NOT_EXPRESSIBLE: Final = "not expressible"

_MIB = 1024 * 1024
_GIB = 1024 * _MIB


@dataclass(frozen=True)
class GoldenGuest:
    instance_id: str
    name: str
    vcpus: int
    memory_mib: int
    running: bool = True


@dataclass(frozen=True)
class GoldenHost:
    """The machine: two Intel Xeon E5-2667 v3 (Haswell, 8 cores, 2 threads per core, 3.2 GHz),
    128 GiB in two NUMA cells, a 100 GiB local disk with 40 GiB allocated, three running guests
    of 2 vCPU / 4 GiB and one stopped guest of 4 vCPU / 8 GiB."""

    host_id: str = "4c4c4544-0057-3810-8031-b4c04f4d3732"
    vendor: str = "Intel"
    model: str = "Intel(R) Xeon(R) CPU E5-2667 v3 @ 3.20GHz"
    #: The libvirt CPU model of this CPU (what ``virsh capabilities`` names it).
    libvirt_cpu_model: str = "Haswell-noTSX"
    sockets: int = 2
    cores_per_socket: int = 8
    threads_per_core: int = 2
    cpu_mhz: int = 3200
    #: Feature names as /proc/cpuinfo spells them; every collector maps its own spelling.
    cpu_flags: tuple[str, ...] = (
        "mmx", "sse", "sse2", "pni", "ssse3", "sse4_1", "sse4_2", "aes", "pclmulqdq", "avx",
        "avx2", "fma", "bmi1", "bmi2", "pcid", "f16c", "abm", "pdpe1gb", "vmx", "ht",
    )  # fmt: skip
    cpu_traits: tuple[str, ...] = (
        "HW_ARCH_X86_64", "HW_CPU_HYPERTHREADING", "HW_CPU_X86_ABM", "HW_CPU_X86_AESNI",
        "HW_CPU_X86_AVX", "HW_CPU_X86_AVX2", "HW_CPU_X86_BMI", "HW_CPU_X86_BMI2",
        "HW_CPU_X86_CLMUL", "HW_CPU_X86_F16C", "HW_CPU_X86_FMA3", "HW_CPU_X86_INTEL_PCID",
        "HW_CPU_X86_MMX", "HW_CPU_X86_PDPE1GB", "HW_CPU_X86_SSE", "HW_CPU_X86_SSE2",
        "HW_CPU_X86_SSE3", "HW_CPU_X86_SSE41", "HW_CPU_X86_SSE42", "HW_CPU_X86_SSSE3",
        "HW_CPU_X86_VMX",
    )  # fmt: skip
    memory_mib: int = 128 * 1024
    #: (cell id, first CPU, last CPU, memory MiB): Windows-style numbering, node after node.
    numa_cells: tuple[tuple[int, int, int, int], ...] = ((0, 0, 15, 65536), (1, 16, 31, 65536))
    disk_gib: int = 100
    disk_used_gib: int = 40
    guests: tuple[GoldenGuest, ...] = (
        GoldenGuest("5b1a7c52-3e0f-4c1d-9a8b-0d2e4f6a8c01", "web-1", 2, 4096),
        GoldenGuest("5b1a7c52-3e0f-4c1d-9a8b-0d2e4f6a8c02", "web-2", 2, 4096),
        GoldenGuest("5b1a7c52-3e0f-4c1d-9a8b-0d2e4f6a8c03", "db-1", 2, 4096),
        GoldenGuest("5b1a7c52-3e0f-4c1d-9a8b-0d2e4f6a8c04", "build-1", 4, 8192, running=False),
    )
    supported_instances: tuple[str, ...] = ("x86_64/kvm/hvm", "x86_64/qemu/hvm")
    hv_type: str = "kvm"

    @property
    def cpus(self) -> int:
        return self.sockets * self.cores_per_socket * self.threads_per_core

    @property
    def memory_bytes(self) -> int:
        return self.memory_mib * _MIB

    def cpu_of(self, cpu: int) -> tuple[int, int, int]:
        """(socket, core in socket, thread) of a logical CPU: threads of a core are adjacent."""
        per_socket = self.cores_per_socket * self.threads_per_core
        return cpu // per_socket, cpu % per_socket // self.threads_per_core, cpu % 2

    def guests_in(self, variant: Variant) -> tuple[GoldenGuest, ...]:
        """The guests the host holds in a variant (in maintenance, its guests moved away)."""
        return self.guests if variant == "running" else ()


GOLDEN_HOST: Final = GoldenHost()


def _cells(cells: Sequence[tuple[int, Sequence[int], int | None]]) -> list[dict[str, object]]:
    return [
        {"cell_id": cid, "cpus": _cpu_ranges(cpus), "memory_bytes": mem}
        for cid, cpus, mem in sorted(cells, key=lambda c: c[0])
    ]


def _cpu_ranges(cpus: Sequence[int]) -> str:
    """CPU ids as the kernel lists them: "0-15,32-47"."""
    parts: list[str] = []
    ids = sorted(cpus)
    start = prev = ids[0] if ids else 0
    for cpu in [*ids[1:], None]:
        if cpu is not None and cpu == prev + 1:
            prev = cpu
            continue
        parts.append(f"{start}-{prev}" if prev != start else str(start))
        if cpu is not None:
            start = prev = cpu
    return ",".join(parts) if ids else ""


#: Nova's defaults, which the core applies unless the operator says otherwise:
#: resource class → (allocation ratio, operator reservation).
DEFAULT_POLICY: Final[Mapping[str, tuple[float, int]]] = {
    "VCPU": (4.0, 0),
    "MEMORY_MB": (1.0, 512),
    "DISK_GB": (1.0, 0),
}


def _inventory_view(
    prefix: str, *, total: int, hypervisor_reserved: int, used: int, max_unit: int
) -> dict[str, object]:
    return {
        f"{prefix}.total": total,
        f"{prefix}.hypervisor_reserved": hypervisor_reserved,
        f"{prefix}.min_unit": 1,
        f"{prefix}.max_unit": max_unit,
        f"{prefix}.step_size": 1,
        f"{prefix}.used": used,
    }


def golden_view(
    variant: Variant, host: GoldenHost = GOLDEN_HOST, *, after_policy: bool = False
) -> dict[str, object]:
    """What :func:`report_view` of a collector's report of the golden host must give.

    These are the facts a collector reports: ``hypervisor_reserved`` is what the hypervisor
    itself holds back (nothing on the golden host), ``used`` what the running guests are
    allocated. With ``after_policy``, also the final ``reserved`` and ``allocation_ratio`` once
    the core has applied Nova's default policy (:data:`DEFAULT_POLICY`); a host that is not up
    then has ``reserved`` = ``total``.
    """
    guests = host.guests_in(variant)
    up = variant == "running"
    traits = sorted([*host.cpu_traits, *([] if up else ["COMPUTE_STATUS_DISABLED"])])
    view: dict[str, object] = {
        "provider_kind": ProviderKind.COMPUTE_HOST.value,
        "state": (HostState.UP if up else HostState.MAINTENANCE).value,
        "identity.host_id": host.host_id,
        "hypervisor.hv_type": host.hv_type,
        "cpu.arch": "x86_64",
        "cpu.vendor": host.vendor,
        "cpu.sockets": host.sockets,
        "cpu.cores_per_socket": host.cores_per_socket,
        "cpu.threads_per_core": host.threads_per_core,
        "cpu.total_cpus": host.cpus,
        "cpu.online_cpus": host.cpus,
        "cpu.cpu_mhz": host.cpu_mhz,
        "memory.total_bytes": host.memory_bytes,
        "numa_cells": _cells(
            [(cid, range(first, last + 1), mib * _MIB) for cid, first, last, mib in host.numa_cells]
        ),
        "traits": traits,
        "supported_instances": sorted(host.supported_instances),
        "running_instances.count": len([g for g in guests if g.running]),
        "running_instances.vcpus": sum(g.vcpus for g in guests if g.running),
        "running_instances.memory_bytes": sum(g.memory_mib * _MIB for g in guests if g.running),
        "running_instances.instances": sorted(
            (
                {
                    "instance_id": g.instance_id,
                    "name": g.name,
                    "vcpus": g.vcpus,
                    "memory_bytes": g.memory_mib * _MIB,
                    "state": "running",
                }
                for g in guests
                if g.running
            ),
            key=lambda i: str(i["instance_id"]),
        ),  # fmt: skip
    }
    running = [g for g in guests if g.running]
    view["inventories"] = ["DISK_GB", "MEMORY_MB", "VCPU"]
    view |= _inventory_view(
        "inventories.VCPU",
        total=host.cpus,
        hypervisor_reserved=0,
        used=sum(g.vcpus for g in running),
        max_unit=host.cpus,
    )
    view |= _inventory_view(
        "inventories.MEMORY_MB",
        total=host.memory_mib,
        hypervisor_reserved=0,
        used=sum(g.memory_mib for g in running),
        max_unit=host.memory_mib,
    )
    view |= _inventory_view(
        "inventories.DISK_GB",
        total=host.disk_gib,
        hypervisor_reserved=0,
        used=host.disk_used_gib,
        max_unit=host.disk_gib,
    )
    if after_policy:
        for rc, (ratio, operator_reserved) in DEFAULT_POLICY.items():
            total = view[f"inventories.{rc}.total"]
            view[f"inventories.{rc}.reserved"] = operator_reserved if up else total
            view[f"inventories.{rc}.allocation_ratio"] = ratio
    return view


def _hypervisor_reserved(report: HostReport, resource_class: str, after_policy: bool) -> int:
    """What the hypervisor holds back: schema 1.1 has its own field; a 1.0 collector reports it
    as ``reserved``, which the core's policy moves into ``hypervisor_reserved``."""
    inv = report.inventory(resource_class)
    assert inv is not None
    if report.schema_version == "1.0" and not after_policy:
        return inv.reserved
    return inv.hypervisor_reserved


def report_view(report: HostReport, *, after_policy: bool = False) -> dict[str, object]:
    """The fields of a compute-host report the equivalence check compares, as JSON values;
    with ``after_policy`` (a report the core's policy was applied to), also each inventory's
    final ``reserved`` and ``allocation_ratio``."""
    cpu, memory, running = report.cpu, report.memory, report.running_instances
    view: dict[str, object] = {
        "provider_kind": report.provider_kind.value,
        "state": report.state.value,
        "identity.host_id": report.identity.host_id,
        "hypervisor.hv_type": report.hypervisor.hv_type if report.hypervisor else None,
        "cpu.arch": cpu.arch if cpu else None,
        "cpu.vendor": cpu.vendor if cpu else None,
        "cpu.sockets": cpu.sockets if cpu else None,
        "cpu.cores_per_socket": cpu.cores_per_socket if cpu else None,
        "cpu.threads_per_core": cpu.threads_per_core if cpu else None,
        "cpu.total_cpus": cpu.total_cpus if cpu else None,
        "cpu.online_cpus": cpu.online_cpus if cpu else None,
        "cpu.cpu_mhz": cpu.cpu_mhz if cpu else None,
        "memory.total_bytes": memory.total_bytes if memory else None,
        "numa_cells": _cells([(c.cell_id, c.cpus, c.memory_bytes) for c in report.numa_cells]),
        # Hardware traits and the status trait; COMPUTE_* traits other than status describe what
        # the hypervisor offers its guests (firmware, buses), which differs by design.
        "traits": sorted(
            t for t in report.traits if t.startswith("HW_") or t == "COMPUTE_STATUS_DISABLED"
        ),
        "supported_instances": sorted(si.key for si in report.supported_instances),
        "running_instances.count": running.count,
        "running_instances.vcpus": running.vcpus,
        "running_instances.memory_bytes": running.memory_bytes,
        "running_instances.instances": sorted(
            (
                {
                    "instance_id": i.instance_id,
                    "name": i.name,
                    "vcpus": i.vcpus,
                    "memory_bytes": i.memory_bytes,
                    "state": i.state,
                }
                for i in running.instances
            ),
            key=lambda i: str(i["instance_id"]),
        ),  # fmt: skip
    }
    view["inventories"] = sorted(inv.resource_class for inv in report.inventories)
    for rc in ("VCPU", "MEMORY_MB", "DISK_GB"):
        inv = report.inventory(rc)
        if inv is None:
            continue
        view |= _inventory_view(
            f"inventories.{rc}",
            total=inv.total,
            hypervisor_reserved=_hypervisor_reserved(report, rc, after_policy),
            used=inv.used,
            max_unit=inv.max_unit,
        )
        view[f"inventories.{rc}.min_unit"] = inv.min_unit
        view[f"inventories.{rc}.step_size"] = inv.step_size
        if after_policy:
            view[f"inventories.{rc}.reserved"] = inv.reserved
            view[f"inventories.{rc}.allocation_ratio"] = inv.allocation_ratio
    return view


@dataclass(frozen=True)
class DeclaredDifference:
    """One row of the table: ``collector`` reports ``value`` for ``field`` in ``variant``
    (``*`` for both), where the golden view says otherwise, for the reason given."""

    field: str
    collector: str
    variant: str
    value: object
    reason: str = dataclasses.field(compare=False)

    def applies(self, collector: str, variant: str) -> bool:
        return self.collector == collector and self.variant in ("*", variant)


_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*([\w.-]+)\s*\|\s*([\w*]+)\s*\|\s*`(.*?)`\s*\|(.*)\|\s*$")


def parse_declared_differences(markdown: str) -> list[DeclaredDifference]:
    """The rows of the declared-differences table in ``markdown``.

    A row is ``| `field` | collector | variant | `JSON value` | why |``; other lines are ignored,
    so the table can live in a document with prose around it. A row whose value is not JSON is an
    error, so that a typo cannot silently declare nothing.
    """
    rows = []
    for number, line in enumerate(markdown.splitlines(), 1):
        match = _ROW.match(line.strip())
        if match is None:
            continue
        name, collector, variant, raw, reason = match.groups()
        if variant not in (*VARIANTS, "*"):
            raise ValueError(f"line {number}: variant {variant!r} is not one of {VARIANTS} or *")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"line {number}: value `{raw}` is not JSON ({exc.msg})") from None
        rows.append(DeclaredDifference(name, collector, variant, value, reason.strip()))
    keys = [(r.field, r.collector, r.variant) for r in rows]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"declared more than once: {repeated}")
    return rows


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def equivalence_problems(
    view: Mapping[str, object] | None,
    *,
    collector: str,
    variant: Variant,
    declared: Sequence[DeclaredDifference],
    golden: Mapping[str, object] | None = None,
    after_policy: bool = False,
) -> list[str]:
    """Every way ``view`` differs from the golden view that the table does not declare, and
    every declared difference that did not occur (a stale row hides nothing, but misleads).

    ``view`` is None when the collector cannot be given this variant natively; the table must
    then declare the field ``(variant)`` as ``"not expressible"``.
    """
    rows = {r.field: r for r in declared if r.applies(collector, variant)}
    if view is None:
        row = rows.get("(variant)")
        if row is None or row.value != NOT_EXPRESSIBLE:
            return [f"{collector}/{variant}: no report, and the table does not declare "
                    f'`(variant)` as "{NOT_EXPRESSIBLE}"']  # fmt: skip
        return []
    expected = golden_view(variant, after_policy=after_policy) if golden is None else golden
    # A class the report lacks is one difference (``inventories``), not one per field.
    absent = set(_list(expected.get("inventories"))) - set(_list(view.get("inventories")))
    problems = []
    for name in sorted(set(expected) | set(view) | set(rows) - {"(variant)"}):
        if name.count(".") == 2 and name.split(".")[1] in absent and name.startswith("inv"):
            continue
        want, got = expected.get(name), view.get(name)
        row = rows.get(name)
        if got == want:
            if row is not None:
                problems.append(
                    f"{collector}/{variant}: {name} equals the golden host's "
                    f"{json.dumps(want)}, but the table declares {json.dumps(row.value)}"
                )
        elif row is None:
            problems.append(
                f"{collector}/{variant}: {name} is {json.dumps(got)}, the golden host's is "
                f"{json.dumps(want)} (not a declared difference)"
            )
        elif row.value != got:
            problems.append(
                f"{collector}/{variant}: {name} is {json.dumps(got)}, the table declares "
                f"{json.dumps(row.value)}"
            )
    if "(variant)" in rows:
        problems.append(f"{collector}/{variant}: the table says this variant is not expressible")
    return problems
