"""Fault profiles end to end: collector → runner → store on SQLite and PostgreSQL.

Each fault is recorded with its error kind, nothing of that run is stored, and the host's
earlier data stays exactly as it was.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from collectors.hyperv import HypervCollector
from exporters.api import create_app
from resmon.runner import CollectionOutcome, collect_target
from resmon.store import Store, TargetSpec

from .conftest import FAULTS, HOSTS, PASSWORD, ServerFactory, make_target
from .wsman_server import Reply


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Reply(stderr=(FAULTS / "role_absent.clixml").read_bytes(), exit_code=1), "unsupported"),
        (Reply(stderr=(FAULTS / "access_denied.clixml").read_bytes(), exit_code=1), "auth_failed"),
        (Reply(stderr=(FAULTS / "powershell_exception.clixml").read_bytes(), exit_code=1),
         "invalid_native_data"),
        (Reply(stdout=(FAULTS / "truncated.json").read_bytes()), "invalid_native_data"),
        (Reply(stdout=b"{}", delay_s=3.0), "timeout"),
    ],
    ids=["role-absent", "access-denied", "powershell-exception", "truncated-json", "slow"],
)  # fmt: skip
def test_fault_stores_nothing_and_keeps_earlier_data(
    store: Store, wsman: ServerFactory, pki: tuple[Path, Path, Path], fault: Reply, kind: str
) -> None:
    server = wsman()
    target = make_target(server, pki[0], timeout_s=1.5)
    spec = TargetSpec(name=target.name, collector="hyperv", url=target.url)

    good, _ = collect_target(HypervCollector, target)
    assert good.ok, good.error_message
    store.record(spec, good)
    before = store.reports(target.name)
    assert before and before[0].running_instances.count > 0

    server.reply = fault
    bad, _ = collect_target(HypervCollector, target)
    assert bad.error_kind == kind, bad.error_message
    store.record(spec, bad)

    assert store.reports(target.name) == before
    runs = store.runs(target.name)
    assert [(r.status, r.error_kind) for r in runs] == [("success", None), ("failed", kind)]
    assert PASSWORD not in (runs[-1].error_message or "")
    [row] = store.targets()
    assert row.last_status == "failed" and row.consecutive_failures == 1


def test_schedulers_find_hyperv_hosts_by_cpu_feature(store: Store) -> None:
    """Every host profile stored, then asked for through the query API as a scheduler would."""
    for path in sorted(HOSTS.glob("*.json")):
        (report,) = HypervCollector.normalise_offline({"json": [path]}, target=path.stem)
        outcome = CollectionOutcome(
            target=path.stem, collector="hyperv", started_at=datetime.now(UTC), duration_s=1.0,
            reports=[report],
        )  # fmt: skip
        store.record(TargetSpec(path.stem, "hyperv", f"https://{path.stem}:5986/wsman"), outcome)
    with TestClient(create_app(store)) as client:

        def found(query: str) -> list[str]:
            response = client.get(f"/v1/candidates?{query}")
            assert response.status_code == 200, response.text
            return sorted(c["target"] for c in response.json()["candidates"])

        # hypervisor_off reports AVX2 too but cannot run a VM, and every VCPU of the lab host
        # (server2022_every_vm_state) is taken: neither is offered.
        assert found("resources=VCPU:1&required=HW_CPU_X86_AVX2") == [
            "server2016_config8",
            "server2019_small",
            "server2022_2socket",
            "server2025_numa_off",
        ]
        assert found("resources=VCPU:1&required=HW_CPU_X86_AVX512F") == [
            "server2022_2socket",
            "server2025_numa_off",
        ]
        assert found("resources=VCPU:1&required=HW_CPU_AARCH64_SHA2") == ["arm64_windows11"]
        # Without NUMA spanning one VM fits in one node: 192 of the 384 logical processors.
        assert "server2025_numa_off" in found("resources=VCPU:192")
        assert "server2025_numa_off" not in found("resources=VCPU:193")
