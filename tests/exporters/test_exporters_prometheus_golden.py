"""``/metrics`` of a fixed store, byte for byte against ``golden/metrics.txt``.

The fleet is built from fixed reports with fixed timestamps (collection times, boot time and
the targets' last attempts), rendered as of a fixed instant, so the exposition is the same on
every run; only the scrape's own read duration varies and is replaced by ``<duration>`` before
comparing. A change of a name, label, HELP text, order or number format shows up as a diff.

After an intended change, regenerate the file and review its diff::

    RESMON_REGEN_GOLDEN=1 python -m pytest tests/exporters/test_exporters_prometheus_golden.py
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from exporters.prometheus import render_metrics
from resmon.contract import (
    Anomaly,
    CollectorInfo,
    Health,
    HostReport,
    HostState,
    HugePages,
    InstanceStates,
    Inventory,
    Location,
    NumaCell,
    ObservedUsage,
    ProviderKind,
    SharedStorageUsage,
)
from resmon.contract.testing import fake_report
from resmon.runner import CollectionOutcome
from resmon.store import Store, TargetSpec, models

GOLDEN = Path(__file__).parent / "golden" / "metrics.txt"
MIB = 1024 * 1024
GIB = 1024 * MIB
COLLECTED = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
#: The instant the exposition is rendered as of: a minute after the collections.
NOW = COLLECTED + timedelta(minutes=1)
_DURATION = re.compile(rb"^(resmon_exporter_store_read_duration_seconds) \S+$", re.MULTILINE)


def _at(report: HostReport) -> HostReport:
    report.collected_at = COLLECTED
    name = "vmware" if report.identity.target == "vc" else "libvirt"
    report.collector = CollectorInfo(name=name, version="1.4.0")
    return report


def _datastore(host_id: str, datacenter: str, hosts: list[str]) -> HostReport:
    """A vSphere datastore as the collector reports it: ``LocalDS_0`` is the name vcsim gives
    the first datastore of every datacenter, so the name alone does not tell them apart."""
    report = fake_report(host_id, target="vc", traits=("MISC_SHARES_VIA_AGGREGATE",))
    report.identity.hostname = "LocalDS_0"
    report.provider_kind = ProviderKind.SHARED_STORAGE
    report.hypervisor = report.cpu = report.memory = None
    report.supported_instances = []
    report.inventories = [Inventory(resource_class="DISK_GB", total=500, used=120)]
    report.shared_with = hosts
    report.location = Location(datacenter=datacenter)
    report.storage = SharedStorageUsage(provisioned_bytes=700 * GIB, uncommitted_bytes=580 * GIB)
    return _at(report)


def fleet() -> dict[str, list[HostReport]]:
    """A vCenter with two datacenters (a cluster and a standalone host), a libvirt host and a
    failed target; every schema 1.1 fact is set on at least one provider."""
    cluster = fake_report("domain-c7", target="vc", vcpus=32, memory_mib=131072, hv_type="vmware")
    cluster.identity.hostname = "gold"
    cluster.provider_kind = ProviderKind.CLUSTER
    cluster.location = Location(datacenter="DC0", cluster="gold")
    cluster.health = Health.OK
    esx = fake_report("host-21", target="vc", vcpus=32, memory_mib=131072, hv_type="vmware",
                      parent_id="domain-c7", used_vcpus=12, used_memory_mib=24576)  # fmt: skip
    esx.location = Location(datacenter="DC0", cluster="gold")
    esx.health = Health.WARNING
    esx.boot_time = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    esx.observed = ObservedUsage(cpu_used_mhz=2400, memory_used_bytes=30000 * MIB)
    esx.instance_states = InstanceStates(running=5, stopped=1, other=1)
    standalone = fake_report("host-35", target="vc", vcpus=8, memory_mib=32768, hv_type="vmware")
    standalone.location = Location(datacenter="DC1")
    standalone.state = HostState.MAINTENANCE
    standalone.health = Health.UNKNOWN
    kvm = fake_report("kvm-0", target="kvm", vcpus=16, memory_mib=65536, used_vcpus=4,
                      used_memory_mib=8192)  # fmt: skip
    kvm.numa_cells = [
        NumaCell(cell_id=c, cpus=list(range(c * 8, c * 8 + 8)), memory_bytes=32768 * MIB,
                 free_memory_bytes=16384 * MIB,
                 huge_pages=[HugePages(page_size_bytes=2 * MIB, total=512, free=500 - c),
                             HugePages(page_size_bytes=GIB, total=4, free=4)])
        for c in (0, 1)
    ]  # fmt: skip
    memory = kvm.inventory("MEMORY_MB")
    assert memory is not None
    memory.hypervisor_reserved, memory.operator_reserved = 200, 312
    kvm.boot_time = datetime(2026, 10, 2, 8, 15, 30, tzinfo=UTC)
    kvm.instance_states = InstanceStates(running=2, paused=1)
    kvm.anomalies = [Anomaly(code="unknown_cpu_model", field="cpu.model", message="odd")]
    return {
        "vc": [
            _at(cluster), _at(esx), _at(standalone),
            _datastore("datastore-11", "DC0", ["host-21"]),
            _datastore("datastore-41", "DC1", ["host-35"]),
        ],
        "kvm": [_at(kvm)],
        "old": [_at(fake_report("old-0", target="old", vcpus=4, memory_mib=8192))],
    }  # fmt: skip


def load(store: Store) -> None:
    collectors = {"vc": "vmware", "kvm": "libvirt", "old": "libvirt"}
    for target, reports in fleet().items():
        spec = TargetSpec(target, collectors[target], f"{collectors[target]}://{target}", 60.0)
        store.record(spec, CollectionOutcome(
            target=target, collector=collectors[target], started_at=COLLECTED, duration_s=1.5,
            reports=reports,
        ))  # fmt: skip
    failed = CollectionOutcome(
        target="old", collector="libvirt", started_at=COLLECTED, duration_s=30.0,
        error_kind="timeout", error_message="no answer in 30 s",
    )  # fmt: skip
    store.record(TargetSpec("old", "libvirt", "libvirt://old", 60.0), failed)
    # The store stamps a target's last attempt and success with the time it wrote them.
    targets = models.Target.__table__
    with store.session() as session, session.begin():
        session.execute(update(targets).values(last_attempt_at=COLLECTED + timedelta(seconds=2)))
        session.execute(
            update(targets)
            .where(targets.c.last_success_at.is_not(None))
            .values(last_success_at=COLLECTED + timedelta(seconds=2))
        )


@pytest.fixture
def body(tmp_path: Path) -> bytes:
    store = Store(f"sqlite:///{tmp_path / 'golden.db'}")
    try:
        store.upgrade()
        load(store)
        return _DURATION.sub(rb"\1 <duration>", render_metrics(store, now=NOW))
    finally:
        store.close()


def test_metrics_match_the_golden_file(body: bytes) -> None:
    if os.environ.get("RESMON_REGEN_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_bytes(body)
    assert body == GOLDEN.read_bytes(), (
        "/metrics differs from golden/metrics.txt; if the change is intended, regenerate it "
        "with RESMON_REGEN_GOLDEN=1 and review the diff"
    )


def test_the_golden_file_passes_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    text = GOLDEN.read_bytes().replace(b"<duration>", b"0.001")
    result = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, check=False
    )
    # Lint findings (e.g. a counter without _total) are printed with exit status 0.
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.strip() == b"" and result.stderr.strip() == b"", result


def test_same_named_datastores_are_told_apart_by_datacenter(body: bytes) -> None:
    info = [
        line for line in body.decode().splitlines()
        if line.startswith("resmon_host_info{") and 'hostname="LocalDS_0"' in line
    ]  # fmt: skip
    assert len(info) == 2
    assert {re.search(r'datacenter_name="([^"]*)"', line)[1] for line in info} == {  # type: ignore[index]
        "DC0",
        "DC1",
    }
