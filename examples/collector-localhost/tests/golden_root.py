"""The golden host (resmon.contract.testing.GOLDEN_HOST) as a /proc and /sys tree.

Every file is written in the format the kernel uses: proc(5) for /proc/meminfo, /proc/cpuinfo
and /proc/PID/cmdline; Documentation/ABI/stable/sysfs-devices-system-cpu and
Documentation/ABI/stable/sysfs-devices-node for /sys; QEMU command lines as libvirt 10 starts
guests. Flags that have no trait are there as on a real Haswell-EP, so that the collector has to
ignore them.
"""

from __future__ import annotations

from pathlib import Path

from resmon.contract.testing import GoldenHost

#: /proc/cpuinfo flags of this CPU that map to no trait.
_OTHER_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi "
    "fxsr ss tm pbe syscall nx rdtscp lm constant_tsc arch_perfmon rep_good nopl xtopology "
    "nonstop_tsc cpuid aperfmperf dtes64 monitor ds_cpl smx est tm2 cx16 xtpr pdcm dca x2apic "
    "movbe popcnt tsc_deadline_timer xsave rdrand lahf_lm epb fsgsbase tsc_adjust smep erms "
    "invpcid xsaveopt dtherm ida arat pln pts"
).split()


def _write(root: Path, path: str, text: str) -> None:
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)


def _cpuinfo(host: GoldenHost) -> str:
    flags = " ".join([*_OTHER_FLAGS[:20], *host.cpu_flags, *_OTHER_FLAGS[20:]])
    blocks = []
    for cpu in range(host.cpus):
        socket, core, _thread = host.cpu_of(cpu)
        blocks.append(
            f"processor\t: {cpu}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 63\n"
            f"model name\t: {host.model}\nstepping\t: 2\nmicrocode\t: 0x49\n"
            f"cpu MHz\t\t: 1199.951\ncache size\t: 20480 KB\nphysical id\t: {socket}\n"
            f"siblings\t: {host.cores_per_socket * host.threads_per_core}\ncore id\t\t: {core}\n"
            f"cpu cores\t: {host.cores_per_socket}\napicid\t\t: {cpu}\nfpu\t\t: yes\n"
            f"cpuid level\t: 15\nwp\t\t: yes\nflags\t\t: {flags}\nbogomips\t: 6399.92\n"
            "clflush size\t: 64\ncache_alignment\t: 64\n"
            "address sizes\t: 46 bits physical, 48 bits virtual\npower management:\n"
        )
    return "\n".join(blocks) + "\n"


def _qemu_cmdline(name: str, uuid: str, vcpus: int, memory_mib: int) -> bytes:
    argv = [
        "/usr/bin/qemu-system-x86_64", "-name", f"guest={name},debug-threads=on", "-S",
        "-object", '{"qom-type":"secret","id":"masterKey0","format":"raw"}',
        "-machine", "pc-q35-8.2,usb=off,dump-guest-core=off,memory-backend=pc.ram",
        "-accel", "kvm", "-cpu", "host,migratable=on", "-m", f"size={memory_mib * 1024}k",
        "-object", f'{{"qom-type":"memory-backend-ram","id":"pc.ram","size":{memory_mib << 20}}}',
        "-overcommit", "mem-lock=off", "-smp", f"{vcpus},sockets={vcpus},cores=1,threads=1",
        "-uuid", uuid, "-no-user-config", "-nodefaults", "-daemonize",
    ]  # fmt: skip
    return b"\0".join(a.encode() for a in argv) + b"\0"


def write_golden_root(root: Path, host: GoldenHost) -> Path:
    """Write the running golden host under ``root``; return ``root``."""
    mem_kib = host.memory_mib * 1024
    _write(
        root,
        "proc/meminfo",
        f"MemTotal:       {mem_kib} kB\nMemFree:        {mem_kib - 16777216} kB\n"
        f"MemAvailable:   {mem_kib - 14680064} kB\nBuffers:          524288 kB\n"
        "Cached:          2097152 kB\nSwapTotal:             0 kB\nHugePages_Total:       0\n"
        "HugePages_Free:        0\nHugepagesize:       2048 kB\nHugetlb:               0 kB\n",
    )
    _write(root, "proc/cpuinfo", _cpuinfo(host))
    _write(root, "proc/sys/kernel/arch", "x86_64\n")
    _write(root, "proc/sys/kernel/osrelease", "6.1.0-27-amd64\n")
    _write(root, "proc/sys/kernel/hostname", "golden\n")
    _write(root, "sys/class/dmi/id/product_uuid", f"{host.host_id}\n")
    _write(root, "dev/kvm", "")
    cpus = f"0-{host.cpus - 1}\n"
    for name in ("online", "present", "possible"):
        _write(root, f"sys/devices/system/cpu/{name}", cpus)
    for cpu in range(host.cpus):
        socket, core, _thread = host.cpu_of(cpu)
        first = cpu - cpu % host.threads_per_core
        topology = f"sys/devices/system/cpu/cpu{cpu}/topology"
        _write(root, f"{topology}/physical_package_id", f"{socket}\n")
        _write(root, f"{topology}/core_id", f"{core}\n")
        _write(root, f"{topology}/thread_siblings_list", f"{first}-{first + 1}\n")
    cpufreq = "sys/devices/system/cpu/cpu0/cpufreq"
    _write(root, f"{cpufreq}/base_frequency", f"{host.cpu_mhz * 1000}\n")
    _write(root, f"{cpufreq}/cpuinfo_max_freq", "3600000\n")
    for cell, first, last, mib in host.numa_cells:
        node = f"sys/devices/system/node/node{cell}"
        _write(root, f"{node}/cpulist", f"{first}-{last}\n")
        _write(
            root,
            f"{node}/meminfo",
            f"Node {cell} MemTotal:       {mib * 1024} kB\n"
            f"Node {cell} MemFree:        {mib * 1024 - 8388608} kB\n"
            f"Node {cell} MemUsed:        8388608 kB\n",
        )
        for size_kib in (2048, 1048576):
            pages = f"{node}/hugepages/hugepages-{size_kib}kB"
            _write(root, f"{pages}/nr_hugepages", "0\n")
            _write(root, f"{pages}/free_hugepages", "0\n")
    _write(root, "proc/1/cmdline", "/sbin/init\0")
    _write(root, "proc/812/cmdline", "/usr/sbin/libvirtd\0--timeout\0120\0")
    for pid, guest in enumerate(host.guests, start=4100):
        if guest.running:
            cmdline = _qemu_cmdline(guest.name, guest.instance_id, guest.vcpus, guest.memory_mib)
            (root / f"proc/{pid}").mkdir(parents=True)
            (root / f"proc/{pid}/cmdline").write_bytes(cmdline)
    return root
