"""``/v1/candidates`` with sharing providers: which provider supplies which amount."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from exporters._params import encode_host_ref
from exporters.api import create_app
from resmon.store import Store
from tests.placement.fleet import populate


@pytest.fixture
def client(database_url: str) -> Iterator[TestClient]:
    store = Store(database_url)
    store.upgrade()
    populate(store)
    with TestClient(create_app(store)) as c:
        yield c
    store.close()


def answers(client: TestClient, query: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/candidates?{query}")
    assert response.status_code == 200, response.text
    return response.json()["candidates"]  # type: ignore[no-any-return]


def suppliers(candidate: dict[str, Any]) -> dict[str, str]:
    return {rc: r["provider"] for rc, r in candidate["resources"].items()}


def test_candidates_span_a_host_and_its_sharing_providers(client: TestClient) -> None:
    found = answers(client, "resources=VCPU:4,MEMORY_MB:8192,DISK_GB:40&limit=100")
    ref = encode_host_ref
    got = sorted((c["host_id"], tuple(sorted(suppliers(c).items()))) for c in found)
    disk = lambda host, provider: (host, (("DISK_GB", ref(*provider)),  # noqa: E731
                                          ("MEMORY_MB", ref(*host_key[host])),
                                          ("VCPU", ref(*host_key[host]))))  # fmt: skip
    host_key = {h: ("vc" if h.startswith("esx") else "kvm", h)
                for h in ("esx-0", "esx-1", "kvm-0", "kvm-1")}  # fmt: skip
    assert got == sorted([
        disk("esx-0", ("vc", "datastore-1")),
        disk("esx-1", ("vc", "datastore-1")),
        disk("esx-1", ("vc", "datastore-2")),
        disk("kvm-0", ("kvm", "kvm-0")),  # local disk ...
        disk("kvm-0", ("kvm", "pool-rbd")),  # ... and the shared pool: both answers
        disk("kvm-1", ("kvm", "kvm-1")),
    ])  # fmt: skip
    esx0 = next(c for c in found if c["host_id"] == "esx-0")
    assert esx0["resources"]["DISK_GB"] == {
        "requested": 40, "free": 900, "free_after": 860, "provider": ref("vc", "datastore-1")
    }  # fmt: skip
    (shared,) = esx0["sharing_providers"]
    assert shared["host_id"] == "datastore-1" and shared["resources"] == {"DISK_GB": 40}
    assert shared["inventories"]["DISK_GB"]["capacity"] == 1000
    assert "DISK_GB" not in esx0["inventories"]


def test_order_and_traits_follow_the_supplier(client: TestClient) -> None:
    # DISK_GB first: ordered by the supplier's free disk (pool 2000, ds-1 900, ds-2 500, ...).
    found = answers(client, "resources=DISK_GB:10&order=most_free&limit=3")
    assert [c["resources"]["DISK_GB"]["free"] for c in found] == [2000, 900, 900]
    # A trait that only the NFS datastore has: only esx-1 through datastore-2.
    nfs = answers(client, "resources=VCPU:1,DISK_GB:10&required=CUSTOM_VMWARE_DATASTORE_NFS")
    assert [(c["host_id"], c["resources"]["DISK_GB"]["provider"]) for c in nfs] == [
        ("esx-1", encode_host_ref("vc", "datastore-2"))
    ]
    # Forbidden on any provider of the answer: VMFS excludes datastore-1 answers.
    no_vmfs = answers(client, "resources=VCPU:1,DISK_GB:10&required=!CUSTOM_VMWARE_DATASTORE_VMFS")
    assert {c["resources"]["DISK_GB"]["provider"] for c in no_vmfs} == {
        encode_host_ref("vc", "datastore-2"), encode_host_ref("kvm", "pool-rbd"),
        encode_host_ref("kvm", "kvm-0"), encode_host_ref("kvm", "kvm-1"),
    }  # fmt: skip
    # Too much for any datastore and any local disk.
    assert answers(client, "resources=VCPU:1,DISK_GB:2001") == []
