"""The same host through every driver: the golden host (resmon.contract.testing.GOLDEN_HOST),
described natively to each collector, must read the same once the core has applied its policy,
apart from the differences declared in the one table of docs/consistency.md.

Native descriptions (all in this directory, see README.md): libvirt's test driver node XML plus
`virsh capabilities`, a vSphere dump in the format ``--dump-native`` writes (normalised by the
vmware collector's offline path), the Hyper-V script's JSON document, and for the example
collector the /proc and /sys tree its own tests write.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from resmon.contract import HostReport, Target
from resmon.contract.testing import GOLDEN_HOST, EquivalenceSuite, Variant
from resmon.policy import PolicyTable, TargetPolicy, apply_policy, resolve_policy
from resmon.validation import check_batch

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
DECLARED = (REPO_ROOT / "docs" / "consistency.md").read_text()
EXAMPLE = REPO_ROOT / "examples" / "collector-localhost"
MIB = 1024 * 1024
LOG = logging.getLogger("tests.equivalence")


def settle(reports: list[HostReport], policy: TargetPolicy | None = None) -> list[HostReport]:
    """What the core stores: the reports after the operator's policy (Nova's by default)."""
    settled, _anomalies = apply_policy(reports, policy or TargetPolicy.defaults())
    return settled


class InTreeEquivalence(EquivalenceSuite):
    """The kit's check after the core's policy, plus: the golden host is a healthy host, so
    neither the collector nor the core's invariants find anything odd in it."""

    declared_differences = DECLARED

    def apply_policy(self, reports: list[HostReport]) -> list[HostReport]:
        return settle(reports)

    def test_golden_host_raises_no_anomaly(self, tmp_path: Path) -> None:
        reports = self.golden_reports("running", tmp_path)
        assert reports is not None
        settled, policy_anomalies = apply_policy(reports, TargetPolicy.defaults())
        found = {r.identity.host_id: [a.code for a in r.anomalies] for r in settled}
        found |= {key[1]: [a.code for a in a_list] for key, a_list in check_batch(settled).items()}
        assert policy_anomalies == {} and all(not codes for codes in found.values()), found


# -- libvirt ---------------------------------------------------------------------------------


class GoldenLibvirtd:
    """libvirt's test driver opened on node.xml, answering as libvirtd's QEMU driver on the
    golden host where the test driver's answers are fixed whatever the node XML says: the driver
    type and version, the capabilities (an i686 test host), the CPU map (8 CPUs, 3 online) and the
    per-cell free memory and pages (it has no cells). Node info, guests and pools come from the
    node XML, read by the test driver."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def getType(self) -> str:  # noqa: N802 (libvirt-python's names)
        return "QEMU"

    def getVersion(self) -> int:  # noqa: N802
        return 8_002_000  # QEMU 8.2.0

    def getCapabilities(self) -> str:  # noqa: N802
        return (HERE / "libvirt" / "capabilities.xml").read_text()

    def getCPUMap(self, flags: int = 0) -> tuple[int, list[bool], int]:  # noqa: N802
        return GOLDEN_HOST.cpus, [True] * GOLDEN_HOST.cpus, GOLDEN_HOST.cpus

    def getCellsFreeMemory(self, start: int, count: int) -> list[int]:  # noqa: N802
        return [55 * 1024 * MIB] * count

    def getFreePages(  # noqa: N802
        self, pages: list[int], start: int, count: int, flags: int = 0
    ) -> dict[int, dict[int, int]]:
        return {
            cell: {size: (55 * 1024 * MIB // 4096 if size == 4 else 0) for size in pages}
            for cell in range(start, start + count)
        }


@pytest.fixture
def golden_libvirtd(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[Any]]:
    """The libvirt collector, whose connections are GoldenLibvirtd."""
    pytest.importorskip("libvirt")
    from collectors.libvirt import LibvirtCollector, _connection

    real_open = _connection.open_connection

    def open_golden(uri: str, **kwargs: Any) -> GoldenLibvirtd:
        return GoldenLibvirtd(real_open(uri, **kwargs))

    monkeypatch.setattr(_connection, "open_connection", open_golden)
    yield LibvirtCollector


def libvirt_reports(collector_cls: type[Any], variant: Variant) -> list[HostReport] | None:
    if variant == "maintenance":
        return None
    url = f"test://{HERE / 'libvirt' / 'node.xml'}"
    target = Target(name="golden", collector="libvirt", url=url)
    with collector_cls.from_target(target, logger=LOG) as collector:
        reports: list[HostReport] = collector.collect()
    return reports


class TestLibvirt(InTreeEquivalence):
    @pytest.fixture(autouse=True)
    def collector(self, golden_libvirtd: type[Any]) -> None:
        type(self).collector_cls = golden_libvirtd

    def golden_reports(self, variant: Variant, directory: Path) -> list[HostReport] | None:
        return libvirt_reports(self.collector_cls, variant)


# -- vSphere -------------------------------------------------------------------------------


def vmware_reports(variant: Variant) -> list[HostReport]:
    pytest.importorskip("pyVmomi")
    from collectors.vmware import VmwareCollector

    dump = HERE / "vmware" / f"golden-{variant}.json"
    return VmwareCollector.normalise_offline({"dump": [dump]}, target="golden")


class TestVmware(InTreeEquivalence):
    @pytest.fixture(autouse=True)
    def collector(self) -> None:
        pytest.importorskip("pyVmomi")
        from collectors.vmware import VmwareCollector

        type(self).collector_cls = VmwareCollector

    def golden_reports(self, variant: Variant, directory: Path) -> list[HostReport] | None:
        return vmware_reports(variant)


# -- Hyper-V -------------------------------------------------------------------------------


def hyperv_reports(variant: Variant) -> list[HostReport] | None:
    pytest.importorskip("winrm")
    from collectors.hyperv import HypervCollector

    if variant == "maintenance":
        return None
    document = HERE / "hyperv" / f"golden-{variant}.json"
    return HypervCollector.normalise_offline({"json": [document]}, target="golden")


class TestHyperv(InTreeEquivalence):
    @pytest.fixture(autouse=True)
    def collector(self) -> None:
        pytest.importorskip("winrm")
        from collectors.hyperv import HypervCollector

        type(self).collector_cls = HypervCollector

    def golden_reports(self, variant: Variant, directory: Path) -> list[HostReport] | None:
        return hyperv_reports(variant)


# -- the example collector -------------------------------------------------------------------


def _example() -> tuple[type[Any], Any]:
    """The example collector and its golden /proc and /sys writer, from its directory (it is an
    out-of-tree package: installed in CI's separate virtualenv, read in place here)."""
    for path in (EXAMPLE, EXAMPLE / "tests"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    from golden_root import write_golden_root

    from resmon_localhost import LocalhostCollector

    return LocalhostCollector, write_golden_root


def localhost_reports(variant: Variant, directory: Path) -> list[HostReport] | None:
    if variant == "maintenance":
        return None
    collector_cls, write_golden_root = _example()
    root = write_golden_root(directory / "root", GOLDEN_HOST)
    target = Target(
        name="golden", collector="localhost", url="localhost", options={"root": str(root)}
    )
    with collector_cls.from_target(target, logger=LOG) as collector:
        reports: list[HostReport] = collector.collect()
    return reports


class TestLocalhost(InTreeEquivalence):
    # An out-of-tree collector keeps its table in its own repository.
    declared_differences = (EXAMPLE / "README.md").read_text()

    @pytest.fixture(autouse=True)
    def collector(self) -> None:
        type(self).collector_cls = _example()[0]

    def golden_reports(self, variant: Variant, directory: Path) -> list[HostReport] | None:
        return localhost_reports(variant, directory)


# -- policy --------------------------------------------------------------------------------


def test_policy_changes_every_driver_alike(golden_libvirtd: type[Any], tmp_path: Path) -> None:
    """One [resmon.policy] moves every driver's capacity the same way."""
    policy = resolve_policy(
        PolicyTable(cpu_allocation_ratio=2.0, reserved_host_cpus=2, reserved_host_memory_mb=4096),
        PolicyTable(ram_allocation_ratio=1.5),  # [targets.policy] of the target "golden"
    )
    by_driver = {
        "libvirt": libvirt_reports(golden_libvirtd, "running"),
        "vmware": vmware_reports("running"),
        "hyperv": hyperv_reports("running"),
        "localhost": localhost_reports("running", tmp_path),
    }
    capacities: dict[str, dict[str, tuple[int, float, int, int]]] = {}
    expected: dict[str, dict[str, tuple[int, float, int, int]]] = {}
    for driver, reports in by_driver.items():
        assert reports is not None
        host = next(r for r in settle(reports, policy) if r.provider_kind == "compute_host")
        # Capacity after what the hypervisor itself holds (declared where it differs), and the
        # policy's part: the same for every driver.
        capacities[driver] = {
            inv.resource_class: (
                inv.operator_reserved,
                inv.allocation_ratio,
                inv.reserved - inv.hypervisor_reserved,
                inv.capacity,
            )
            for inv in host.inventories
            if inv.resource_class in ("VCPU", "MEMORY_MB")
        }
        held = {inv.resource_class: inv.hypervisor_reserved for inv in host.inventories}
        expected[driver] = {
            "VCPU": (2, 2.0, 2, (GOLDEN_HOST.cpus - held["VCPU"] - 2) * 2),
            "MEMORY_MB": (
                4096,
                1.5,
                4096,
                int((GOLDEN_HOST.memory_mib - held["MEMORY_MB"] - 4096) * 1.5),
            ),
        }
    assert capacities == expected


# -- vSphere through the simulator -------------------------------------------------------------


def golden_esxi_flags(variant: Variant) -> list[str]:
    """The vCenter simulator's flags that make its ESXi host the golden host (the cpuid keys
    ESXi 8.0.3 reports for this CPU, as in vmware/golden-running.json)."""
    dump = json.loads((HERE / "vmware" / f"golden-{variant}.json").read_text())
    host = next(o["props"] for o in dump["objects"] if o["type"] == "HostSystem")
    guests = [o["props"] for o in dump["objects"] if o["type"] == "VirtualMachine"]
    cpuid = [f["key"].removeprefix("cpuid.") for f in host["config.featureCapability"]]
    return [
        f"-host-uuid={host['summary.hardware.uuid']}",
        f"-host-cpu-model={host['summary.hardware.cpuModel']}",
        f"-host-cpu-packages={host['summary.hardware.numCpuPkgs']}",
        f"-host-cpu-cores={host['summary.hardware.numCpuCores']}",
        f"-host-cpu-threads={host['summary.hardware.numCpuThreads']}",
        f"-host-cpu-mhz={host['summary.hardware.cpuMhz']}",
        f"-host-memory-mb={host['summary.hardware.memorySize'] // MIB}",
        f"-host-cpuid={','.join(cpuid)}",
        f"-host-maintenance={str(host['runtime.inMaintenanceMode']).lower()}",
        f"-host-numa-nodes={host['hardware.numaInfo']['numNodes']}",
        "-guests="
        + ";".join(
            f"{g['name']},{g['summary.config.instanceUuid']},{g['summary.config.numCpu']},"
            f"{g['summary.config.memorySizeMB']},"
            f"{'on' if g['runtime.powerState'] == 'poweredOn' else 'off'}"
            for g in sorted(guests, key=lambda g: str(g["name"]))
        ),
    ]


@pytest.mark.vcsim
class TestVmwareSimulator(InTreeEquivalence):
    """The same golden ESXi host, served by the vCenter simulator and read over the API."""

    @pytest.fixture(autouse=True)
    def collector(self) -> None:
        pytest.importorskip("pyVmomi")
        from collectors.vmware import VmwareCollector

        type(self).collector_cls = VmwareCollector

    def golden_reports(self, variant: Variant, directory: Path) -> list[HostReport] | None:
        from vmware import vcsim  # tests/vmware (pytest puts tests/ on sys.path)

        try:
            vcsim.build()
        except vcsim.SimulatorUnavailable as exc:
            pytest.fail(f"cannot build the vCenter simulator: {exc}")
        flags = golden_esxi_flags(variant)
        guests = flags[-1].removeprefix("-guests=").split(";")
        sim = vcsim.start(esx=True, vm=len(guests), username="root", password="golden", extra=flags)
        try:
            return self.collect(
                Target(
                    name="golden",
                    collector="vmware",
                    url=sim.url,
                    username="root",
                    password="golden",
                    ca_bundle=sim.cert,
                )
            )
        finally:
            sim.stop()
