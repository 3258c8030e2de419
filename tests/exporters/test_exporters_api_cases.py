"""The query API as tables of requests and expected answers, one test per row (in the manner of
Placement's gabbi files): a wrong answer fails its own row, named by its query.

The fleet is the one of ``conftest.py``, loaded once per backend; every row only reads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from exporters.api import create_app
from resmon.store import Store


@pytest.fixture(scope="module")
def api(fleet_store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(fleet_store)) as c:
        yield c


def _rows(table: dict[str, Any]) -> list[Any]:
    return [
        pytest.param(query, expected, id=query or "<empty>") for query, expected in table.items()
    ]


# GET /v1/hosts?<query> -> the host ids listed
HOST_FILTERS = {
    "": ["arm-0", "host-0", "host-1", "host-2", "old-0"],
    "hv_type=qemu": ["arm-0"],
    "arch=aarch64": ["arm-0"],
    "parent=cluster-1": ["host-0"],
    "state=maintenance": ["host-2"],
    "stale=true": ["old-0"],
    "stale=false": ["host-0", "host-1", "host-2", "arm-0"],
    "target=kvm-a&state=up": ["host-0", "host-1"],
    "provider_kind=cluster": [],
    "target=nope": [],
}


@pytest.mark.parametrize(("query", "expected"), _rows(HOST_FILTERS))
def test_host_filter(api: TestClient, query: str, expected: list[str]) -> None:
    response = api.get(f"/v1/hosts?{query}")
    assert response.status_code == 200, response.text
    assert sorted(h["host_id"] for h in response.json()["hosts"]) == sorted(expected)


# GET /v1/candidates?<query> -> the host ids offered (host-2 is in maintenance, old-0 stale)
CANDIDATES = {
    "resources=VCPU:4,MEMORY_MB:1024": ["arm-0", "host-0", "host-1"],
    "resources=VCPU:40": ["arm-0", "host-0"],
    "resources=VCPU:55": ["arm-0"],
    "resources=VCPU:129": [],
    "resources=MEMORY_MB:30000": ["arm-0"],
    "resources=DISK_GB:100": ["arm-0", "host-0", "host-1"],
    "resources=DISK_GB:101": [],
    "resources=VGPU:1": [],
    "resources=CUSTOM_FPGA:1": [],
    "resources=VCPU:1&required=HW_CPU_X86_AVX2": ["host-0", "host-1"],
    "resources=VCPU:1&required=HW_CPU_X86_AVX2,!COMPUTE_STATUS_DISABLED": ["host-0"],
    "resources=VCPU:1&required=HW_CPU_X86_AVX2&required=!COMPUTE_STATUS_DISABLED": ["host-0"],
    "resources=VCPU:1&required=!HW_CPU_X86_AVX2": ["arm-0"],
    "resources=VCPU:1&instance=x86_64/kvm/hvm": ["host-0", "host-1"],
    "resources=VCPU:1&instance=aarch64/qemu/hvm": ["arm-0"],
    "resources=VCPU:1&instance=amd64/kvm/hvm": ["host-0", "host-1"],
    "resources=VCPU:1&instance=x86_64/xen/xen": [],
    "resources=VCPU:100&include_stale=true": ["arm-0", "old-0"],
    "resources=VCPU:500&include_stale=true": ["old-0"],
}


@pytest.mark.parametrize(("query", "expected"), _rows(CANDIDATES))
def test_candidate_query(api: TestClient, query: str, expected: list[str]) -> None:
    response = api.get(f"/v1/candidates?{query}")
    assert response.status_code == 200, response.text
    assert sorted(c["host_id"] for c in response.json()["candidates"]) == sorted(expected)


# GET <url> -> 400 with (error code, a part of the detail that names what was wrong)
BAD_QUERIES = {
    "/v1/candidates?": ("resmon.query.invalid_parameter", "resources"),
    "/v1/candidates?resources=": ("resmon.query.invalid_resources", "''"),
    "/v1/candidates?resources=VCPU": ("resmon.query.invalid_resources", "'VCPU'"),
    "/v1/candidates?resources=VCPU:": ("resmon.query.invalid_resources", "'VCPU:'"),
    "/v1/candidates?resources=VCPU:4,": ("resmon.query.invalid_resources", "''"),
    "/v1/candidates?resources=CPUS:4": ("resmon.query.unknown_resource_class", "'CPUS'"),
    "/v1/candidates?resources=vcpu:4": ("resmon.query.unknown_resource_class", "'vcpu'"),
    "/v1/candidates?resources=VCPU:four": ("resmon.query.invalid_resources", "'four'"),
    "/v1/candidates?resources=VCPU:1.5": ("resmon.query.invalid_resources", "'1.5'"),
    "/v1/candidates?resources=VCPU:-4": ("resmon.query.invalid_resources", "-4 of VCPU"),
    "/v1/candidates?resources=VCPU:0": ("resmon.query.invalid_resources", "0 of VCPU"),
    "/v1/candidates?resources=VCPU:99999999999": (
        "resmon.query.invalid_resources", "99999999999 of VCPU"),
    "/v1/candidates?resources=VCPU:1,VCPU:2": (
        "resmon.query.invalid_resources", "VCPU is given twice"),
    "/v1/candidates?resources=VCPU:1&required=HW_CPU_X86_AVX9": (
        "resmon.query.unknown_trait", "AVX9"),
    "/v1/candidates?resources=VCPU:1&required=!NOPE": ("resmon.query.unknown_trait", "'NOPE'"),
    "/v1/candidates?resources=VCPU:1&required=": ("resmon.query.invalid_traits", "empty trait"),
    "/v1/candidates?resources=VCPU:1&required=!": ("resmon.query.invalid_traits", "empty trait"),
    "/v1/candidates?resources=VCPU:1&required=HW_CPU_X86_AVX2,!HW_CPU_X86_AVX2": (
        "resmon.query.invalid_traits", "HW_CPU_X86_AVX2 both"),
    "/v1/candidates?resources=VCPU:1&instance=x86_64/kvm": (
        "resmon.query.invalid_instance", "x86_64/kvm"),
    "/v1/candidates?resources=VCPU:1&instance=x86_64//hvm": (
        "resmon.query.invalid_instance", "x86_64//hvm"),
    "/v1/candidates?resources=VCPU:1&instance=z80/kvm/hvm": (
        "resmon.query.invalid_instance", "'z80'"),
    "/v1/candidates?resources=VCPU:1&instance=x86_64/nohv/hvm": (
        "resmon.query.invalid_instance", "'nohv'"),
    "/v1/candidates?resources=VCPU:1&instance=x86_64/kvm/fast": (
        "resmon.query.invalid_instance", "'fast'"),
    "/v1/candidates?resources=VCPU:1&limit=0": ("resmon.query.invalid_limit", "limit"),
    "/v1/candidates?resources=VCPU:1&limit=-1": ("resmon.query.invalid_limit", "limit"),
    "/v1/candidates?resources=VCPU:1&limit=1001": ("resmon.query.invalid_limit", "limit"),
    "/v1/candidates?resources=VCPU:1&limit=ten": ("resmon.query.invalid_limit", "limit"),
    "/v1/candidates?resources=VCPU:1&order=random": ("resmon.query.invalid_parameter", "order"),
    "/v1/candidates?resources=VCPU:1&include_stale=perhaps": (
        "resmon.query.invalid_parameter", "include_stale"),
    "/v1/hosts?limit=0": ("resmon.query.invalid_limit", "limit"),
    "/v1/hosts?limit=100000": ("resmon.query.invalid_limit", "limit"),
    "/v1/hosts?state=sleeping": ("resmon.query.invalid_parameter", "state"),
    "/v1/hosts?provider_kind=vm": ("resmon.query.invalid_parameter", "provider_kind"),
    "/v1/hosts?stale=sometimes": ("resmon.query.invalid_parameter", "stale"),
    "/v1/hosts?cursor=bm9wZQ": ("resmon.query.invalid_cursor", "cursor"),
    "/v1/hosts?cursor=***": ("resmon.query.invalid_cursor", "cursor"),
    "/v1/hosts?hv_type=" + "k" * 256: ("resmon.query.invalid_parameter", "hv_type"),
    "/v1/hosts?arch=%00": ("resmon.query.invalid_parameter", "arch"),
    "/v1/anomalies?limit=-5": ("resmon.query.invalid_limit", "limit"),
    "/v1/anomalies?cursor=zzz": ("resmon.query.invalid_cursor", "cursor"),
}  # fmt: skip


@pytest.mark.parametrize(("url", "expected"), _rows(BAD_QUERIES))
def test_bad_query_is_a_400_naming_the_bad_part(
    api: TestClient, url: str, expected: tuple[str, str]
) -> None:
    code, named = expected
    response = api.get(url)
    assert response.status_code == 400, response.text
    (item,) = response.json()["errors"]
    assert item["status"] == 400 and item["title"]
    assert item["code"] == code
    assert named in item["detail"]
