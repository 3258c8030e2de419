"""The query API in-process (FastAPI TestClient), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from exporters import api as api_module
from exporters._params import encode_host_ref
from exporters.api import create_app
from exporters.routes import targets as targets_routes
from resmon.store import Store

SCHEMA = Path(__file__).resolve().parents[2] / "schema" / "openapi.json"


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(store)) as c:
        yield c


def error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    (item,) = response.json()["errors"]
    assert item["status"] == status and item["title"] and item["detail"]
    return item  # type: ignore[no-any-return]


def host_ids(body: dict[str, Any], key: str = "hosts") -> list[str]:
    return [h["host_id"] for h in body[key]]


def test_health_readiness_and_landing(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["revision"]
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    assert "<script" not in text
    assert "<td>kvm</td>" in text and "<td>qemu</td>" in text
    # kvm: host-0, host-1, host-2 (maintenance) and old-0 of the broken target; 3 up.
    assert '<td>kvm</td><td class="n">4</td><td class="n">3</td>' in text
    assert "failed (unreachable)" in text
    assert "5 compute hosts; 3 targets, of which 1 failed and\n1 stale; 1 stale providers" in text


def test_readyz_on_an_unmigrated_database(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'empty.db'}")
    with TestClient(create_app(store)) as c:
        assert error(c.get("/readyz"), 503)["code"] == "resmon.store.not_migrated"
        assert error(c.get("/v1/hosts"), 503)["code"] == "resmon.store.unavailable"
        assert c.get("/healthz").status_code == 200
    store.close()


def test_host_records_show_both_reservation_parts(client: TestClient) -> None:
    every = client.get("/v1/hosts").json()
    assert sorted(host_ids(every)) == ["arm-0", "host-0", "host-1", "host-2", "old-0"]
    assert every["next_cursor"] is None
    host0 = next(h for h in every["hosts"] if h["host_id"] == "host-0")
    assert host0["inventories"]["VCPU"] == {
        "total": 16, "reserved": 0, "hypervisor_reserved": 0, "operator_reserved": 0,
        "min_unit": 1, "max_unit": 2**31 - 1, "step_size": 1,
        "allocation_ratio": 4.0, "used": 10, "capacity": 64, "free": 54,
    }  # fmt: skip
    memory = host0["inventories"]["MEMORY_MB"]
    assert (memory["reserved"], memory["hypervisor_reserved"], memory["operator_reserved"]) == (
        512,
        200,
        312,
    ), "both parts of the reservation are visible"
    assert host0["parent_id"] == "cluster-1" and host0["stale"] is False
    assert host0["collected_at"].endswith(("Z", "+00:00"))
    # The filters are rows of test_exporters_api_cases.py.


def test_hosts_cursor_pagination_visits_each_host_once(client: TestClient) -> None:
    seen: list[str] = []
    url = "/v1/hosts?limit=2"
    pages = 0
    while True:
        body = client.get(url).json()
        pages += 1
        seen += host_ids(body)
        if body["next_cursor"] is None:
            break
        assert len(body["hosts"]) == 2
        url = f"/v1/hosts?limit=2&cursor={body['next_cursor']}"
    assert pages == 3
    assert sorted(seen) == ["arm-0", "host-0", "host-1", "host-2", "old-0"]


def test_show_host(client: TestClient) -> None:
    ref = encode_host_ref("kvm-a", "host-1")
    body = client.get(f"/v1/hosts/{ref}").json()
    assert body["host"]["id"] == ref and body["host"]["target"] == "kvm-a"
    assert body["report"]["identity"] == {
        "host_id": "host-1", "target": "kvm-a", "hostname": "host-1.example"
    }  # fmt: skip
    assert "COMPUTE_STATUS_DISABLED" in body["report"]["traits"]
    assert [a["code"] for a in body["anomalies"]] == ["unknown_cpu_model"]
    assert body["anomalies"][0]["host"] == ref and body["anomalies"][0]["source"] == "collector"
    assert body["last_collection"]["status"] == "success"
    broken = client.get(f"/v1/hosts/{encode_host_ref('broken', 'old-0')}").json()
    assert broken["last_collection"]["status"] == "failed"
    assert broken["last_collection"]["error_kind"] == "unreachable"
    assert broken["host"]["stale"] is True
    # The id listed by /v1/hosts is the one /v1/hosts/{id} takes.
    for h in client.get("/v1/hosts").json()["hosts"]:
        assert client.get(f"/v1/hosts/{h['id']}").json()["host"]["host_id"] == h["host_id"]
    for missing in (encode_host_ref("kvm-a", "nope"), encode_host_ref("nope", "host-1"),
                    "not-base64!", "AAAA", "x" * 1024):  # fmt: skip
        assert error(client.get(f"/v1/hosts/{missing}"), 404)["code"] == "resmon.host.not_found"


def test_targets(client: TestClient) -> None:
    targets = {t["name"]: t for t in client.get("/v1/targets").json()["targets"]}
    assert sorted(targets) == ["arm-b", "broken", "kvm-a"]
    assert targets["kvm-a"]["hosts"] == 3 and targets["kvm-a"]["interval_s"] == 60.0
    assert targets["kvm-a"]["collection"]["status"] == "success"
    assert targets["kvm-a"]["collection"]["stale"] is False
    broken = targets["broken"]["collection"]
    assert broken["status"] == "failed" and broken["stale"] is True
    assert broken["error_kind"] == "unreachable" and broken["consecutive_failures"] == 1
    assert broken["error_message"] == "connection refused"


def test_anomalies(client: TestClient) -> None:
    body = client.get("/v1/anomalies").json()
    assert [(a["target"], a["host_id"], a["code"]) for a in body["anomalies"]] == [
        ("kvm-a", "host-1", "unknown_cpu_model")
    ]
    assert body["next_cursor"] is None
    assert len(client.get("/v1/anomalies?code=unknown_cpu_model").json()["anomalies"]) == 1
    assert client.get("/v1/anomalies?code=other").json()["anomalies"] == []
    assert client.get("/v1/anomalies?target=arm-b").json()["anomalies"] == []
    host1 = encode_host_ref("kvm-a", "host-1")
    assert len(client.get(f"/v1/anomalies?host={host1}").json()["anomalies"]) == 1
    host0 = encode_host_ref("kvm-a", "host-0")
    assert client.get(f"/v1/anomalies?host={host0}").json()["anomalies"] == []
    assert client.get("/v1/anomalies?host=garbage").json()["anomalies"] == []
    cursor = client.get("/v1/hosts?limit=1").json()["next_cursor"]
    # A cursor of another listing is refused.
    assert error(client.get(f"/v1/anomalies?cursor={cursor}"), 400)["code"] == (
        "resmon.query.invalid_cursor"
    )


def candidates(client: TestClient, query: str) -> list[dict[str, Any]]:
    response = client.get(f"/v1/candidates?{query}")
    assert response.status_code == 200, (query, response.text)
    return response.json()["candidates"]  # type: ignore[no-any-return]


def test_candidates(client: TestClient) -> None:
    # host-2 is in maintenance and old-0 stale: neither is offered by default.
    found = candidates(client, "resources=VCPU:4,MEMORY_MB:1024")
    # most_free by VCPU: arm-0 128 free, host-1 32, host-0 54.
    assert [c["host_id"] for c in found] == ["arm-0", "host-0", "host-1"]
    host0 = found[1]
    assert host0["resources"]["VCPU"] == {
        "requested": 4,
        "free": 54,
        "free_after": 50,
        "provider": host0["id"],
    }
    assert host0["sharing_providers"] == []
    assert host0["resources"]["MEMORY_MB"]["free"] == 32768 - 512 - 4096
    assert host0["inventories"]["DISK_GB"]["capacity"] == 100
    assert host0["id"] == encode_host_ref("kvm-a", "host-0") and host0["stale"] is False
    least = candidates(client, "resources=VCPU:4,MEMORY_MB:1024&order=least_free")
    assert [c["host_id"] for c in least] == ["host-1", "host-0", "arm-0"]
    assert [c["host_id"] for c in candidates(client, "resources=VCPU:4&limit=1")] == ["arm-0"]
    # The other queries are rows of test_exporters_api_cases.py.
    stale = candidates(client, "resources=VCPU:500&include_stale=true")
    assert [(c["host_id"], c["stale"]) for c in stale] == [("old-0", True)]


def test_read_only_unknown_paths_and_metrics(client: TestClient) -> None:
    for method in ("post", "put", "patch", "delete"):
        for path in ("/v1/hosts", "/v1/candidates", "/metrics", "/"):
            item = error(client.request(method.upper(), path), 405)
            assert item["code"] == "resmon.method_not_allowed"
    assert error(client.get("/v2/hosts"), 404)["code"] == "resmon.not_found"
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'resmon_collector_success{collector="fake",target="kvm-a"} 1' in metrics.text


def test_unexpected_errors_are_logged_json_500s(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(targets_routes, "target_statuses", boom)
    with TestClient(create_app(store), raise_server_exceptions=False) as c:
        item = error(c.get("/v1/targets"), 500)
    assert item["code"] == "resmon.internal_error" and "a bug" not in item["detail"]
    assert any("unexpected error serving /v1/targets" in r.getMessage() for r in caplog.records)


def test_bearer_tokens(store: Store) -> None:
    with TestClient(create_app(store, api_tokens=["s3cret", "second"])) as c:
        for path in (
            "/v1/hosts",
            "/v1/targets",
            "/metrics",
            "/",
            "/v1/candidates?resources=VCPU:1",
        ):
            missing = c.get(path)
            assert error(missing, 401)["code"] == "resmon.auth.required", path
            assert missing.headers["www-authenticate"] == "Bearer"
            wrong = c.get(path, headers={"Authorization": "Bearer s3cre"})
            assert error(wrong, 401)["code"] == "resmon.auth.invalid_token", path
            basic = c.get(path, headers={"Authorization": "Basic czNjcmV0"})
            assert error(basic, 401)["code"] == "resmon.auth.required", path
            for token in ("s3cret", "second"):
                ok = c.get(path, headers={"Authorization": f"Bearer {token}"})
                assert ok.status_code == 200, (path, ok.text)
        for open_path in ("/healthz", "/readyz", "/openapi.json"):
            assert c.get(open_path).status_code == 200, open_path


def test_openapi_document_is_checked_in(client: TestClient) -> None:
    served = client.get("/openapi.json").json()
    checked_in = json.loads(SCHEMA.read_text())
    assert served == checked_in, (
        "schema/openapi.json is out of date: python -m exporters.api > schema/openapi.json"
    )


def test_crafted_cursors_and_host_ids_are_400s(client: TestClient) -> None:
    from exporters._params import encode_cursor

    # Ids are 32-bit on PostgreSQL: a larger cursor was never issued and must not reach SQL.
    for after in (2**31, 2**40, 10**30):
        for listing, path in (("h", "/v1/hosts"), ("a", "/v1/anomalies")):
            item = error(client.get(f"{path}?cursor={encode_cursor(listing, after)}"), 400)
            assert item["code"] == "resmon.query.invalid_cursor"
    # A second NUL (the first separates target and host id) can be in no stored host id.
    crafted = encode_host_ref("kvm-a", "host-1\x00x")
    assert error(client.get(f"/v1/hosts/{crafted}"), 400)["code"] == "resmon.query.invalid_host_id"
    item = error(client.get(f"/v1/anomalies?host={crafted}"), 400)
    assert item["code"] == "resmon.query.invalid_host_id"


def test_oversized_queries_are_refused_with_a_status(store: Store) -> None:
    """Through a real server: 10,000 ``required`` get a 414, not a reset connection."""
    import socket
    import threading
    import time

    import requests
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning",
                       **api_module.SERVER_OPTIONS)
    )  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.02)
        base = f"http://127.0.0.1:{port}/v1/candidates?resources=VCPU:1&"
        for count in (10_000, 1_000):
            answer = requests.get(base + "&".join(["required=HW_CPU_X86_AVX2"] * count), timeout=10)
            assert answer.status_code == 414, answer.text
            assert answer.json()["errors"][0]["code"] == "resmon.query.too_large"
        answer = requests.get(base + "&".join(["required=HW_CPU_X86_AVX2"] * 300), timeout=10)
        assert answer.status_code == 400 and "parameters" in answer.text
        assert requests.get(base + "required=HW_CPU_X86_AVX2", timeout=10).status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=10)
