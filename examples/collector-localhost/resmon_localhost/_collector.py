"""The localhost collector: one report for the Linux machine, read from /proc and /sys.

Target: ``url = "localhost"``; option ``root`` (default ``/``) reads another tree laid out like
/proc and /sys instead, e.g. a copy taken from another machine or a test fixture.

What is read, and from where:

| fact | file |
|---|---|
| arch, kernel release, hostname | /proc/sys/kernel/{arch,osrelease,hostname} |
| CPU vendor, model, flags, MHz | /proc/cpuinfo (first processor), cpu0/cpufreq/base_frequency |
| CPUs, topology | /sys/devices/system/cpu/online, cpuN/topology/{physical_package_id,core_id} |
| memory | /proc/meminfo (MemTotal, MemAvailable) |
| NUMA cells and huge pages | /sys/devices/system/node/nodeN/{cpulist,meminfo,hugepages/} |
| host id | /sys/class/dmi/id/product_uuid (SMBIOS UUID), else /etc/machine-id |
| KVM | /dev/kvm exists: kvm and qemu (TCG) guests, else qemu only |
| running guests | QEMU processes: /proc/PID/cmdline (-uuid, -name, -smp, -m) |

The report holds facts only: inventories carry totals and what running guests use; allocation
ratios and operator reservations are applied by resmon's core.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Self

from resmon.contract import (
    Capability,
    Collector,
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
    RunningInstances,
    SupportedInstance,
    Target,
    TargetUnreachable,
    UnsupportedTarget,
    units,
    vocabulary,
)

__all__ = ["LocalhostCollector"]

Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]

#: /proc/cpuinfo vendor_id → the vendor name libvirt and vSphere report.
_VENDORS = {"GenuineIntel": "Intel", "AuthenticAMD": "AMD", "HygonGenuine": "Hygon"}
_QEMU = re.compile(r"^(qemu-system-[\w-]+|qemu-kvm)$")
_QEMU_OPTIONS = frozenset({"-name", "-uuid", "-smp", "-m"})
_QEMU_SIZE = re.compile(r"^(\d+)([kKmMgGtT]?)[bB]?$")
_SIZE_UNITS = {"": units.MIB, "k": units.KIB, "m": units.MIB, "g": units.GIB, "t": 1024 * units.GIB}


def cpu_list(text: str) -> list[int]:
    """A kernel CPU list ("0-7,16-23") as ids."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if part:
            first, _, last = part.partition("-")
            cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


def kib_fields(text: str) -> dict[str, int]:
    """``Key: N kB`` lines (/proc/meminfo, nodeN/meminfo's ``Node 0 Key: N kB``) as KiB."""
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            fields[key.split()[-1]] = int(value.split()[0])
    return fields


def qemu_guest(pid: str, argv: list[str]) -> InstanceAllocation | None:
    """A running QEMU guest from its command line, or None for any other process."""
    if not argv or not _QEMU.match(os.path.basename(argv[0])):
        return None
    args = {arg: argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg in _QEMU_OPTIONS}
    name = args.get("-name", "").removeprefix("guest=").split(",")[0] or None
    # -smp 2,sockets=1 or -smp cpus=2,...; QEMU's default is 1 CPU.
    smp = args.get("-smp", "1").split(",")[0].removeprefix("cpus=")
    # -m 4096, -m 4G or -m size=4194304k; a bare number is MiB; QEMU's default is 128 MiB.
    size = _QEMU_SIZE.match(args.get("-m", "128").split(",")[0].removeprefix("size="))
    if size is None or not smp.isdigit():
        raise InvalidNativeData(f"QEMU process {pid}: cannot read -smp/-m from {argv[1:]}")
    return InstanceAllocation(
        instance_id=args.get("-uuid") or name or f"qemu-pid-{pid}",
        name=name,
        vcpus=int(smp),
        memory_bytes=int(size.group(1)) * _SIZE_UNITS[size.group(2).lower()],
        state="running",
    )


class LocalhostCollector(Collector):
    """The Linux machine resmon runs on (or the tree under the ``root`` option)."""

    name = "localhost"
    version = "1.0.0"
    contract_version = "1.0"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.NUMA,
            Capability.HUGE_PAGES,
            Capability.CPU_FEATURES,
            Capability.SUPPORTED_INSTANCES,
            Capability.RUNNING_INSTANCES,
            Capability.OBSERVED_USAGE,
        }
    )

    def __init__(self, target: Target, root: Path) -> None:
        self.target = target
        self.root = root

    @classmethod
    def from_target(cls, target: Target, *, logger: Logger) -> Self:
        unknown = sorted(set(target.options) - {"root"})
        if unknown:
            raise UnsupportedTarget(
                f"unknown localhost options: {', '.join(unknown)} (known: root)", target=target.name
            )
        if target.url.rstrip("/") not in ("localhost", "localhost:"):
            raise UnsupportedTarget(
                f"url must be 'localhost', not {target.url!r}", target=target.name
            )
        root = target.options.get("root", "/")
        if not isinstance(root, str) or not root:
            raise UnsupportedTarget("option root must be a directory path", target=target.name)
        return cls(target, Path(root))

    def collect(self) -> list[HostReport]:
        if not (self.root / "proc/meminfo").is_file():
            raise TargetUnreachable(
                f"{self.root} has no proc/meminfo: not a Linux /proc and /sys tree",
                target=self.target.name,
            )
        try:
            return [self._host()]
        except OSError as exc:
            raise InvalidNativeData(
                f"cannot read {exc.filename}: {exc.strerror}", target=self.target.name
            ) from exc
        except ValueError as exc:  # malformed numbers, and schema violations (pydantic)
            raise InvalidNativeData(f"{self.root}: {exc}", target=self.target.name) from exc

    def close(self) -> None:
        pass

    # -- reading ----------------------------------------------------------------------------

    def _read(self, path: str) -> str:
        return (self.root / path).read_text()

    def _read_optional(self, path: str) -> str | None:
        try:
            return self._read(path).strip()
        except (FileNotFoundError, PermissionError):  # product_uuid is root-only, cpufreq optional
            return None

    def _host(self) -> HostReport:
        meminfo = kib_fields(self._read("proc/meminfo"))
        arch, known = vocabulary.canonical_arch(
            self._read_optional("proc/sys/kernel/arch") or os.uname().machine
        )
        cpu = self._cpu(arch)
        total = units.kib_to_bytes(meminfo["MemTotal"])
        available = units.kib_to_bytes(meminfo.get("MemAvailable", meminfo.get("MemFree", 0)))
        guests = self._guests()
        running = RunningInstances.from_instances(guests)
        vcpus = cpu.online_cpus or 0
        memory_mib = units.bytes_to_mib_floor(total)
        kvm = (self.root / "dev/kvm").exists()
        hv_types = ["kvm", "qemu"] if kvm else ["qemu"]
        return HostReport(
            schema_version="1.0",  # the schema of contract 1.0, which this collector implements
            identity=HostIdentity(
                host_id=self._host_id(),
                target=self.target.name,
                hostname=self._read_optional("proc/sys/kernel/hostname"),
            ),
            hypervisor=Hypervisor(
                hv_type=hv_types[0],
                product="Linux KVM" if kvm else "QEMU (TCG)",
                version=self._read_optional("proc/sys/kernel/osrelease") or "",
            ),
            cpu=cpu,
            memory=Memory(total_bytes=total, free_bytes=available, used_bytes=total - available),
            numa_cells=self._numa_cells(),
            inventories=[
                Inventory(resource_class="VCPU", total=vcpus, max_unit=vcpus, used=running.vcpus),
                Inventory(
                    resource_class="MEMORY_MB",
                    total=memory_mib,
                    max_unit=memory_mib,
                    used=units.bytes_to_mib_floor(running.memory_bytes),
                ),
            ],
            traits=[*cpu.traits, *[t for t in [vocabulary.arch_trait(arch)] if t]],
            supported_instances=[
                SupportedInstance(arch=arch, hv_type=hv, vm_mode="hvm") for hv in hv_types
            ],
            running_instances=running,
            collected_at=datetime.now(UTC),
            collector=CollectorInfo(name=self.name, version=self.version),
            anomalies=[],
        )

    def _cpu(self, arch: str) -> Cpu:
        first = self._read("proc/cpuinfo").split("\n\n")[0]
        pairs = (line.partition(":") for line in first.splitlines())
        info = {key.strip(): value.strip() for key, _, value in pairs}
        features = (info.get("flags") or info.get("Features") or "").split()
        online = cpu_list(self._read("sys/devices/system/cpu/online"))
        cores = set()
        for n in online:
            topology = f"sys/devices/system/cpu/cpu{n}/topology"
            package = int(self._read(f"{topology}/physical_package_id"))
            cores.add((package, int(self._read(f"{topology}/core_id"))))
        sockets = len({package for package, _ in cores})
        # The nominal frequency (intel_pstate's base_frequency), else the highest, else the
        # current one; cpuinfo_max_freq includes turbo where base_frequency exists.
        cpufreq = "sys/devices/system/cpu/cpu0/cpufreq"
        khz = self._read_optional(f"{cpufreq}/base_frequency") or self._read_optional(
            f"{cpufreq}/cpuinfo_max_freq"
        )
        mhz = int(khz) // 1000 if khz else round(float(info.get("cpu MHz", 0)))
        # The "ht" flag is the CPUID HTT bit, set on most CPUs without SMT: count threads instead.
        threads = len(online) // len(cores)
        traits, _unmapped = vocabulary.cpu_feature_traits([f for f in features if f != "ht"], arch)
        if threads > 1:
            traits.append("HW_CPU_HYPERTHREADING")
        present = self._read_optional("sys/devices/system/cpu/present")
        return Cpu(
            arch=arch,
            vendor=_VENDORS.get(info.get("vendor_id", ""), info.get("vendor_id")),
            model=info.get("model name"),
            sockets=sockets,
            cores_per_socket=len(cores) // sockets,
            threads_per_core=threads,
            total_cpus=len(cpu_list(present)) if present else len(online),
            online_cpus=len(online),
            cpu_mhz=mhz or None,
            features=features,
            traits=traits,
        )

    def _numa_cells(self) -> list[NumaCell]:
        cells = []
        nodes = self.root / "sys/devices/system/node"
        for node in sorted(nodes.glob("node[0-9]*"), key=lambda p: int(p.name[4:])):
            memory = kib_fields((node / "meminfo").read_text())
            pages = []
            for size_dir in sorted((node / "hugepages").glob("hugepages-*kB")):
                size_kib = int(size_dir.name.removeprefix("hugepages-").removesuffix("kB"))
                pages.append(
                    HugePages(
                        page_size_bytes=units.kib_to_bytes(size_kib),
                        total=int((size_dir / "nr_hugepages").read_text()),
                        free=int((size_dir / "free_hugepages").read_text()),
                    )
                )
            cells.append(
                NumaCell(
                    cell_id=int(node.name[4:]),
                    cpus=cpu_list((node / "cpulist").read_text()),
                    memory_bytes=units.kib_to_bytes(memory["MemTotal"]),
                    free_memory_bytes=units.kib_to_bytes(memory["MemFree"]),
                    huge_pages=pages,
                )
            )
        return cells

    def _host_id(self) -> str:
        for path in ("sys/class/dmi/id/product_uuid", "etc/machine-id"):
            text = self._read_optional(path)
            if text:
                return str(uuid.UUID(text))
        raise InvalidNativeData(
            f"{self.root}: neither sys/class/dmi/id/product_uuid nor etc/machine-id is readable",
            target=self.target.name,
        )

    def _guests(self) -> list[InstanceAllocation]:
        guests = []
        for proc in (self.root / "proc").glob("[0-9]*"):
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue  # the process ended while we listed /proc
            guest = qemu_guest(proc.name, [a.decode(errors="replace") for a in argv if a])
            if guest is not None:
                guests.append(guest)
        return sorted(guests, key=lambda g: g.instance_id)
