"""A small mixed fleet with shared storage, as the collectors report one.

::

    target vc (vSphere-like: datastores are sharing providers, hosts carry no DISK_GB)
    ├── domain-c1     cluster (totals of its hosts)
    ├── esx-0         16 VCPU ×4, 65536 MiB, AVX2, parent domain-c1
    ├── esx-1         32 VCPU ×4, 131072 MiB, AVX2 + AVX512F, parent domain-c1
    ├── datastore-1   DISK_GB 1000 (100 used), VMFS, mounted by esx-0 and esx-1
    └── datastore-2   DISK_GB 500, NFS, mounted by esx-1
    target kvm (libvirt-like)
    ├── kvm-0         8 VCPU ×4, 16384 MiB, local DISK_GB 100, and the rbd pool
    ├── kvm-1         8 VCPU ×4, 16384 MiB, local DISK_GB 200, no AVX2
    └── pool-rbd      DISK_GB 2000 shared with kvm-0

The datastore and pool shapes follow collectors/vmware ``_datastore_report`` and
collectors/libvirt ``_pool_report`` (DISK_GB only, ``MISC_SHARES_VIA_AGGREGATE``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from resmon.contract import HostReport, Inventory, ProviderKind
from resmon.contract.testing import fake_report
from resmon.runner import CollectionOutcome
from resmon.store import Store, TargetSpec


def _without_disk(report: HostReport) -> HostReport:
    report.inventories = [i for i in report.inventories if i.resource_class != "DISK_GB"]
    return report


def _shared(host_id: str, target: str, total: int, used: int, shared_with: list[str],
            extra_trait: str | None = None) -> HostReport:  # fmt: skip
    report = fake_report(host_id, target=target, traits=("MISC_SHARES_VIA_AGGREGATE",))
    report.provider_kind = ProviderKind.SHARED_STORAGE
    report.hypervisor = report.cpu = report.memory = None
    report.supported_instances = []
    report.inventories = [Inventory(resource_class="DISK_GB", total=total, used=used)]
    if extra_trait:
        report.traits = sorted([*report.traits, extra_trait])
    report.shared_with = sorted(shared_with)
    return report


def fleet_reports() -> dict[str, list[HostReport]]:
    esx0 = _without_disk(
        fake_report(
            "esx-0",
            target="vc",
            vcpus=16,
            memory_mib=65536,
            hv_type="vmware",
            parent_id="domain-c1",
            used_vcpus=8,
        )
    )
    esx1 = _without_disk(
        fake_report(
            "esx-1",
            target="vc",
            vcpus=32,
            memory_mib=131072,
            hv_type="vmware",
            parent_id="domain-c1",
            traits=("HW_CPU_X86_AVX2", "HW_CPU_X86_AVX512F"),
        )
    )
    cluster = fake_report("domain-c1", target="vc", vcpus=48, memory_mib=196608, hv_type="vmware")
    cluster.provider_kind = ProviderKind.CLUSTER
    cluster.inventories = _without_disk(cluster).inventories
    vc = [
        cluster, esx0, esx1,
        _shared("datastore-1", "vc", 1000, 100, ["esx-0", "esx-1"],
                "CUSTOM_VMWARE_DATASTORE_VMFS"),
        _shared("datastore-2", "vc", 500, 0, ["esx-1"], "CUSTOM_VMWARE_DATASTORE_NFS"),
    ]  # fmt: skip
    kvm = [
        fake_report("kvm-0", target="kvm", vcpus=8, memory_mib=16384, disk_gib=100),
        fake_report("kvm-1", target="kvm", vcpus=8, memory_mib=16384, disk_gib=200, traits=()),
        _shared("pool-rbd", "kvm", 2000, 0, ["kvm-0"]),
    ]
    return {"vc": vc, "kvm": kvm}


def populate(store: Store) -> None:
    for target, reports in fleet_reports().items():
        outcome = CollectionOutcome(
            target=target, collector="fake", started_at=datetime.now(UTC), duration_s=0.5,
            reports=reports,
        )  # fmt: skip
        store.record(TargetSpec(target, "fake", "fake://", 3600.0), outcome)
