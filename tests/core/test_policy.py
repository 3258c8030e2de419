"""The operator's policy, applied by the core: levels, rules, config, runner and CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from resmon.cli import main
from resmon.config import ConfigError, load_config
from resmon.contract import HostReport, HostState, Inventory, ProviderKind, Target
from resmon.contract.testing import FakeCollector, fake_report
from resmon.policy import Policy, PolicyTable, TargetPolicy, apply_policy, resolve_policy
from resmon.registry import register, unregister
from resmon.runner import collect_target
from resmon.store import Store


@pytest.fixture(autouse=True)
def fake_registered() -> Iterator[None]:
    register(FakeCollector)
    yield
    unregister("fake")


def table(**values: Any) -> PolicyTable:
    return PolicyTable.model_validate(values)


def inventory(report: HostReport, rc: str) -> Inventory:
    inv = report.inventory(rc)
    assert inv is not None
    return inv


def test_defaults_are_novas() -> None:
    policy = TargetPolicy.defaults()[ProviderKind.COMPUTE_HOST]
    assert policy == Policy(
        cpu_allocation_ratio=4.0, ram_allocation_ratio=1.0, disk_allocation_ratio=1.0,
        reserved_host_cpus=0, reserved_host_memory_mb=512, reserved_host_disk_gb=0,
    )  # fmt: skip


def test_the_most_specific_level_wins() -> None:
    everywhere = table(
        cpu_allocation_ratio=8.0,
        ram_allocation_ratio=1.2,
        reserved_host_cpus=1,
        shared_storage={"disk_allocation_ratio": 2.0, "reserved_host_disk_gb": 5},
        compute_host={"ram_allocation_ratio": 1.1},
    )
    target = table(cpu_allocation_ratio=3.0, compute_host={"reserved_host_cpus": 4})
    resolved = resolve_policy(everywhere, target)
    host = resolved[ProviderKind.COMPUTE_HOST]
    assert host.cpu_allocation_ratio == 3.0, "target over global"
    assert host.reserved_host_cpus == 4, "target and kind over target"
    assert host.ram_allocation_ratio == 1.1, "global kind over global"
    assert host.reserved_host_memory_mb == 512, "Nova's default when nothing is set"
    storage = resolved[ProviderKind.SHARED_STORAGE]
    assert (storage.disk_allocation_ratio, storage.reserved_host_disk_gb) == (2.0, 5)
    assert storage.cpu_allocation_ratio == 3.0 and storage.reserved_host_cpus == 1
    assert resolved[ProviderKind.CLUSTER].ram_allocation_ratio == 1.2


def test_reserved_is_hypervisor_plus_operator_and_clamped_with_an_anomaly() -> None:
    report = fake_report("h", vcpus=4, memory_mib=1024)
    inventory(report, "MEMORY_MB").hypervisor_reserved = 300
    inventory(report, "VCPU").hypervisor_reserved = 3
    policy = resolve_policy(table(reserved_host_cpus=2), None)
    (settled,), anomalies = apply_policy([report], policy)
    memory = inventory(settled, "MEMORY_MB")
    assert (memory.reserved, memory.hypervisor_reserved, memory.operator_reserved) == (
        812,
        300,
        512,
    )
    assert memory.capacity == 1024 - 812
    vcpu = inventory(settled, "VCPU")
    assert (vcpu.reserved, vcpu.hypervisor_reserved, vcpu.operator_reserved) == (4, 3, 2)
    (clamped,) = anomalies[report.key]
    assert clamped.code == "policy.reserved_clamped" and clamped.field == "inventories[VCPU]"
    assert "exceeds total 4" in clamped.message


def test_a_provider_not_up_is_fully_reserved_without_an_anomaly() -> None:
    report = fake_report("h", vcpus=4)
    report.state = HostState.MAINTENANCE
    (settled,), anomalies = apply_policy([report], TargetPolicy.defaults())
    assert all(i.reserved == i.total and i.capacity == 0 for i in settled.inventories)
    assert inventory(settled, "MEMORY_MB").operator_reserved == 512, "the parts stay visible"
    assert anomalies == {}


def cluster_of(member: HostReport, *inventories: Inventory) -> HostReport:
    """Cluster "c", the parent of ``member``, with these inventories."""
    return HostReport(
        provider_kind=ProviderKind.CLUSTER,
        identity={"host_id": "c", "target": "fake"},
        inventories=list(inventories),
        collected_at=member.collected_at,
        collector=member.collector,
    )


def test_a_cluster_reserves_what_its_hosts_reserve() -> None:
    up = fake_report("h1", vcpus=8, memory_mib=4096, parent_id="c")
    down = fake_report("h2", vcpus=8, memory_mib=4096, parent_id="c")
    down.state = HostState.MAINTENANCE
    inventory(up, "MEMORY_MB").hypervisor_reserved = 100
    cluster = cluster_of(
        up,
        Inventory(resource_class="VCPU", total=16, max_unit=8),
        Inventory(resource_class="MEMORY_MB", total=8192, hypervisor_reserved=100),
    )
    policy = resolve_policy(table(cluster={"cpu_allocation_ratio": 2.0}), None)
    settled, _ = apply_policy([cluster, up, down], policy)
    memory = inventory(settled[0], "MEMORY_MB")
    assert (memory.hypervisor_reserved, memory.operator_reserved) == (100, 1024)
    assert memory.reserved == (100 + 512) + 4096, "the host in maintenance is reserved whole"
    vcpu = inventory(settled[0], "VCPU")
    assert vcpu.allocation_ratio == 2.0 and vcpu.reserved == 8
    assert inventory(settled[1], "VCPU").allocation_ratio == 4.0, "hosts keep their own policy"


def test_a_cluster_keeps_what_it_holds_beyond_its_hosts() -> None:
    """vSphere HA failover capacity and resource-pool reservations are the cluster's own: the
    collector reports them in the cluster's hypervisor_reserved, above its members' sum."""
    host = fake_report("h1", vcpus=8, memory_mib=4096, parent_id="c")
    inventory(host, "MEMORY_MB").hypervisor_reserved = 100
    cluster = cluster_of(
        host,
        Inventory(resource_class="VCPU", total=8, hypervisor_reserved=2),
        Inventory(resource_class="MEMORY_MB", total=4096, hypervisor_reserved=100 + 1024),
    )
    settled, anomalies = apply_policy([cluster, host], TargetPolicy.defaults())
    memory, vcpu = inventory(settled[0], "MEMORY_MB"), inventory(settled[0], "VCPU")
    assert (memory.hypervisor_reserved, memory.operator_reserved) == (1124, 512)
    assert memory.reserved == 1124 + 512
    assert (vcpu.hypervisor_reserved, vcpu.reserved) == (2, 2), "Nova reserves no CPUs"
    assert anomalies == {}


def test_a_schema_1_0_report_keeps_its_reservation_as_hypervisor_held(tmp_path: Path) -> None:
    raw = fake_report("old", memory_mib=2048).model_dump(mode="json")
    raw["schema_version"] = "1.0"
    for inv in raw["inventories"]:
        del inv["hypervisor_reserved"], inv["operator_reserved"]
    raw["memory"]["used_bytes"] = 1024 * 2**20
    target = Target(name="fake", collector="fake", url="fake://1", options={"reports": [raw]})
    outcome, _ = collect_target(FakeCollector, target)
    assert outcome.ok, outcome.error_message
    (report,) = outcome.reports
    assert report.schema_version == "1.0"
    memory = inventory(report, "MEMORY_MB")
    assert (memory.reserved, memory.hypervisor_reserved, memory.operator_reserved) == (
        1024, 512, 512,
    )  # fmt: skip
    assert report.observed is not None and report.observed.memory_used_bytes == 1024 * 2**20
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    store.upgrade()
    from resmon.store import TargetSpec

    store.record(TargetSpec("fake", "fake", "fake://1"), outcome)
    (stored,) = store.reports("fake")
    assert stored.schema_version == "1.0" and inventory(stored, "MEMORY_MB").reserved == 1024
    store.close()


def test_runner_applies_the_given_policy() -> None:
    target = Target(name="t", collector="fake", url="fake://2")
    policy = resolve_policy(table(cpu_allocation_ratio=16.0, reserved_host_cpus=1), None)
    outcome, _ = collect_target(FakeCollector, target, policy=policy)
    assert outcome.ok
    for report in outcome.reports:
        vcpu = inventory(report, "VCPU")
        assert (vcpu.allocation_ratio, vcpu.reserved, vcpu.capacity) == (16.0, 1, 7 * 16)


def test_policy_given_as_collector_options_names_the_new_setting() -> None:
    target = Target(
        name="t", collector="fake", url="fake://1", options={"reserved_host_memory_mb": 0}
    )
    outcome, _ = collect_target(FakeCollector, target)
    assert outcome.error_kind == "unsupported"
    assert "reserved_host_memory_mb" in (outcome.error_message or "")
    assert "[targets.policy]" in (outcome.error_message or "")


BASE = """
[resmon]
listen = ""
[resmon.policy]
cpu_allocation_ratio = 2.0
[resmon.policy.shared_storage]
disk_allocation_ratio = 1.5

[[targets]]
name = "a"
collector = "fake"
url = "fake://1"
"""


def test_config_reads_policy_tables(tmp_path: Path) -> None:
    path = tmp_path / "resmon.toml"
    path.write_text(BASE + "[targets.policy]\nreserved_host_memory_mb = 0\n")
    config = load_config(path)
    policy = config.policy_for(config.targets[0])
    host = policy[ProviderKind.COMPUTE_HOST]
    assert (host.cpu_allocation_ratio, host.reserved_host_memory_mb) == (2.0, 0)
    assert policy[ProviderKind.SHARED_STORAGE].disk_allocation_ratio == 1.5


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("options = { cpu_allocation_ratio = 8.0 }\n", "set it in [resmon.policy]"),
        ("[targets.policy]\ncpu_allocation_ratio = 0\n", "targets[0].policy.cpu_allocation_ratio"),
        ("[targets.policy]\nreserved_host_ram_mb = 1\n", "policy.reserved_host_ram_mb"),
    ],
)
def test_bad_policy_config_is_named(tmp_path: Path, extra: str, expected: str) -> None:
    path = tmp_path / "resmon.toml"
    path.write_text(BASE + extra)
    with pytest.raises(
        ConfigError, match=r"(?s)" + expected.replace("[", r"\[").replace(".", r"\.")
    ):
        load_config(path)


def test_collect_once_prints_figures_after_policy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "resmon.toml"
    path.write_text(BASE)
    assert main(["collect", "--once", "--config", str(path), "--format", "json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    vcpu = next(i for i in report["inventories"] if i["resource_class"] == "VCPU")
    memory = next(i for i in report["inventories"] if i["resource_class"] == "MEMORY_MB")
    assert vcpu["allocation_ratio"] == 2.0
    assert (memory["reserved"], memory["operator_reserved"]) == (512, 512)
