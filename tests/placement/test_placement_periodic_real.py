"""The periodic sync (``[placement]``) into a real OpenStack Placement 16.0.0: through a
``clouds.yaml`` entry, through keystoneauth1's password and application-credential plugins
against a Keystone that answers as documented, and with Placement stopped under it."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from exporters._sync_status import TASK_NAME
from exporters.api import create_app
from exporters.placement_periodic import PlacementSyncTask
from resmon.cli import main
from resmon.config import PlacementSettings
from resmon.store import Store
from tests.live_servers import free_port

from .fake_keystone import FakeKeystone
from .test_placement_periodic import run_once, samples
from .tools import running_placement

pytestmark = pytest.mark.placement_server


def clouds_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, placement: str) -> None:
    """Placement's noauth2 behind a clouds.yaml entry, as an operator would write it."""
    (tmp_path / "clouds.yaml").write_text(f"""
clouds:
  test-placement:
    auth_type: admin_token
    auth:
      token: admin
    placement_endpoint_override: {placement}
""")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "clouds.yaml"))
    monkeypatch.setenv("OS_CLIENT_SECURE_FILE", str(tmp_path / "no-secure.yaml"))


def test_periodic_sync_via_clouds_yaml_then_placement_stops(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_placement(tmp_path) as (url, process):
        clouds_yaml(tmp_path, monkeypatch, url)
        settings = PlacementSettings(cloud="test-placement", mode="standalone", interval_s=60)
        task = PlacementSyncTask(store, settings)
        run_once(task)
        first = task.status()
        assert (first.status, first.providers, first.error_message) == ("success", 7, None)
        assert first.writes is not None and first.writes > 7
        run_once(task)  # nothing changed: nothing written
        assert (task.status().status, task.status().writes) == ("success", 0)
        # The same entry from the command line.
        assert main(["placement", "sync", "--database", str(store.engine.url),
                     "--cloud", "test-placement", "--mode", "standalone"]) == 0  # fmt: skip
        process.terminate()
        process.wait(timeout=30)
        run_once(task)
    down = task.status()
    assert (down.status, down.error_kind, down.runs) == ("failed", "unreachable", 3)
    assert down.last_success_at == first.last_success_at or down.last_success_at is not None
    with TestClient(create_app(store, placement=task)) as api:
        values = samples(api.get("/metrics").text)
        status = api.get("/v1/placement/status").json()
        assert api.get("/v1/hosts").status_code == 200  # resmon's own API is unaffected
    assert values["resmon_placement_sync_runs_total", ()] == 3
    assert values["resmon_placement_sync_errors_total", (("kind", "unreachable"),)] == 1
    assert values["resmon_placement_sync_writes", ()] == 0  # of the last sync that read
    assert values["resmon_placement_sync_success", ()] == 0
    assert values["resmon_placement_sync_consecutive_failures", ()] == 1
    assert status["status"] == "failed" and status["error_kind"] == "unreachable"
    assert status["last_success_at"] is not None
    stored = store.task_status(TASK_NAME)
    assert stored is not None and stored.error_kind == "unreachable"


@pytest.mark.parametrize("plugin", ["v3password", "v3applicationcredential"])
def test_keystone_authentication_then_the_catalogs_internal_endpoint(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    plugin: str,
) -> None:  # fmt: skip
    if plugin == "v3password":
        auth = {"username": "resmon", "user_domain_name": "Default", "project_name": "service",
                "project_domain_name": "Default"}  # fmt: skip
    else:
        auth = {"application_credential_id": "0123abcd"}
    with running_placement(tmp_path) as (url, _process):
        with FakeKeystone(
            placement_internal=url, placement_public=f"http://127.0.0.1:{free_port()}",
            password="right-password", credential_id="0123abcd", credential_secret="right-secret",
        ) as keystone:  # fmt: skip
            settings = PlacementSettings(
                auth_type=plugin, auth={"auth_url": f"{keystone.url}/v3", **auth},
                secret_env="RESMON_TEST_PLACEMENT_SECRET", interface="internal",
                region_name="RegionOne", interval_s=60,
            )  # fmt: skip
            monkeypatch.setenv("RESMON_TEST_PLACEMENT_SECRET", "wrong")
            refused = PlacementSyncTask(store, settings)
            run_once(refused)
            assert (refused.status().status, refused.status().error_kind) == ("failed", "auth")
            assert "wrong" not in (refused.status().error_message or "")
            monkeypatch.setenv("RESMON_TEST_PLACEMENT_SECRET", "right-password"
                               if plugin == "v3password" else "right-secret")  # fmt: skip
            task = PlacementSyncTask(store, settings)
            run_once(task)
            assert (task.status().status, task.status().providers) == ("success", 7)
            run_once(task)  # the token is kept between syncs
            assert task.status().writes == 0
            assert len(keystone.token_requests) == 2  # one refused, one issued
