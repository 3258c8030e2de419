"""Real Placement clients (python-openstackclient + osc-placement, openstacksdk), installed in
their own venv, read resmon's ``/placement`` API and must see resmon's data.

Versions are pinned in clients-requirements.txt; the venv is created on first use.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exporters.placement_api import provider_uuid
from resmon.store import Store

from .fleet import fleet_reports, populate
from .tools import HERE, serve_resmon, tool_venv

pytestmark = pytest.mark.placement_clients

SDK_SCRIPT = """
import json, sys
import openstack

conn = openstack.connection.Connection(auth_type="none", placement_endpoint_override=sys.argv[1])
out = {}
for rp in conn.placement.resource_providers():
    out[rp.id] = {
        "name": rp.name, "generation": rp.generation, "root": rp.root_provider_id,
        "inventories": {
            inv.resource_class: {"total": inv.total, "reserved": inv.reserved,
                                 "allocation_ratio": inv.allocation_ratio,
                                 "max_unit": inv.max_unit}
            for inv in conn.placement.resource_provider_inventories(rp)
        },
    }
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def clients() -> Path:
    return tool_venv("placement-clients", HERE / "clients-requirements.txt")


@pytest.fixture
def endpoint(tmp_path: Path) -> Iterator[str]:
    store = Store(f"sqlite:///{tmp_path / 'resmon.db'}")
    store.upgrade()
    populate(store)
    with serve_resmon(store) as base:
        yield f"{base}/placement"
    store.close()


def expected_providers() -> dict[str, dict[str, Any]]:
    """What resmon holds, straight from the reports: the hosts and sharing providers."""
    out = {}
    for target, reports in fleet_reports().items():
        for report in reports:
            if report.provider_kind.value == "cluster":
                continue
            out[provider_uuid(target, report.identity.host_id)] = {
                "name": f"{target}:{report.identity.host_id}",
                "inventories": {i.resource_class: i for i in report.inventories},
            }
    return out


def osc(clients: Path, endpoint: str, *args: str, version: str = "1.39") -> Any:
    command = [
        str(clients / "openstack"), "--os-auth-type", "none", "--os-endpoint", endpoint,
        "--os-placement-api-version", version, *args, "-f", "json",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_osc_lists_resmons_providers(clients: Path, endpoint: str) -> None:
    expected = expected_providers()
    for version in ("1.0", "1.14", "1.39"):
        listed = osc(clients, endpoint, "resource", "provider", "list", version=version)
        assert {p["uuid"]: p["name"] for p in listed} == {
            u: p["name"] for u, p in expected.items()
        }, version
    ds1 = provider_uuid("vc", "datastore-1")
    inventory = osc(clients, endpoint, "resource", "provider", "inventory", "list", ds1)
    assert [(i["resource_class"], i["total"], i["used"]) for i in inventory] == [
        ("DISK_GB", 1000, 100)
    ]
    traits = osc(clients, endpoint, "resource", "provider", "trait", "list", ds1)
    assert {t["name"] for t in traits} == {"MISC_SHARES_VIA_AGGREGATE",
                                           "CUSTOM_VMWARE_DATASTORE_VMFS"}  # fmt: skip
    esx1 = provider_uuid("vc", "esx-1")
    aggregates = osc(clients, endpoint, "resource", "provider", "aggregate", "list", esx1)
    assert len(aggregates) == 2


def test_osc_lists_resmons_candidates(clients: Path, endpoint: str) -> None:
    rows = osc(
        clients, endpoint, "allocation", "candidate", "list", "--resource", "VCPU=4",
        "--resource", "MEMORY_MB=8192", "--resource", "DISK_GB=40",
    )  # fmt: skip
    requests: dict[int, set[tuple[str, frozenset[str]]]] = {}
    for row in rows:
        amounts = frozenset(row["allocation"].split(","))
        requests.setdefault(row["#"], set()).add((row["resource provider"], amounts))
    host = {h: provider_uuid("vc" if h.startswith(("esx", "data")) else "kvm", h)
            for h in ("esx-0", "esx-1", "kvm-0", "kvm-1", "datastore-1", "datastore-2",
                      "pool-rbd")}  # fmt: skip

    compute, disk_gb = frozenset({"VCPU=4", "MEMORY_MB=8192"}), frozenset({"DISK_GB=40"})

    def shared(h: str, disk: str) -> frozenset[tuple[str, frozenset[str]]]:
        return frozenset({(host[h], compute), (host[disk], disk_gb)})

    def local(h: str) -> frozenset[tuple[str, frozenset[str]]]:
        return frozenset({(host[h], compute | disk_gb)})

    assert {frozenset(r) for r in requests.values()} == {
        shared("esx-0", "datastore-1"), shared("esx-1", "datastore-1"),
        shared("esx-1", "datastore-2"), shared("kvm-0", "pool-rbd"), local("kvm-0"),
        local("kvm-1"),
    }  # fmt: skip
    # Traits and limit go through too (a forbidden trait needs 1.22 on the client's side).
    nfs = osc(
        clients, endpoint, "allocation", "candidate", "list", "--resource", "VCPU=1",
        "--resource", "DISK_GB=1", "--required", "CUSTOM_VMWARE_DATASTORE_NFS", "--limit", "5",
    )  # fmt: skip
    assert {row["resource provider"] for row in nfs} == {host["esx-1"], host["datastore-2"]}


def test_openstacksdk_reads_resmons_providers(clients: Path, endpoint: str) -> None:
    result = subprocess.run(
        [str(clients / "python"), "-c", SDK_SCRIPT, endpoint],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    expected = expected_providers()
    assert set(seen) == set(expected)
    for rp_uuid, provider in expected.items():
        assert seen[rp_uuid]["name"] == provider["name"]
        assert seen[rp_uuid]["root"] == rp_uuid
        assert seen[rp_uuid]["inventories"] == {
            rc: {"total": inv.total, "reserved": inv.reserved,
                 "allocation_ratio": inv.allocation_ratio, "max_unit": inv.max_unit}
            for rc, inv in provider["inventories"].items()
        }  # fmt: skip
