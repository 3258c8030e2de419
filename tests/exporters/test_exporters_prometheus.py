"""The Prometheus exporter on a populated store: names, labels, values, promtool."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporters import prometheus
from exporters.prometheus import FORBIDDEN_LABELS, METRICS, StoreCollector, render_metrics
from resmon.store import Store

from .conftest import BOOT_TIME, populate

MIB = 1024 * 1024


def samples(body: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(body: bytes, name: str, **labels: str) -> float:
    return samples(body)[(name, frozenset(labels.items()))]


def test_values_of_a_populated_store(store: Store) -> None:
    body = render_metrics(store)
    host0 = {"host_id": "host-0", "target": "kvm-a"}
    assert value(body, "resmon_inventory_total_units", **host0, resource_class="VCPU") == 16
    assert value(body, "resmon_inventory_capacity_units", **host0, resource_class="VCPU") == 64
    assert value(body, "resmon_inventory_free_units", **host0, resource_class="VCPU") == 54
    assert value(body, "resmon_inventory_allocation_ratio", **host0, resource_class="VCPU") == 4
    assert value(body, "resmon_inventory_total_bytes", **host0, resource_class="MEMORY_MB") == (
        32768 * MIB
    )
    assert value(body, "resmon_inventory_reserved_bytes", **host0, resource_class="MEMORY_MB") == (
        512 * MIB
    )
    assert value(body, "resmon_inventory_free_bytes", **host0, resource_class="MEMORY_MB") == (
        (32768 - 512 - 4096) * MIB
    )
    assert value(body, "resmon_inventory_total_bytes", **host0, resource_class="DISK_GB") == (
        100 * 1024 * MIB
    )
    assert value(body, "resmon_numa_cell_cpus", **host0, cell="1") == 8
    assert value(body, "resmon_numa_cell_memory_bytes", **host0, cell="0") == 16384 * MIB
    assert value(body, "resmon_numa_cell_memory_free_bytes", **host0, cell="0") == 8192 * MIB
    pages = {**host0, "cell": "1", "page_size_bytes": str(2 * MIB)}
    assert value(body, "resmon_numa_cell_huge_pages", **pages) == 512
    assert value(body, "resmon_numa_cell_huge_pages_free", **pages) == 101
    assert value(body, "resmon_host_state", host_id="host-2", target="kvm-a", state="maintenance")
    assert value(
        body, "resmon_host_supported_instance_info",
        host_id="arm-0", target="arm-b", arch="aarch64", hv_type="qemu", vm_mode="hvm",
    ) == 1  # fmt: skip
    assert value(body, "resmon_host_last_collected_timestamp_seconds", **host0) > 1.7e9
    assert value(
        body, "resmon_host_info", **host0, hostname="host-0.example", provider_kind="compute_host",
        parent="cluster-1", datacenter_name="", cluster_name="", hv_type="kvm",
        hypervisor_version="1.2.3", arch="x86_64", cpu_model="FakeCPU", collector="fake",
        collector_version="1.0",
    ) == 1  # fmt: skip


def test_targets_errors_anomalies_and_staleness(store: Store) -> None:
    body = render_metrics(store)
    ok = {"collector": "fake", "target": "kvm-a"}
    broken = {"collector": "fake", "target": "broken"}
    assert value(body, "resmon_collector_success", **ok) == 1
    assert value(body, "resmon_collector_success", **broken) == 0
    assert value(body, "resmon_collector_duration_seconds", **ok) == 0.25
    assert value(body, "resmon_collector_runs_total", **broken) == 2
    assert value(body, "resmon_collector_errors_total", **broken, kind="unreachable") == 1
    assert value(body, "resmon_collector_consecutive_failures", **broken) == 1
    assert value(body, "resmon_target_stale", **broken) == 1
    assert value(body, "resmon_target_stale", **ok) == 0
    assert value(body, "resmon_stale_hosts", **broken) == 1
    assert value(body, "resmon_stale_hosts", **ok) == 0
    assert value(body, "resmon_target_providers", **ok) == 3
    success_at = value(body, "resmon_collector_last_success_timestamp_seconds", **broken)
    attempt_at = value(body, "resmon_collector_last_attempt_timestamp_seconds", **broken)
    assert attempt_at > success_at > 1.7e9
    assert value(body, "resmon_anomalies", target="kvm-a", code="unknown_cpu_model") == 1
    assert value(body, "resmon_exporter_store_success") == 1
    # The failed target's providers are kept as they were last seen.
    assert value(
        body, "resmon_inventory_total_units", host_id="old-0", target="broken",
        resource_class="VCPU",
    ) == 128  # fmt: skip


def test_reserved_parts_observed_use_and_host_facts(store: Store) -> None:
    body = render_metrics(store)
    host0 = {"host_id": "host-0", "target": "kvm-a"}
    memory = {**host0, "resource_class": "MEMORY_MB"}
    assert value(body, "resmon_inventory_reserved_bytes", **memory) == 512 * MIB
    assert value(body, "resmon_inventory_hypervisor_reserved_bytes", **memory) == 200 * MIB
    assert value(body, "resmon_inventory_operator_reserved_bytes", **memory) == 312 * MIB
    vcpu = {**host0, "resource_class": "VCPU"}
    assert value(body, "resmon_inventory_operator_reserved_units", **vcpu) == 0
    # Observed use next to what is allocated (used = 10 VCPU, 4096 MiB).
    assert value(body, "resmon_inventory_used_units", **vcpu) == 10
    assert value(body, "resmon_host_observed_cpu_used_hertz", **host0) == 1500 * 10**6
    assert value(body, "resmon_host_observed_memory_used_bytes", **host0) == 6144 * MIB
    assert value(body, "resmon_host_boot_timestamp_seconds", **host0) == BOOT_TIME.timestamp()
    assert value(body, "resmon_host_health", health="warning", **host0) == 1
    assert value(body, "resmon_host_instances", state="running", **host0) == 3
    assert value(body, "resmon_host_instances", state="stopped", **host0) == 2
    assert value(body, "resmon_host_instances", state="paused", **host0) == 0
    host1 = {"host_id": "host-1", "target": "kvm-a"}
    assert b'resmon_host_health{host_id="host-1"' not in body, "host-1 reports no health"
    assert value(body, "resmon_inventory_total_units", resource_class="VCPU", **host1) == 8


def test_names_labels_and_help_follow_the_conventions(store: Store) -> None:
    body = render_metrics(store)
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    # Counters lose _total when parsed; every catalogued family is present with its HELP.
    assert {n.removesuffix("_total") for n in METRICS} == set(families)
    for name, (kind, _help, labels) in METRICS.items():
        family = families[name.removesuffix("_total")]
        assert family.type == kind
        assert name.startswith("resmon_")
        assert (kind == "counter") == name.endswith("_total")
        if not name.startswith("resmon_exporter_"):
            assert family.documentation.endswith(
                "As of the last collection (collected on the daemon's schedule, not at scrape)."
            ), name
        for s in family.samples:
            assert set(s.labels) == set(labels), (name, s.labels)
            assert not FORBIDDEN_LABELS & set(s.labels)


def test_store_collector_says_what_render_says(store: Store) -> None:
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    via_client = samples(generate_latest(registry))
    direct = samples(render_metrics(store))
    volatile = "resmon_exporter_store_read_duration_seconds"
    assert {k: v for k, v in via_client.items() if k[0] != volatile} == {
        k: v for k, v in direct.items() if k[0] != volatile
    }


def test_label_values_are_escaped(database_url: str) -> None:
    from resmon.contract.testing import fake_report

    from .conftest import record

    s = Store(database_url)
    s.upgrade()
    try:
        report = fake_report('odd"host\\1', target="t")
        report.cpu.model = 'Weird "CPU"\nline two'  # type: ignore[union-attr]
        record(s, "t", [report])
        body = render_metrics(s)
    finally:
        s.close()
    info = [
        f for f in text_string_to_metric_families(body.decode()) if f.name == "resmon_host_info"
    ]
    (sample,) = info[0].samples
    assert sample.labels["host_id"] == 'odd"host\\1'
    assert sample.labels["cpu_model"] == 'Weird "CPU"\nline two'


def test_unreadable_store_gives_store_success_zero(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path / 'never-migrated.db'}")
    try:
        body = render_metrics(s)
    finally:
        s.close()
    assert value(body, "resmon_exporter_store_success") == 0
    assert not [k for k in samples(body) if k[0].startswith("resmon_host")]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian prometheus) absent")
def test_promtool_check_metrics_is_clean(store: Store) -> None:
    body = render_metrics(store)
    result = subprocess.run(
        ["promtool", "check", "metrics"], input=body, capture_output=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b"" and result.stderr.strip() == b"", result


def test_slow_rendering_does_not_count_against_the_database_timeout(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Turning a large fleet's rows into text can take longer than ``database_timeout_s`` on a
    loaded machine. Only the database calls are bounded: the render neither fails nor marks the
    store down (which would also cut the daemon's writes on the same engine)."""
    loader = Store(database_url)
    loader.upgrade()
    populate(loader)
    loader.close()
    store = Store(database_url, timeout_s=2.0)
    # Rows a few at a time, and the first few chunks turned into text slowly: 4 s in all.
    monkeypatch.setattr(prometheus, "_CHUNK_ROWS", 1)
    flush, slow = prometheus._Lines.flush, iter(range(4))

    def slow_flush(lines: prometheus._Lines) -> None:
        if next(slow, None) is not None:
            time.sleep(1.0)
        flush(lines)

    monkeypatch.setattr(prometheus._Lines, "flush", slow_flush)
    try:
        body = render_metrics(store)
        assert store.health().up
    finally:
        store.close()
    assert next(slow, None) is None  # the slow part did run
    assert value(body, "resmon_exporter_store_success") == 1
    assert value(body, "resmon_exporter_store_up") == 1
    host0 = {"host_id": "host-0", "target": "kvm-a", "resource_class": "VCPU"}
    assert value(body, "resmon_inventory_total_units", **host0) == 16
