"""Real ESXi 8.0.3 / vCenter 8.0.3 data (pyvmomi's vcrpy cassettes) through the normaliser.

The cassettes hold SOAP ``Fetch`` answers for one HostSystem (host-14), one Datastore
(datastore-17) and one VM (vm-19). They are parsed here with defusedxml into the same property
dicts the collector builds from a PropertyCollector pass, and the numbers are checked by hand.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as ET
import pytest
import yaml

from collectors.vmware._native import PROPERTIES, Inventory, NativeObject
from collectors.vmware._normalise import normalise
from resmon.contract import (
    CollectorInfo,
    Health,
    HostReport,
    HostState,
    InvalidNativeData,
    ProviderKind,
)
from resmon.policy import PolicyTable, TargetPolicy, apply_policy, resolve_policy
from resmon.validation import check_batch

NS = "{urn:vim25}"
INTS = {
    "summary.hardware.numCpuPkgs",
    "summary.hardware.numCpuCores",
    "summary.hardware.numCpuThreads",
    "summary.hardware.cpuMhz",
    "summary.hardware.memorySize",
    "summary.quickStats.overallCpuUsage",
    "summary.quickStats.overallMemoryUsage",
    "summary.capacity",
    "summary.freeSpace",
    "summary.uncommitted",
    "summary.config.numCpu",
    "summary.config.memorySizeMB",
}
BOOLS = {
    "runtime.inMaintenanceMode",
    "runtime.inQuarantineMode",
    "summary.accessible",
    "summary.config.template",
}


def fetches(path: Path) -> dict[str, Element]:
    """Fetch answers of a cassette: requested property → its <returnval> element."""
    answers = {}
    for interaction in yaml.safe_load(path.read_text())["interactions"]:
        body = interaction["request"]["body"] or ""
        prop = re.search(r"<prop[^>]*>(\w+)</prop>", body)
        if prop is None:
            continue
        root = ET.fromstring(interaction["response"]["body"]["string"].encode())
        returnval = root.find(f".//{NS}returnval")
        if returnval is not None:
            answers[prop.group(1)] = returnval
    return answers


def leaf(answers: dict[str, Element], path: str) -> Any:
    """The value at a dotted property path, typed the way pyVmomi would type it."""
    top, *rest = path.split(".")
    element: Element | None = answers.get(top)
    for part in rest:
        element = None if element is None else element.find(NS + part)
    if element is None:
        return None
    if path in INTS:
        return int(element.text or "")
    if path in BOOLS:
        return element.text == "true"
    if path in ("config.featureCapability", "config.maskedFeatureCapability"):
        config = answers["config"]
        return [
            {child.tag.removeprefix(NS): child.text for child in fc}
            for fc in config.findall(NS + path.removeprefix("config."))
        ]
    if path == "config.systemResources":  # HostSystemResourceInfo, as to_plain() gives it
        return resource_tree(element)
    if path == "hardware.numaInfo":  # HostNumaInfo, as to_plain() gives it
        return {
            "type": element.findtext(f"{NS}type"),
            "numNodes": int(element.findtext(f"{NS}numNodes") or ""),
            "numaNode": [
                {
                    "typeId": int(node.findtext(f"{NS}typeId") or ""),
                    "cpuID": [int(c.text or "") for c in node.findall(f"{NS}cpuID")],
                    **{
                        child.tag.removeprefix(NS): int(child.text or "")
                        for child in node
                        if child.tag.removeprefix(NS)
                        in ("memoryRangeBegin", "memoryRangeLength", "memorySize")
                    },
                }
                for node in element.findall(f"{NS}numaNode")
            ],
        }
    if path == "host":  # DatastoreHostMount[]
        mounts = []
        for mount in element.findall(f"{NS}DatastoreHostMount"):
            info = mount.find(f"{NS}mountInfo")
            assert info is not None
            mounts.append(
                {
                    "key": mount.findtext(f"{NS}key"),
                    "mountInfo": {
                        "mounted": info.findtext(f"{NS}mounted") == "true",
                        "accessible": info.findtext(f"{NS}accessible") == "true",
                    },
                }
            )
        return mounts
    if path in ("vm", "datastore"):
        return [child.text for child in element]
    return element.text


def resource_tree(element: Element) -> dict[str, Any]:
    """A HostSystemResourceInfo element: key, each allocation's reservation, children."""
    config = {}
    for allocation in ("cpuAllocation", "memoryAllocation"):
        reservation = element.findtext(f"{NS}config/{NS}{allocation}/{NS}reservation")
        if reservation is not None:
            config[allocation] = {"reservation": int(reservation)}
    return {
        "key": element.findtext(f"{NS}key"),
        "config": config,
        "child": [resource_tree(child) for child in element.findall(f"{NS}child")],
    }


def native(kind: str, moref: str, cassette: Path, type_paths: tuple[str, ...]) -> NativeObject:
    answers = fetches(cassette)
    props = {p: leaf(answers, p) for p in type_paths}
    return NativeObject(kind, moref, {k: v for k, v in props.items() if v is not None})


@pytest.fixture(scope="module")
def inventory(corpus: Path) -> Inventory:
    cassettes = corpus / "vmware" / "pyvmomi"
    host = native(
        "HostSystem", "host-14", cassettes / "test_json_host_explode.yaml", PROPERTIES["HostSystem"]
    )
    datastore = native(
        "Datastore",
        "datastore-17",
        cassettes / "test_json_datastore_explode.yaml",
        PROPERTIES["Datastore"],
    )
    vm = native(
        "VirtualMachine",
        "vm-19",
        cassettes / "test_json_vm_explode_default.yaml",
        PROPERTIES["VirtualMachine"],
    )
    # The VM's placement comes from summary.runtime.host in this cassette.
    vm.props["runtime.host"] = leaf(
        fetches(cassettes / "test_json_vm_explode_default.yaml"), "runtime.host"
    )
    # The cassettes hold no cluster object; host-14's parent is domain-c9. A cluster holding it
    # is added by hand so that the tree is exercised with real host data.
    cluster = NativeObject(
        "ClusterComputeResource",
        "domain-c9",
        {"name": "cluster-a", "host": ["host-14", "host-12", "host-15", "host-16"]},
    )
    return Inventory(about={"apiType": "VirtualCenter"}, objects=[host, datastore, vm, cluster])


@pytest.fixture(scope="module")
def reports(inventory: Inventory) -> list[HostReport]:
    return normalise(
        inventory,
        target="vcenter",
        collector=CollectorInfo(name="vmware", version="test"),
        collected_at=datetime(2023, 12, 14, 10, 38, tzinfo=UTC),
    )


def test_real_host_numbers(reports: list[HostReport]) -> None:
    (host,) = [r for r in reports if r.provider_kind is ProviderKind.COMPUTE_HOST]
    assert host.identity.host_id == "a6b70142-625f-e04e-edf6-05098f74aff3"
    assert host.identity.hostname == "10.218.43.170"
    assert host.state is HostState.UP
    assert host.parent_id == "domain-c9"
    # summary.hardware: 8 packages, 8 cores, 8 threads, 1995 MHz, 17178767360 bytes.
    cpu = host.cpu
    assert cpu is not None
    assert (cpu.sockets, cpu.cores_per_socket, cpu.threads_per_core) == (8, 1, 1)
    assert cpu.total_cpus == cpu.online_cpus == 8
    assert cpu.cpu_mhz == 1995
    assert cpu.model == "Intel(R) Xeon(R) Gold 6330 CPU @ 2.00GHz"
    assert cpu.vendor == "Intel"  # featureCapability cpuid.intel = 1
    assert cpu.arch == "x86_64"  # config.product.osType = vmnix-x86
    assert host.memory is not None and host.memory.total_bytes == 17178767360
    # quickStats.overallMemoryUsage = 5986 MiB.
    assert host.memory.used_bytes == 5986 * 1048576 == 6276775936
    assert host.memory.free_bytes == 17178767360 - 6276775936
    # quickStats.overallCpuUsage = 3062 MHz, observed next to the same memory figure.
    assert host.observed is not None and host.observed.cpu_used_mhz == 3062
    assert host.observed.memory_used_bytes == 6276775936
    vcpu, mem = host.inventory("VCPU"), host.inventory("MEMORY_MB")
    assert vcpu is not None and (vcpu.total, vcpu.max_unit, vcpu.used) == (8, 8, 0)
    # 17178767360 / 2**20 = 16382.95...: whole MiB only.
    assert mem is not None and mem.total == 16382
    assert host.hypervisor is not None
    assert host.hypervisor.product == "VMware ESXi"
    assert host.hypervisor.version == "8.0.3 build-69507956"
    assert (host.hypervisor.version_major, host.hypervisor.version_minor) == (8, 0)
    assert host.hypervisor.version_patch == 3
    # 79 cpuid.* capabilities with value 1 in config.featureCapability (grep -c on the cassette).
    assert len(cpu.features) == 79 and "avx512f" in cpu.features and "ht" not in cpu.features
    for trait in (
        "HW_ARCH_X86_64",
        "HW_CPU_X86_AVX2",
        "HW_CPU_X86_AVX512F",
        "HW_CPU_X86_AVX512VNNI",
        "HW_CPU_X86_AESNI",
        "HW_CPU_X86_SSE41",
        "HW_CPU_X86_SSE42",
        "HW_CPU_X86_FMA3",
        "HW_CPU_X86_CLMUL",
        "HW_CPU_X86_SHA",
        "HW_CPU_X86_VMX",
        "HW_CPU_X86_TSX",
    ):
        assert trait in host.traits, trait
    assert "HW_CPU_HYPERTHREADING" not in host.traits  # 8 threads on 8 cores
    assert "COMPUTE_STATUS_DISABLED" not in host.traits
    (instance,) = host.supported_instances
    assert (instance.arch, instance.hv_type, instance.vm_mode) == ("x86_64", "vmware", "hvm")
    # vm-19 runs on host-16, which is not in this collection.
    assert host.running_instances.count == 0
    assert host.health is Health.OK  # overallStatus green
    assert host.boot_time == datetime(2023, 12, 12, 9, 7, 1, 778318, tzinfo=UTC)
    assert host.location is not None and host.location.cluster == "cluster-a"


def test_real_host_numa_topology(reports: list[HostReport]) -> None:
    """hardware.numaInfo: one NUMA node (typeId 0) of logical CPUs 7…0 and 17177128960 bytes
    (memorySize = memoryRangeLength), 1.6 MB less than the host's memorySize."""
    host = next(r for r in reports if r.provider_kind is ProviderKind.COMPUTE_HOST)
    assert [(c.cell_id, c.cpus, c.memory_bytes) for c in host.numa_cells] == [
        (0, [0, 1, 2, 3, 4, 5, 6, 7], 17177128960)
    ]
    assert host.numa_cells[0].free_memory_bytes is None  # ESXi reports none per node


def test_real_host_system_reservations(reports: list[HostReport]) -> None:
    """config.systemResources: host/system reserves 2660 MB and 200 MHz, host/vim 2374 MHz
    (host/iofilters and host/opt 0 at their own level; host/user is where VMs run)."""
    host = next(r for r in reports if r.provider_kind is ProviderKind.COMPUTE_HOST)
    vcpu, memory = host.inventory("VCPU"), host.inventory("MEMORY_MB")
    assert memory is not None and memory.hypervisor_reserved == 2660
    # 2574 MHz of 1995 MHz logical CPUs: two of the eight.
    assert vcpu is not None and vcpu.hypervisor_reserved == 2
    cluster = next(r for r in reports if r.provider_kind is ProviderKind.CLUSTER)
    cluster_memory = cluster.inventory("MEMORY_MB")
    assert cluster_memory is not None and cluster_memory.hypervisor_reserved == 2660
    # The core adds the operator's reservation to what ESXi holds (Nova's default 512 MiB).
    settled, _ = apply_policy(reports, TargetPolicy.defaults())
    settled_host = next(r for r in settled if r.provider_kind is ProviderKind.COMPUTE_HOST)
    settled_memory = settled_host.inventory("MEMORY_MB")
    assert settled_memory is not None and settled_memory.reserved == 2660 + 512


def test_real_datastore_numbers(reports: list[HostReport]) -> None:
    (ds,) = [r for r in reports if r.provider_kind is ProviderKind.SHARED_STORAGE]
    assert ds.identity.host_id == "datastore-17" and ds.identity.hostname == "vsanDatastore"
    disk = ds.inventory("DISK_GB")
    assert disk is not None
    # capacity 386479947776 B = 359.9 GiB → 359; free 362348271376 B = 337.5 GiB → 337.
    assert disk.total == 359
    assert disk.used == 359 - 337 == 22
    assert ds.state is HostState.UP
    # Mounted on host-15, -16, -12 and -14; only host-14 is in this collection.
    assert ds.shared_with == ["a6b70142-625f-e04e-edf6-05098f74aff3"]
    assert "CUSTOM_VMWARE_DATASTORE_VSAN" in ds.traits
    assert "MISC_SHARES_VIA_AGGREGATE" in ds.traits
    # Thin provisioning: summary.uncommitted 9797894144 B more than the used 24131676400 B.
    assert ds.storage is not None and ds.storage.uncommitted_bytes == 9797894144
    assert ds.storage.provisioned_bytes == 386479947776 - 362348271376 + 9797894144
    assert ds.health is Health.OK


def test_real_cluster_aggregate(reports: list[HostReport]) -> None:
    (cluster,) = [r for r in reports if r.provider_kind is ProviderKind.CLUSTER]
    assert cluster.identity.host_id == "domain-c9"
    vcpu, mem = cluster.inventory("VCPU"), cluster.inventory("MEMORY_MB")
    assert vcpu is not None and (vcpu.total, vcpu.max_unit) == (8, 8)
    assert mem is not None and (mem.total, mem.max_unit) == (16382, 16382)


def test_no_anomalies_on_real_data(reports: list[HostReport]) -> None:
    assert check_batch(reports) == {r.key: [] for r in reports}


def test_maintenance_mode_on_real_host(inventory: Inventory) -> None:
    host = next(o for o in inventory.objects if o.type == "HostSystem")
    changed = NativeObject(host.type, host.moref, {**host.props, "runtime.inMaintenanceMode": True})
    objects = [changed if o is host else o for o in inventory.objects]
    facts = normalise(
        Inventory(about={}, objects=objects),
        target="vcenter",
        collector=CollectorInfo(name="vmware", version="test"),
        collected_at=datetime(2023, 12, 14, tzinfo=UTC),
    )
    # Capacity 0 for a host that is not up is the core's rule, applied with the policy.
    reports, _ = apply_policy(facts, TargetPolicy.defaults())
    report = next(r for r in reports if r.provider_kind is ProviderKind.COMPUTE_HOST)
    assert report.state is HostState.MAINTENANCE
    assert "COMPUTE_STATUS_DISABLED" in report.traits
    assert all(inv.capacity == 0 for inv in report.inventories)
    cluster = next(r for r in reports if r.provider_kind is ProviderKind.CLUSTER)
    assert cluster.state is HostState.MAINTENANCE
    assert all(inv.capacity == 0 for inv in cluster.inventories)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("summary.hardware.memorySize", "16 GB"),
        ("summary.hardware.numCpuThreads", -8),
        ("summary.hardware.numCpuThreads", True),
        ("runtime.inMaintenanceMode", "no"),
        ("config.featureCapability", "cpuid.avx"),
        ("hardware.numaInfo", "NUMA"),
        ("hardware.numaInfo", {"numaNode": [{"typeId": 0, "cpuID": ["0"]}]}),
        ("hardware.numaInfo", {"numaNode": [{"typeId": 0}, {"typeId": 0}]}),
    ],
)
def test_bad_native_values_are_invalid_native_data(
    inventory: Inventory, path: str, value: object
) -> None:
    host = next(o for o in inventory.objects if o.type == "HostSystem")
    bad = NativeObject(host.type, host.moref, {**host.props, path: value})
    with pytest.raises(InvalidNativeData, match=re.escape(path)):
        normalise(
            Inventory(about={}, objects=[bad]),
            target="vcenter",
            collector=CollectorInfo(name="vmware", version="test"),
            collected_at=datetime(2023, 12, 14, tzinfo=UTC),
        )


def test_policy_changes_capacity_the_same_way(
    reports: list[HostReport],
    check_policy_applies_uniformly: Callable[[list[HostReport]], set[str]],
) -> None:
    assert check_policy_applies_uniformly(reports) == {"VCPU", "MEMORY_MB"}
    # The cluster reserves what its member host reserves, once; its ratio is the policy's.
    settled, _ = apply_policy(
        reports, resolve_policy(PolicyTable(reserved_host_memory_mb=1024), None)
    )
    host = next(r for r in settled if r.provider_kind is ProviderKind.COMPUTE_HOST)
    cluster = next(r for r in settled if r.provider_kind is ProviderKind.CLUSTER)
    host_memory, cluster_memory = host.inventory("MEMORY_MB"), cluster.inventory("MEMORY_MB")
    assert host_memory is not None and cluster_memory is not None
    assert cluster_memory.operator_reserved == host_memory.operator_reserved == 1024
    assert cluster_memory.reserved == host_memory.reserved
    assert cluster_memory.allocation_ratio == 1.0


def _normalised(inventory: Inventory, obj: NativeObject, **props: object) -> list[HostReport]:
    changed = NativeObject(obj.type, obj.moref, {**obj.props, **props})
    return normalise(
        Inventory(about={}, objects=[changed if o is obj else o for o in inventory.objects]),
        target="vcenter",
        collector=CollectorInfo(name="vmware", version="test"),
        collected_at=datetime(2023, 12, 14, tzinfo=UTC),
    )


def test_host_with_an_inaccessible_mount_does_not_share_the_datastore(
    inventory: Inventory,
) -> None:
    datastore = next(o for o in inventory.objects if o.type == "Datastore")
    mounts = [
        {**m, "mountInfo": {**m["mountInfo"], "accessible": m["key"] != "host-14"}}
        for m in datastore.props["host"]
    ]
    # host-14 still lists the datastore in its own `datastore` property: the mount decides.
    host = next(o for o in inventory.objects if o.type == "HostSystem")
    assert "datastore-17" in host.props["datastore"]
    reports = _normalised(inventory, datastore, host=mounts)
    (ds,) = [r for r in reports if r.provider_kind is ProviderKind.SHARED_STORAGE]
    assert ds.shared_with == []


def test_datastore_in_maintenance_keeps_its_used(inventory: Inventory) -> None:
    datastore = next(o for o in inventory.objects if o.type == "Datastore")
    reports = _normalised(inventory, datastore, **{"summary.maintenanceMode": "inMaintenance"})
    (ds,) = [r for r in reports if r.provider_kind is ProviderKind.SHARED_STORAGE]
    disk = ds.inventory("DISK_GB")
    assert ds.state is HostState.MAINTENANCE and disk is not None
    assert (disk.total, disk.used) == (359, 22)  # the core then sets reserved = total


def test_quarantined_host_stays_up_with_an_anomaly(inventory: Inventory) -> None:
    host = next(o for o in inventory.objects if o.type == "HostSystem")
    assert host.props["runtime.inQuarantineMode"] is False  # as recorded
    reports = _normalised(inventory, host, **{"runtime.inQuarantineMode": True})
    report = next(r for r in reports if r.provider_kind is ProviderKind.COMPUTE_HOST)
    assert report.state is HostState.UP
    assert [a.code for a in report.anomalies] == ["vmware.host_quarantine"]


def test_cluster_of_down_hosts_says_why(inventory: Inventory) -> None:
    host = next(o for o in inventory.objects if o.type == "HostSystem")
    reports = _normalised(inventory, host, **{"runtime.connectionState": "notResponding"})
    cluster = next(r for r in reports if r.provider_kind is ProviderKind.CLUSTER)
    assert cluster.state is HostState.NOT_RESPONDING
    (anomaly,) = cluster.anomalies
    assert anomaly.code == "vmware.cluster_down"
    assert "10.218.43.170 not_responding" in anomaly.message


def _cluster_with(inventory: Inventory, *hosts: NativeObject, **props: object) -> HostReport:
    reports = _reports_with(inventory, *hosts, **props)
    return next(r for r in reports if r.provider_kind is ProviderKind.CLUSTER)


def _reports_with(inventory: Inventory, *hosts: NativeObject, **props: object) -> list[HostReport]:
    base = [o for o in inventory.objects if o.type not in ("HostSystem", "ClusterComputeResource")]
    cluster = NativeObject(
        "ClusterComputeResource",
        "domain-c9",
        {"name": "cluster-a", "host": [h.moref for h in hosts], **props},
    )
    return normalise(
        Inventory(about={}, objects=[*base, *hosts, cluster]),
        target="vcenter",
        collector=CollectorInfo(name="vmware", version="test"),
        collected_at=datetime(2023, 12, 14, tzinfo=UTC),
    )


def _sibling(
    host: NativeObject, moref: str, uuid: str, drop: set[str], vendor: str
) -> NativeObject:
    """A second host of the cluster: host-14's data without some features, of a vendor."""

    def keep(items: list[dict[str, str]]) -> list[dict[str, str]]:
        kept = [f for f in items if f["key"] not in drop and f["key"] not in _VENDOR_KEYS]
        return [*kept, {"key": vendor, "value": "1"}]

    return NativeObject(
        host.type,
        moref,
        {
            **host.props,
            "summary.hardware.uuid": uuid,
            "config.featureCapability": keep(host.props["config.featureCapability"]),
            "config.maskedFeatureCapability": keep(host.props["config.maskedFeatureCapability"]),
        },
    )


_VENDOR_KEYS = {"cpuid.intel", "cpuid.amd", "cpuid.hygon"}


def test_cluster_traits_are_what_every_host_offers(inventory: Inventory) -> None:
    host = next(o for o in inventory.objects if o.type == "HostSystem")
    older = _sibling(host, "host-99", "00000000-0000-0000-0000-000000000099",
                     {"cpuid.avx512f", "cpuid.avx512vnni"}, "cpuid.intel")  # fmt: skip
    cluster = _cluster_with(
        inventory, host, older, **{"summary.currentEVCModeKey": "intel-icelake"}
    )
    assert "HW_CPU_X86_AVX2" in cluster.traits and "HW_ARCH_X86_64" in cluster.traits
    assert "HW_CPU_X86_AVX512F" not in cluster.traits  # host-99 lacks it
    assert "CUSTOM_VMWARE_EVC_INTEL_ICELAKE" in cluster.traits
    assert cluster.anomalies == []


def test_evc_mask_decides_what_a_host_offers(inventory: Inventory) -> None:
    host = next(o for o in inventory.objects if o.type == "HostSystem")
    masked = [
        f for f in host.props["config.maskedFeatureCapability"] if f["key"] != "cpuid.avx512f"
    ]
    reports = _normalised(inventory, host, **{"config.maskedFeatureCapability": masked})
    report = next(r for r in reports if r.provider_kind is ProviderKind.COMPUTE_HOST)
    assert "HW_CPU_X86_AVX512F" not in report.traits  # masked by EVC
    assert report.cpu is not None and "avx512f" in report.cpu.features  # the hardware has it


def test_mixed_cpu_vendors_without_evc(inventory: Inventory) -> None:
    host = next(o for o in inventory.objects if o.type == "HostSystem")
    amd = _sibling(host, "host-98", "00000000-0000-0000-0000-000000000098", set(), "cpuid.amd")
    cluster = _cluster_with(inventory, host, amd)
    assert [a.code for a in cluster.anomalies] == ["vmware.cluster_mixed_cpu_vendors"]
    assert cluster.anomalies[0].raw_value == "AMD,Intel"


@pytest.mark.parametrize(
    ("policy", "vcpu_held", "memory_held"),
    [
        # 25 % of 8 logical CPUs and of 16382 MiB kept for failover, on top of ESXi's own.
        ({"cpuFailoverResourcesPercent": 25, "memoryFailoverResourcesPercent": 25}, 2 + 2,
         2660 + 4096),
        ({"failoverLevel": 1}, 8, 16382),  # tolerate one host failure: the only host
        ({"failoverHosts": ["host-14"], "failoverLevel": 1}, 8, 16382),  # dedicated
    ],
    ids=["percentage", "host-failures", "dedicated-host"],
)  # fmt: skip
def test_ha_admission_control_holds_failover_capacity(
    inventory: Inventory, policy: dict[str, object], vcpu_held: int, memory_held: int
) -> None:
    host = next(o for o in inventory.objects if o.type == "HostSystem")
    das = {"enabled": True, "admissionControlEnabled": True, "admissionControlPolicy": policy}
    cluster = _cluster_with(inventory, host, **{"configuration.dasConfig": das})
    vcpu, memory = cluster.inventory("VCPU"), cluster.inventory("MEMORY_MB")
    assert vcpu is not None and vcpu.hypervisor_reserved == vcpu_held
    assert memory is not None and memory.hypervisor_reserved == memory_held
    # What resmon stores keeps it, next to the member host's own reservations.
    stored, _ = apply_policy(
        _reports_with(inventory, host, **{"configuration.dasConfig": das}),
        TargetPolicy.defaults(),
    )
    stored_cluster = next(r for r in stored if r.provider_kind is ProviderKind.CLUSTER)
    stored_memory = stored_cluster.inventory("MEMORY_MB")
    assert stored_memory is not None and stored_memory.hypervisor_reserved == memory_held
    # Admission control off: only ESXi's own reservations.
    das["admissionControlEnabled"] = False
    cluster = _cluster_with(inventory, host, **{"configuration.dasConfig": das})
    memory = cluster.inventory("MEMORY_MB")
    assert memory is not None and memory.hypervisor_reserved == 2660


@pytest.mark.parametrize(("effective", "flagged"), [(13000, False), (10000, True)])
def test_effective_memory_cross_check(inventory: Inventory, effective: int, flagged: bool) -> None:
    """16382 MiB less ESXi's 2660 leaves 13722 for VMs; vSphere's figure may be up to 10 %
    below that, as ESXi keeps some overhead outside its resource pools."""
    host = next(o for o in inventory.objects if o.type == "HostSystem")
    cluster = _cluster_with(inventory, host, **{"summary.effectiveMemory": effective})
    codes = [a.code for a in cluster.anomalies]
    assert codes == (["vmware.effective_memory"] if flagged else [])


@pytest.mark.parametrize(
    ("effective_cpu", "effective_memory", "codes"),
    [
        # 8 cores × 1995 MHz = 15960 MHz less ESXi's 2574 leaves 13386 MHz; 16382 MiB less
        # 2660 leaves 13722 MiB. vSphere's figures may differ from those by a tenth.
        (12500, 13000, []),
        (9000, 13000, ["vmware.effective_cpu"]),  # vSphere holds back more than resmon reads
        (15960, 16382, ["vmware.effective_cpu", "vmware.effective_memory"]),  # the other way
    ],
)
def test_effective_cpu_and_memory_cross_check(
    inventory: Inventory, effective_cpu: int, effective_memory: int, codes: list[str]
) -> None:
    host = next(o for o in inventory.objects if o.type == "HostSystem")
    cluster = _cluster_with(
        inventory,
        host,
        **{"summary.effectiveCpu": effective_cpu, "summary.effectiveMemory": effective_memory},
    )
    assert [a.code for a in cluster.anomalies] == codes
    if codes:
        assert "after their system reservations" in cluster.anomalies[0].message


def _pool(moref: str, parent: str, cpu_mhz: int, memory_mb: int) -> NativeObject:
    """A ResourcePool as a PropertyCollector pass reads it (ResourceAllocationInfo: reservation
    in MHz and MB). Only a pool with an expandable reservation may have children that reserve
    more than it does (vSphere refuses it otherwise), so the reservations alone tell."""
    return NativeObject(
        "ResourcePool",
        moref,
        {
            "name": moref,
            "parent": parent,
            "config.cpuAllocation.reservation": cpu_mhz,
            "config.memoryAllocation.reservation": memory_mb,
        },
    )


#: The cluster's root resource pool: its reservation is the cluster's whole capacity, never a
#: reservation of its own (vSphere sets it; resmon skips it).
_ROOT_POOL = _pool("resgroup-8", "domain-c9", 13386, 13722)


def _held(reports: list[HostReport], kind: ProviderKind) -> tuple[int, int]:
    report = next(r for r in reports if r.provider_kind is kind)
    vcpu, memory = report.inventory("VCPU"), report.inventory("MEMORY_MB")
    assert vcpu is not None and memory is not None
    return vcpu.hypervisor_reserved, memory.hypervisor_reserved


@pytest.mark.parametrize(
    ("pools", "vcpus_held", "memory_held"),
    [
        ([], 2, 2660),  # ESXi's system pools only
        # 4000 MHz = 3 logical CPUs of 1995 MHz, rounded up; 4096 MB.
        ([_pool("resgroup-20", "resgroup-8", 4000, 4096)], 2 + 3, 2660 + 4096),
        # Two pools side by side hold both reservations.
        (
            [
                _pool("resgroup-20", "resgroup-8", 1995, 1024),
                _pool("resgroup-21", "resgroup-8", 0, 2048),
            ],
            2 + 1,
            2660 + 3072,
        ),
        # An expandable pool of 1024 MB whose children reserve 3072 MB borrows the rest from the
        # root: the subtree holds 3072, counted once.
        (
            [
                _pool("resgroup-20", "resgroup-8", 0, 1024),
                _pool("resgroup-30", "resgroup-20", 0, 2048),
                _pool("resgroup-31", "resgroup-20", 0, 1024),
            ],
            2,
            2660 + 3072,
        ),
        # A fixed pool's children fit in its own reservation: the pool's figure counts.
        (
            [
                _pool("resgroup-20", "resgroup-8", 0, 4096),
                _pool("resgroup-30", "resgroup-20", 0, 1024),
            ],
            2,
            2660 + 4096,
        ),
    ],
    ids=["none", "one-pool", "two-pools", "expandable-borrows", "fixed-holds-children"],
)
def test_resource_pool_reservations_are_held(
    inventory: Inventory, pools: list[NativeObject], vcpus_held: int, memory_held: int
) -> None:
    reports = normalise(
        Inventory(about={}, objects=[*inventory.objects, _ROOT_POOL, *pools]),
        target="vcenter",
        collector=CollectorInfo(name="vmware", version="test"),
        collected_at=datetime(2023, 12, 14, tzinfo=UTC),
    )
    assert _held(reports, ProviderKind.CLUSTER) == (vcpus_held, memory_held)
    # The pools belong to the cluster (DRS places VMs across its hosts), not to one host.
    assert _held(reports, ProviderKind.COMPUTE_HOST) == (2, 2660)


def test_a_pool_holds_only_what_its_vms_do_not_use(inventory: Inventory) -> None:
    """vm-19 (1 vCPU, 128 MB, powered on) moved to host-14 inside a pool reserving 1995 MHz and
    1024 MB: the VM is in the host's used, the pool holds the other 896 MB and no CPU."""
    vm = next(o for o in inventory.objects if o.type == "VirtualMachine")
    assert (vm.props["summary.config.numCpu"], vm.props["summary.config.memorySizeMB"]) == (1, 128)
    moved = NativeObject(
        vm.type, vm.moref, {**vm.props, "runtime.host": "host-14", "resourcePool": "resgroup-20"}
    )
    objects = [moved if o is vm else o for o in inventory.objects]
    pool = _pool("resgroup-20", "resgroup-8", 1995, 1024)
    reports = normalise(
        Inventory(about={}, objects=[*objects, _ROOT_POOL, pool]),
        target="vcenter",
        collector=CollectorInfo(name="vmware", version="test"),
        collected_at=datetime(2023, 12, 14, tzinfo=UTC),
    )
    assert _held(reports, ProviderKind.CLUSTER) == (2, 2660 + 1024 - 128)
    cluster = next(r for r in reports if r.provider_kind is ProviderKind.CLUSTER)
    memory = cluster.inventory("MEMORY_MB")
    assert memory is not None and memory.used == 128


def test_pools_of_a_standalone_host_are_the_hosts(inventory: Inventory) -> None:
    host = next(o for o in inventory.objects if o.type == "HostSystem")
    alone = NativeObject(host.type, host.moref, {**host.props, "parent": "domain-s30"})
    compute = NativeObject("ComputeResource", "domain-s30", {"name": "esx-a", "host": ["host-14"]})
    objects = [
        o for o in inventory.objects if o.type not in ("HostSystem", "ClusterComputeResource")
    ]
    reports = normalise(
        Inventory(
            about={},
            objects=[
                *objects,
                alone,
                compute,
                _pool("resgroup-31", "domain-s30", 15960, 16382),
                _pool("resgroup-40", "resgroup-31", 3990, 2048),
            ],
        ),
        target="esx",
        collector=CollectorInfo(name="vmware", version="test"),
        collected_at=datetime(2023, 12, 14, tzinfo=UTC),
    )
    assert _held(reports, ProviderKind.COMPUTE_HOST) == (2 + 2, 2660 + 2048)


@pytest.mark.parametrize(
    ("path", "value"),
    [("config.memoryAllocation.reservation", -1), ("config.cpuAllocation.reservation", "1 GHz")],
)
def test_bad_pool_reservations_are_invalid_native_data(
    inventory: Inventory, path: str, value: object
) -> None:
    pool = _pool("resgroup-20", "resgroup-8", 0, 0)
    pool.props[path] = value
    with pytest.raises(InvalidNativeData, match=re.escape(path)):
        normalise(
            Inventory(about={}, objects=[*inventory.objects, _ROOT_POOL, pool]),
            target="vcenter",
            collector=CollectorInfo(name="vmware", version="test"),
            collected_at=datetime(2023, 12, 14, tzinfo=UTC),
        )
