"""The Placement-compatible read API in-process, on the shared-storage fleet of fleet.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from exporters.api import create_app
from exporters.placement_api import aggregate_uuid, provider_uuid
from resmon.store import Store

from .fleet import populate

ESX0, ESX1 = provider_uuid("vc", "esx-0"), provider_uuid("vc", "esx-1")
DS1, DS2 = provider_uuid("vc", "datastore-1"), provider_uuid("vc", "datastore-2")
KVM0, KVM1, POOL = (provider_uuid("kvm", h) for h in ("kvm-0", "kvm-1", "pool-rbd"))


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    store = Store(database_url)
    store.upgrade()
    populate(store)
    with TestClient(create_app(store)) as c:
        yield c
    store.close()


def get(client: TestClient, path: str, version: str | None = "1.39", status: int = 200) -> Any:
    headers = {"OpenStack-API-Version": f"placement {version}"} if version else {}
    response = client.get(f"/placement{path}", headers=headers)
    assert response.status_code == status, response.text
    return response.json()


def test_versions_and_refusals(client: TestClient) -> None:
    (version,) = get(client, "/", version=None)["versions"]
    assert (version["min_version"], version["max_version"]) == ("1.0", "1.39")
    response = client.get("/placement/", headers={"OpenStack-API-Version": "placement latest"})
    assert response.headers["openstack-api-version"] == "placement 1.39"
    for bad, status in (("1.40", 406), ("2.0", 406), ("1.x", 400)):
        (error,) = get(client, "/resource_providers", version=bad, status=status)["errors"]
        # Placement's shape for these (its microversion middleware): no code, the range on 406.
        assert error["status"] == status and "code" not in error
        assert bad in error["detail"] and error["request_id"].startswith("req-")
        if status == 406:
            assert (error["min_version"], error["max_version"]) == ("1.0", "1.39")
    # A parameter newer than the version asked for, and a route newer than it.
    get(client, "/allocation_candidates?resources=VCPU:1&limit=1", version="1.15", status=400)
    get(client, "/traits", version="1.5", status=404)
    (error,) = get(client, "/allocation_candidates?resources1=VCPU:1", status=400)["errors"]
    assert error["code"] == "placement.undefined_code" and "resources1" in error["detail"]


def test_providers_and_their_details(client: TestClient) -> None:
    providers = get(client, "/resource_providers")["resource_providers"]
    # Compute hosts and sharing providers, not the cluster; each is its own root.
    assert {p["uuid"] for p in providers} == {ESX0, ESX1, DS1, DS2, KVM0, KVM1, POOL}
    assert all(p["root_provider_uuid"] == p["uuid"] and p["parent_provider_uuid"] is None
               for p in providers)  # fmt: skip
    old = get(client, "/resource_providers", version="1.0")["resource_providers"]
    assert set(old[0]) == {"uuid", "name", "generation", "links"}
    disk = get(client, "/resource_providers?resources=DISK_GB:1500")["resource_providers"]
    assert [p["uuid"] for p in disk] == [POOL]
    avx512 = get(client, "/resource_providers?required=HW_CPU_X86_AVX512F")["resource_providers"]
    assert [p["uuid"] for p in avx512] == [ESX1]
    ds1_aggregate = aggregate_uuid("vc", "datastore-1")
    members = get(client, f"/resource_providers?member_of={ds1_aggregate}")
    assert {p["uuid"] for p in members["resource_providers"]} == {ESX0, ESX1, DS1}
    assert [p["uuid"] for p in get(client, f"/resource_providers?in_tree={KVM1}")[
        "resource_providers"]] == [KVM1]  # fmt: skip

    assert get(client, f"/resource_providers/{DS1}")["name"] == "vc:datastore-1"
    inventories = get(client, f"/resource_providers/{DS1}/inventories")
    assert inventories["inventories"] == {
        "DISK_GB": {"total": 1000, "reserved": 0, "min_unit": 1, "max_unit": 2147483647,
                    "step_size": 1, "allocation_ratio": 1.0}
    }  # fmt: skip
    assert get(client, f"/resource_providers/{DS1}/usages")["usages"] == {"DISK_GB": 100}
    traits = get(client, f"/resource_providers/{DS1}/traits")["traits"]
    assert traits == ["CUSTOM_VMWARE_DATASTORE_VMFS", "MISC_SHARES_VIA_AGGREGATE"]
    aggregates = get(client, f"/resource_providers/{ESX1}/aggregates")
    assert sorted(aggregates["aggregates"]) == sorted(
        [ds1_aggregate, aggregate_uuid("vc", "datastore-2")]
    )
    assert "resource_provider_generation" not in get(
        client, f"/resource_providers/{ESX1}/aggregates", version="1.18"
    )
    missing = get(client, "/resource_providers/00000000-0000-0000-0000-000000000000", status=404)
    assert missing["errors"][0]["title"] == "Not Found"
    assert "CUSTOM_VMWARE_DATASTORE_NFS" in get(client, "/traits?associated=true")["traits"]
    assert "HW_CPU_X86_AVX2" in get(client, "/traits")["traits"]
    names = [rc["name"] for rc in get(client, "/resource_classes")["resource_classes"]]
    assert {"VCPU", "MEMORY_MB", "DISK_GB"} <= set(names)


def test_allocation_candidates_in_each_shape(client: TestClient) -> None:
    query = "/allocation_candidates?resources=VCPU:4,MEMORY_MB:8192,DISK_GB:40"
    body = get(client, query)
    got = sorted(
        tuple(sorted((u, tuple(sorted(a["resources"].items())))
                     for u, a in r["allocations"].items()))
        for r in body["allocation_requests"]
    )  # fmt: skip

    def request(host: str, disk: str) -> tuple[Any, ...]:
        compute = (("MEMORY_MB", 8192), ("VCPU", 4))
        if host == disk:
            return ((host, (("DISK_GB", 40), *compute)),)
        return tuple(sorted(((host, compute), (disk, (("DISK_GB", 40),)))))

    assert got == sorted(
        [
            request(ESX0, DS1),
            request(ESX1, DS1),
            request(ESX1, DS2),
            request(KVM0, KVM0),
            request(KVM0, POOL),
            request(KVM1, KVM1),
        ]
    )
    summaries = body["provider_summaries"]
    assert summaries[DS1]["resources"] == {"DISK_GB": {"capacity": 1000, "used": 100}}
    assert "MISC_SHARES_VIA_AGGREGATE" in summaries[DS1]["traits"]
    assert summaries[DS1]["root_provider_uuid"] == DS1
    assert all(r["mappings"] == {"": sorted(r["allocations"])}
               for r in body["allocation_requests"])  # fmt: skip
    # 1.10: a list of allocations, no traits or roots in summaries, no mappings.
    old = get(client, query, version="1.10")
    first = old["allocation_requests"][0]
    assert isinstance(first["allocations"], list) and "mappings" not in first
    assert set(first["allocations"][0]) == {"resource_provider", "resources"}
    assert all(set(s) == {"resources"} for s in old["provider_summaries"].values())
    # A disk-only request served by a datastore is one answer, however many hosts mount it.
    disk_only = get(client, "/allocation_candidates?resources=DISK_GB:600&limit=10")
    answers = sorted(list(r["allocations"]) for r in disk_only["allocation_requests"])
    assert answers == sorted([[POOL], [DS1]])
    # Five answers for 50 GB (three datastores or pools alone, two local disks): a limit of 4
    # gives 4, however many host answers the sharing providers alone replace.
    for limit, count in ((4, 4), (10, 5)):
        body = get(client, f"/allocation_candidates?resources=DISK_GB:50&limit={limit}")
        assert len(body["allocation_requests"]) == count
    limited = get(client, query + "&limit=2&required=!CUSTOM_VMWARE_DATASTORE_VMFS")
    assert len(limited["allocation_requests"]) == 2


def test_candidates_in_tree_unknown_traits_and_member_of_syntax(client: TestClient) -> None:
    """Placement 16.0.0's rules, found by the oracle test (tests/placement/test_placement_sync):
    ``in_tree`` (1.31) keeps the answers made of that tree alone, sharing providers included
    only as their own tree; a trait Placement does not know is a 400, unless ``member_of``
    already matched no provider; several aggregates in one ``member_of`` need ``in:``."""

    def answers(query: str) -> list[list[str]]:
        body = get(client, f"/allocation_candidates?{query}")
        return sorted(sorted(r["allocations"]) for r in body["allocation_requests"])

    disk = "resources=VCPU:1,DISK_GB:40"
    assert answers(disk) == sorted([sorted(p) for p in (
        [ESX0, DS1], [ESX1, DS1], [ESX1, DS2], [KVM0], [KVM0, POOL], [KVM1])])  # fmt: skip
    assert answers(f"{disk}&in_tree={KVM0}") == [[KVM0]]
    assert answers(f"{disk}&in_tree={ESX0}") == []
    assert answers(f"resources=DISK_GB:1500&in_tree={POOL}") == [[POOL]]
    assert answers(f"{disk}&in_tree=00000000-0000-0000-0000-000000000000") == []
    get(client, f"/allocation_candidates?{disk}&in_tree={KVM0}", version="1.30", status=400)
    get(client, f"/allocation_candidates?{disk}&in_tree=kvm-0", status=400)

    (error,) = get(client, f"/allocation_candidates?{disk}&required=CUSTOM_NOBODY",
                   status=400)["errors"]  # fmt: skip
    assert error["detail"] == "No such trait(s): CUSTOM_NOBODY."
    get(client, f"/allocation_candidates?{disk}&required=!CUSTOM_NOBODY", status=400)
    # Known: a standard trait nobody has, and a custom one some provider has.
    assert answers(f"{disk}&required=HW_GPU_API_VULKAN") == []
    assert answers(f"{disk}&required=CUSTOM_VMWARE_DATASTORE_NFS") == [sorted([ESX1, DS2])]
    nowhere = "11111111-2222-3333-4444-555555555555"
    assert answers(f"{disk}&required=CUSTOM_NOBODY&member_of={nowhere}") == []

    ds1, ds2 = aggregate_uuid("vc", "datastore-1"), aggregate_uuid("vc", "datastore-2")
    (error,) = get(client, f"/allocation_candidates?{disk}&member_of={ds1},{ds2}",
                   status=400)["errors"]  # fmt: skip
    assert "must be prefixed with the 'in:' or '!in:'" in error["detail"]
    get(client, f"/allocation_candidates?{disk}&member_of=!{ds1},{ds2}", status=400)
    assert answers(f"{disk}&member_of=in:{ds1},{ds2}") == sorted(
        [sorted([ESX0, DS1]), sorted([ESX1, DS1]), sorted([ESX1, DS2])]
    )
    assert answers(f"{disk}&member_of=!in:{ds1},{ds2}") == sorted([[KVM0], sorted([KVM0, POOL]),
                                                                   [KVM1]])  # fmt: skip
