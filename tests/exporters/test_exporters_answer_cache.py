"""Candidate answers are kept between collections and never outlive the fleet they came from.

A repeated query is answered from the cache (same bytes, counted as a hit); a collection stored
in between, a target turning stale, or another microversion gets a fresh answer, equal to what
an app without the cache answers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from exporters._answer_cache import AnswerCache, fleet_key
from exporters._queries import TargetStatus
from exporters.api import create_app
from resmon.contract.testing import fake_report
from resmon.store import Store
from tests.live_servers import resmon_serve

from .conftest import record

V1 = "/v1/candidates?resources=VCPU:4,MEMORY_MB:1024"
PLACEMENT = "/placement/allocation_candidates?resources=VCPU:4,MEMORY_MB:1024"


def _placement(version: str) -> dict[str, str]:
    return {"x-auth-token": "admin", "openstack-api-version": f"placement {version}"}


def test_a_repeated_query_is_a_hit_until_a_collection_is_stored(store: Store) -> None:
    app = create_app(store)
    cache = app.state.resmon.answer_cache
    client, uncached = TestClient(app), TestClient(create_app(store, answer_cache_bytes=0))
    first = client.get(V1)
    assert first.status_code == 200
    assert client.get(V1).content == first.content
    assert (cache.hits, cache.misses) == (1, 1)

    # host-0 runs more: its free VCPU changes, so must the answer.
    busier = fake_report("host-0", target="kvm-a", vcpus=16, memory_mib=32768, used_vcpus=40)
    record(store, "kvm-a", [busier])
    after = client.get(V1)
    assert after.content != first.content
    assert after.content == uncached.get(V1).content
    assert cache.misses == 2


def test_placement_answers_are_kept_per_microversion(store: Store) -> None:
    app = create_app(store)
    client, uncached = TestClient(app), TestClient(create_app(store, answer_cache_bytes=0))
    for version in ("1.10", "1.39", "1.10"):
        got = client.get(PLACEMENT, headers=_placement(version))
        assert got.status_code == 200
        assert got.content == uncached.get(PLACEMENT, headers=_placement(version)).content
        # Before 1.12 allocation requests are lists, after keyed by provider.
        allocations = got.json()["allocation_requests"][0]["allocations"]
        assert isinstance(allocations, list if version == "1.10" else dict)
    assert app.state.resmon.answer_cache.hits == 1


def test_errors_are_not_kept(store: Store) -> None:
    app = create_app(store)
    client = TestClient(app)
    unknown = "/placement/allocation_candidates?resources=VCPU:1&required=CUSTOM_NOBODY_HAS_IT"
    for _ in range(2):
        assert client.get(unknown, headers=_placement("1.39")).status_code == 400
    assert len(app.state.resmon.answer_cache) == 0


def _status(target_id: int, run_id: int, stale: bool) -> TargetStatus:
    now = datetime.now(UTC)
    return TargetStatus(
        id=target_id, name=f"t{target_id}", collector="fake", url="fake://", interval_s=60.0,
        last_status="ok", last_error_kind=None, last_error_message=None, last_attempt_at=now,
        last_success_at=now, last_duration_s=0.1, consecutive_failures=0, stale=stale,
        last_run_id=run_id, replica=None,
    )  # fmt: skip


def test_a_target_turning_stale_or_collected_is_another_fleet() -> None:
    cache = AnswerCache()
    fresh = fleet_key([_status(1, 10, False), _status(2, 20, False)])
    cache.put(fresh, "q", b"answer")
    assert cache.get(fleet_key([_status(2, 20, False), _status(1, 10, False)]), "q") == b"answer"
    assert cache.get(fleet_key([_status(1, 10, False), _status(2, 20, True)]), "q") is None
    cache.put(fresh, "q", b"answer")
    assert cache.get(fleet_key([_status(1, 10, False), _status(2, 21, False)]), "q") is None
    assert cache.get(fleet_key([_status(1, 10, False)]), "q") is None  # a target removed


def test_bounded_by_bytes_least_recently_used_first() -> None:
    fleet = fleet_key([_status(1, 1, False)])
    cache = AnswerCache(max_bytes=10)
    cache.put(fleet, "a", b"aaaa")
    cache.put(fleet, "b", b"bbbb")
    assert cache.get(fleet, "a") == b"aaaa"  # now b is the least recently used
    cache.put(fleet, "c", b"cccc")
    assert cache.get(fleet, "b") is None
    assert cache.get(fleet, "a") == b"aaaa" and cache.get(fleet, "c") == b"cccc"
    assert cache.size_bytes == 8
    cache.put(fleet, "big", b"x" * 11)  # larger than the bound: not kept, nothing dropped
    assert len(cache) == 2
    nothing = AnswerCache(max_bytes=0)
    nothing.put(fleet, "a", b"a")
    assert nothing.get(fleet, "a") is None


def test_metrics_count_hits_and_misses(store: Store) -> None:
    client = TestClient(create_app(store))
    for _ in range(3):
        client.get(V1)
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    requests = {
        s.labels["result"]: s.value for s in families["resmon_api_answer_cache_requests"].samples
    }
    assert requests == {"hit": 2, "miss": 1}
    assert families["resmon_api_answer_cache_entries"].samples[0].value == 1
    assert families["resmon_api_answer_cache_bytes"].samples[0].value == len(client.get(V1).content)


def test_resmon_serve_takes_answer_cache_mib(
    store: Store, database_url: str, tmp_path: Path
) -> None:
    for mib, expected in ((32, {"hit": 1, "miss": 1}), (0, {"hit": 0, "miss": 2})):
        with resmon_serve(database_url, tmp_path, answer_cache_mib=mib) as address:
            bodies = {httpx.get(f"http://{address}{V1}").content for _ in range(2)}
            assert len(bodies) == 1 and b'"host_id":"host-0"' in next(iter(bodies))
            metrics = httpx.get(f"http://{address}/metrics").text
        families = {f.name: f for f in text_string_to_metric_families(metrics)}
        requests = families["resmon_api_answer_cache_requests"].samples
        assert {s.labels["result"]: s.value for s in requests} == expected, mib
