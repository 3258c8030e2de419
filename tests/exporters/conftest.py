"""A small fleet in a store, on SQLite and PostgreSQL (``database_url``).

::

    target kvm-a (fake, every 60 s, last collection ok)
    ├── host-0  kvm x86_64  16 VCPU ×4  32768 MiB  AVX2  parent cluster-1  2 NUMA cells, 2 MiB pages
    │           512 MiB reserved (200 by the hypervisor, 312 by policy), 1500 MHz and
    │           6144 MiB observed, booted 2026-11-01 06:30 UTC, health warning,
    │           3 instances running and 2 stopped
    ├── host-1  kvm x86_64   8 VCPU ×4  16384 MiB  AVX2 + COMPUTE_STATUS_DISABLED, 1 anomaly
    └── host-2  kvm x86_64  64 VCPU ×4  state maintenance
    target arm-b (fake, last collection ok)
    └── arm-0   qemu aarch64 32 VCPU ×4  65536 MiB  (no AVX2)
    target broken (fake, collected once, then unreachable: stale and failed)
    └── old-0   kvm x86_64 128 VCPU ×4
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from resmon.contract import (
    Anomaly,
    Health,
    HostReport,
    HostState,
    HugePages,
    InstanceStates,
    NumaCell,
    ObservedUsage,
)
from resmon.contract.testing import fake_report
from resmon.runner import CollectionOutcome
from resmon.store import Store, TargetSpec

MIB = 1024 * 1024
BOOT_TIME = datetime(2026, 11, 1, 6, 30, tzinfo=UTC)


def record(store: Store, target: str, reports: list[HostReport], **failure: str) -> None:
    outcome = CollectionOutcome(
        target=target, collector="fake", started_at=datetime.now(UTC), duration_s=0.25,
        reports=reports, **failure,  # type: ignore[arg-type]
    )  # fmt: skip
    store.record(TargetSpec(target, "fake", f"fake://{len(reports)}", 60.0), outcome)


def populate(store: Store) -> None:
    host0 = fake_report("host-0", target="kvm-a", vcpus=16, memory_mib=32768, used_vcpus=10,
                        used_memory_mib=4096, parent_id="cluster-1")  # fmt: skip
    host0.numa_cells = [
        NumaCell(cell_id=c, cpus=list(range(c * 8, c * 8 + 8)), memory_bytes=16384 * MIB,
                 free_memory_bytes=8192 * MIB,
                 huge_pages=[HugePages(page_size_bytes=2 * MIB, total=512, free=100 + c)])
        for c in (0, 1)
    ]  # fmt: skip
    # Its 512 MiB reserved as the core's policy splits it: held by the hypervisor + by policy.
    memory = host0.inventory("MEMORY_MB")
    assert memory is not None
    memory.hypervisor_reserved, memory.operator_reserved = 200, 312
    host0.observed = ObservedUsage(cpu_used_mhz=1500, memory_used_bytes=6144 * MIB)
    host0.boot_time = BOOT_TIME
    host0.health = Health.WARNING
    host0.instance_states = InstanceStates(running=3, stopped=2)
    host1 = fake_report("host-1", target="kvm-a", vcpus=8, memory_mib=16384,
                        traits=("HW_CPU_X86_AVX2", "COMPUTE_STATUS_DISABLED"))  # fmt: skip
    host1.anomalies = [Anomaly(code="unknown_cpu_model", field="cpu.model", message="odd")]
    host2 = fake_report("host-2", target="kvm-a", vcpus=64, memory_mib=262144)
    host2.state = HostState.MAINTENANCE
    record(store, "kvm-a", [host0, host1, host2])
    arm = fake_report("arm-0", target="arm-b", vcpus=32, memory_mib=65536, arch="aarch64",
                      hv_type="qemu", traits=())  # fmt: skip
    record(store, "arm-b", [arm])
    record(store, "broken", [fake_report("old-0", target="broken", vcpus=128, memory_mib=65536)])
    record(store, "broken", [], error_kind="unreachable", error_message="connection refused")


def _fleet(url: str) -> Iterator[Store]:
    s = Store(url)
    s.upgrade()
    populate(s)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """The fleet of this module's docstring."""
    yield from _fleet(database_url)


@pytest.fixture(scope="module")
def fleet_store(module_database_url: str) -> Iterator[Store]:
    """The same fleet, loaded once per module and backend, for tests that only read it."""
    yield from _fleet(module_database_url)
