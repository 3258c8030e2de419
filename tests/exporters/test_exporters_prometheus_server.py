"""A real Prometheus server scrapes the app (uvicorn on loopback) and answers a PromQL query."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from resmon.store import Store
from tests.live_servers import promql, run_prometheus, serve_api, wait_until

pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="Prometheus server absent"),
]


@pytest.fixture
def app_url(store: Store) -> Iterator[str]:
    with serve_api(store, api_tokens=["scrape-token"]) as address:
        yield address


@pytest.fixture
def prometheus_url(app_url: str, tmp_path: Path) -> Iterator[str]:
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: resmon\n"
        "    authorization:\n      credentials: scrape-token\n"
        f"    static_configs:\n      - targets: ['{app_url}']\n"
    )
    with run_prometheus(config, tmp_path) as url:
        yield url


def test_prometheus_scrapes_and_answers_promql(prometheus_url: str) -> None:
    query = 'resmon_inventory_free_units{target="kvm-a",host_id="host-0",resource_class="VCPU"}'
    (series,) = wait_until(lambda: promql(prometheus_url, query), "a scraped sample")
    assert float(series["value"][1]) == 54
    assert series["metric"]["job"] == "resmon"  # Prometheus's own target labels do not clash
    up = wait_until(lambda: promql(prometheus_url, 'up{job="resmon"}'), "up")
    assert float(up[0]["value"][1]) == 1
    stale = promql(prometheus_url, "sum(resmon_stale_hosts)")
    assert float(stale[0]["value"][1]) == 1
