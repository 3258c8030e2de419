"""Against a real libvirtd with QEMU (``qemu:///system``) and a tiny running guest.

The daemon is reused when one answers, else started by :mod:`libvirtd_daemon` and stopped at
the end. The guest is transient: destroyed at the end, it leaves nothing defined.
"""

from __future__ import annotations

import logging
import re
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

libvirt = pytest.importorskip("libvirt")

import libvirtd_daemon  # noqa: E402

from collectors.libvirt import LibvirtCollector  # noqa: E402
from collectors.libvirt._build import normalise_saved  # noqa: E402
from resmon.contract import CollectorInfo, HostReport, Target  # noqa: E402

pytestmark = pytest.mark.libvirtd

KIB, MIB = 1024, 1024**2
HAS_KVM = Path("/dev/kvm").exists()


@pytest.fixture(scope="module")
def libvirtd() -> Iterator[str]:
    with libvirtd_daemon.running_or_skip() as daemon:
        yield daemon.uri


@pytest.fixture(scope="module")
def guest(libvirtd: str) -> Iterator[dict[str, Any]]:
    """A 64 MiB, 1 vCPU guest with no disk (KVM when /dev/kvm exists, else TCG)."""
    conn = libvirt.open(libvirtd)
    dom_type = "kvm" if HAS_KVM else "qemu"
    name = f"resmon-test-{uuid.uuid4().hex[:8]}"
    xml = f"""<domain type='{dom_type}'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <memballoon model='none'/>
  </devices>
</domain>"""
    dom = conn.createXML(xml, 0)  # transient: gone once destroyed
    try:
        yield {"name": name, "uuid": dom.UUIDString(), "type": dom_type}
    finally:
        try:
            dom.destroy()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def dump_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("libvirt-dump")


@pytest.fixture(scope="module")
def report(libvirtd: str, guest: dict[str, Any], dump_dir: Path) -> HostReport:
    # One collection for the whole module: the first one on a connection asks for every domain
    # capabilities document, which a QEMU libvirtd answers slowly.
    target = Target(
        name="system", collector="libvirt", url=libvirtd, timeout_s=120, dump_native_dir=dump_dir
    )
    with LibvirtCollector.from_target(target, logger=logging.getLogger("tests")) as collector:
        reports = collector.collect()
        again = collector.collect()  # cached capabilities: same host, same instances
    assert [r.identity.host_id for r in reports] == [r.identity.host_id for r in again]
    assert again[0].supported_instances == reports[0].supported_instances
    return reports[0]


def virsh(libvirtd: str, *args: str) -> str:
    return subprocess.run(
        ["virsh", "-c", libvirtd, *args], check=True, capture_output=True, text=True, timeout=120
    ).stdout


def test_guest_shows_as_used(report: HostReport, guest: dict[str, Any]) -> None:
    ours = [i for i in report.running_instances.instances if i.instance_id == guest["uuid"]]
    assert len(ours) == 1
    assert (ours[0].name, ours[0].vcpus, ours[0].memory_bytes) == (guest["name"], 1, 64 * MIB)
    assert ours[0].state == "running"
    vcpu, mem = report.inventory("VCPU"), report.inventory("MEMORY_MB")
    assert vcpu is not None and vcpu.used == report.running_instances.vcpus >= 1
    assert mem is not None and mem.used == report.running_instances.memory_bytes // MIB >= 64


def test_supported_instances(report: HostReport) -> None:
    keys = {si.key for si in report.supported_instances}
    assert "x86_64/qemu/hvm" in keys
    if HAS_KVM:
        assert "x86_64/kvm/hvm" in keys
        assert report.hypervisor is not None and report.hypervisor.hv_type == "kvm"
    x86 = next(si for si in report.supported_instances if si.key == "x86_64/qemu/hvm")
    assert x86.max_vcpus and x86.max_vcpus >= 1  # from domain capabilities
    assert "bios" in x86.firmware and x86.machine_types


def test_counts_agree_with_virsh_nodeinfo(report: HostReport, libvirtd: str) -> None:
    info = dict(
        (key.strip(), value.strip())
        for key, _, value in (
            line.partition(":") for line in virsh(libvirtd, "nodeinfo").splitlines()
        )
        if value
    )
    cpu, memory = report.cpu, report.memory
    assert cpu is not None and memory is not None
    assert cpu.total_cpus == int(info["CPU(s)"])
    assert cpu.cpu_mhz == int(info["CPU frequency"].split()[0])
    assert cpu.threads_per_core == int(info["Thread(s) per core"])
    assert cpu.cores_per_socket == int(info["Core(s) per socket"])
    assert len(report.numa_cells) == int(info["NUMA cell(s)"])
    assert memory.total_bytes == int(info["Memory size"].split()[0]) * KIB
    assert report.inventory("VCPU").total == cpu.online_cpus  # type: ignore[union-attr]


def test_identity_and_version(report: HostReport, libvirtd: str) -> None:
    caps = virsh(libvirtd, "capabilities")
    match = re.search(r"<uuid>([0-9a-f-]+)</uuid>", caps)
    assert match and report.identity.host_id == match.group(1)
    version = virsh(libvirtd, "version")
    hv = re.search(r"Running hypervisor: QEMU (\d+\.\d+\.\d+)", version)
    assert hv and report.hypervisor is not None and report.hypervisor.version == hv.group(1)
    assert "HW_ARCH_X86_64" in report.traits and "COMPUTE_NODE" in report.traits


def test_dumped_xml_replays_to_the_same_instances(report: HostReport, dump_dir: Path) -> None:
    (caps,) = dump_dir.glob("libvirt-system-*-capabilities.xml")
    domcaps = sorted(dump_dir.glob("libvirt-system-*-domcapabilities-*.xml"))
    assert any(p.name.endswith("-domcapabilities-x86_64-qemu.xml") for p in domcaps)
    (offline,) = normalise_saved(
        (str(caps), caps.read_bytes()),
        [(str(p), p.read_bytes()) for p in domcaps],
        target="system",
        collector=CollectorInfo(name="libvirt", version="x"),
        collected_at=datetime.now(UTC),
    )
    assert offline.supported_instances == report.supported_instances
    # offline has no baseline CPU expansion: its traits are a subset of the live ones
    assert set(offline.traits) - {"COMPUTE_NODE"} <= set(report.traits)
