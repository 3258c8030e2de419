"""A real Prometheus server scrapes the app (uvicorn on loopback) and answers a PromQL query."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from exporters.api import create_app
from resmon.store import Store

pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="Prometheus server absent"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Any, what: str, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"gave up waiting for {what} after {timeout_s:.0f}s")


@pytest.fixture
def app_url(store: Store) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        create_app(store, api_tokens=["scrape-token"]), host="127.0.0.1", port=port,
        log_level="warning",
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, "uvicorn to start")
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


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
    port = free_port()
    process = subprocess.Popen(
        [
            "prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("wb"),
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def promql(base: str, query: str) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.load(response)
    except OSError:
        return []
    assert body["status"] == "success", body
    return body["data"]["result"]  # type: ignore[no-any-return]


def test_prometheus_scrapes_and_answers_promql(prometheus_url: str) -> None:
    query = 'resmon_inventory_free_units{target="kvm-a",host_id="host-0",resource_class="VCPU"}'
    (series,) = wait_until(lambda: promql(prometheus_url, query), "a scraped sample")
    assert float(series["value"][1]) == 54
    assert series["metric"]["job"] == "resmon"  # Prometheus's own target labels do not clash
    up = wait_until(lambda: promql(prometheus_url, 'up{job="resmon"}'), "up")
    assert float(up[0]["value"][1]) == 1
    stale = promql(prometheus_url, "sum(resmon_stale_hosts)")
    assert float(stale[0]["value"][1]) == 1
