"""``resmon placement sync`` into a real OpenStack Placement 16.0.0 (its own venv, SQLite,
``auth_strategy = noauth2``, served on loopback by wsgiref), which then serves as the oracle for
resmon's ``/placement/allocation_candidates``."""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from exporters.api import create_app
from exporters.placement_sync import (
    MANAGED_TRAIT,
    PlacementSyncError,
    SyncOptions,
    consumer_uuid,
    desired_state,
    placement_adapter,
    sync,
)
from resmon.cli import main
from resmon.store import Store
from tests.live_servers import free_port

from .fleet import populate
from .tools import HERE, tool_venv

pytestmark = pytest.mark.placement_server

CONFIG = """[DEFAULT]
debug = False
[api]
auth_strategy = noauth2
[placement_database]
connection = sqlite:///{db}
"""


@pytest.fixture(scope="module")
def placement_bin() -> Path:
    return tool_venv("placement-server", HERE / "server-requirements.txt")


@contextmanager
def running_placement(
    placement_bin: Path, tmp_path: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A fresh Placement (its own database) on a loopback port; yields its URL and process."""
    conf_dir = tmp_path / "placement"
    conf_dir.mkdir()
    (conf_dir / "placement.conf").write_text(CONFIG.format(db=conf_dir / "placement.db"))
    subprocess.run(
        [str(placement_bin / "placement-manage"), "--config-file",
         str(conf_dir / "placement.conf"), "db", "sync"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    port = free_port()
    log = (tmp_path / "placement.log").open("w")
    process = subprocess.Popen(
        [str(placement_bin / "python"), str(HERE / "serve_placement.py"), str(port)],
        env={"OS_PLACEMENT_CONFIG_DIR": str(conf_dir), "PATH": "/usr/bin:/bin"},
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Placement did not start: {(tmp_path / 'placement.log').read_text()}")
            time.sleep(0.25)
        yield url, process
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture
def placement(placement_bin: Path, tmp_path: Path) -> Iterator[str]:
    """A fresh Placement (its own database) on a loopback port; yields its URL."""
    with running_placement(placement_bin, tmp_path) as (url, _process):
        yield url


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'resmon.db'}")
    s.upgrade()
    populate(s)
    yield s
    s.close()


def read(url: str, path: str) -> Any:
    headers = {"x-auth-token": "admin", "openstack-api-version": "placement 1.39"}
    response = httpx.get(url + path, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_sync_standalone_then_resync_writes_nothing(store: Store, placement: str) -> None:
    api = placement_adapter(placement)
    first = sync(store, api, SyncOptions(mode="standalone"))
    assert first.created == 7 and first.writes > 7
    desired = desired_state(store, SyncOptions(mode="standalone"))
    held = {rp["uuid"]: rp for rp in read(placement, "/resource_providers")["resource_providers"]}
    assert set(held) == set(desired)
    for rp_uuid, want in desired.items():
        base = f"/resource_providers/{rp_uuid}"
        assert held[rp_uuid]["name"] == want.name
        assert read(placement, f"{base}/inventories")["inventories"] == want.inventories
        assert set(read(placement, f"{base}/traits")["traits"]) == want.traits
        assert set(read(placement, f"{base}/aggregates")["aggregates"]) == want.aggregates
        usages = read(placement, f"{base}/usages")["usages"]
        assert {rc: n for rc, n in usages.items() if n} == want.used
    assert MANAGED_TRAIT in want.traits
    again = sync(store, api, SyncOptions(mode="standalone"))
    assert (again.writes, again.write_log) == (0, [])
    # The CLI does the same and says so on one line.
    code = main(["placement", "sync", "--database", str(store.engine.url), "--endpoint",
                 placement, "--mode", "standalone"])  # fmt: skip
    assert code == 0


def test_nova_mode_writes_no_allocations_and_can_fold_use(store: Store, placement: str) -> None:
    api = placement_adapter(placement)
    sync(store, api, SyncOptions(mode="nova", fold_used_into_reserved=True))
    desired = desired_state(store, SyncOptions(mode="nova", fold_used_into_reserved=True))
    for rp_uuid, want in desired.items():
        assert read(placement, f"/allocations/{consumer_uuid(rp_uuid)}")["allocations"] == {}
        held = read(placement, f"/resource_providers/{rp_uuid}/inventories")["inventories"]
        assert held == want.inventories
    esx0 = next(w for w in desired.values() if w.name == "vc:esx-0")
    assert esx0.inventories["VCPU"]["reserved"] == 2  # 8 used at ratio 4 holds 2 host CPUs


def test_generation_conflicts_are_retried(store: Store, placement: str) -> None:
    api = placement_adapter(placement)
    sync(store, api)
    other = placement_adapter(placement)
    target = next(iter(desired_state(store, SyncOptions())))
    original = api.request
    bumped: list[str] = []

    def request(url: str, method: str, **kwargs: Any) -> Any:
        # Just before our inventory write, someone else writes the provider: its generation
        # moves and Placement answers our write with a 409.
        if method == "PUT" and url.endswith(f"{target}/inventories") and not bumped:
            bumped.append(url)
            assert other.put("/traits/CUSTOM_SOMEONE_ELSE").status_code in (201, 204)
            current = other.get(f"/resource_providers/{target}/traits").json()
            written = other.put(f"/resource_providers/{target}/traits", json={
                "traits": current["traits"] + ["CUSTOM_SOMEONE_ELSE"],
                "resource_provider_generation": current["resource_provider_generation"],
            })  # fmt: skip
            assert written.status_code == 200, written.text
        return original(url, method, **kwargs)

    # Change an inventory so the sync has something to write.
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE inventories SET reserved = reserved + 1")
    api.request = request  # type: ignore[method-assign]
    result = sync(store, api)
    assert bumped and result.conflicts_retried >= 1
    assert set(read(placement, f"/resource_providers/{target}/traits")["traits"]) == set(
        desired_state(store, SyncOptions())[target].traits
    )


def test_errors_have_a_kind_and_the_cli_one_line(
    store: Store, placement: str, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PlacementSyncError) as caught:
        sync(store, placement_adapter(closed, timeout=5))
    assert caught.value.kind == "unreachable"
    code = main(["placement", "sync", "--database", str(store.engine.url), "--endpoint", closed])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("resmon: placement sync failed: unreachable")
    assert len(err.splitlines()) == 1
    # noauth2 without a token: Placement answers 401.
    api = placement_adapter(placement)
    api.session.auth = None
    api.session.additional_headers = {}
    with pytest.raises(PlacementSyncError) as caught:
        sync(store, api)
    assert caught.value.kind == "auth"


# -- the oracle ----------------------------------------------------------------------------


def requests_of(body: dict[str, Any]) -> set[frozenset[tuple[str, str, int]]]:
    return {
        frozenset((rp, rc, n) for rp, a in r["allocations"].items()
                  for rc, n in a["resources"].items())
        for r in body["allocation_requests"]
    }  # fmt: skip


def test_placement_and_resmon_answer_the_same(store: Store, placement: str) -> None:
    sync(store, placement_adapter(placement), SyncOptions(mode="standalone"))
    rng = random.Random(4)
    traits = ["HW_CPU_X86_AVX2", "HW_CPU_X86_AVX512F", "CUSTOM_VMWARE_DATASTORE_NFS",
              "CUSTOM_VMWARE_DATASTORE_VMFS"]  # fmt: skip
    amounts = {"VCPU": (1, 4, 16, 100), "MEMORY_MB": (512, 8192, 70000),
               "DISK_GB": (1, 40, 150, 600, 1500)}  # fmt: skip
    compared = nonempty = 0
    with TestClient(create_app(store)) as resmon:
        for _ in range(200):
            classes = rng.sample(sorted(amounts), rng.randint(1, 3))
            query = "resources=" + ",".join(f"{c}:{rng.choice(amounts[c])}" for c in classes)
            chosen = rng.sample(traits, rng.randint(0, 2))
            if chosen:
                query += "&required=" + ",".join(
                    ("!" if rng.random() < 0.4 else "") + t for t in chosen
                )
            theirs = read(placement, f"/allocation_candidates?{query}")
            response = resmon.get(f"/placement/allocation_candidates?{query}",
                                  headers={"openstack-api-version": "placement 1.39"})  # fmt: skip
            assert response.status_code == 200, response.text
            assert requests_of(response.json()) == requests_of(theirs), query
            compared += 1
            nonempty += bool(theirs["allocation_requests"])
    assert compared == 200 and nonempty > 50, json.dumps(nonempty)
