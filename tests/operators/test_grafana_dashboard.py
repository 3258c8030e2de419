"""``contrib/grafana/resmon.json`` is what the generator writes, and every query in it returns
data from a real Prometheus that scrapes resmon with the example configuration and rules.

The fleet (SQLite store, served by the app on loopback)::

    target vc (fake, ok):     cluster gold (a cluster provider, its two hosts summed)
                              ├── esx-1  up           ├── esx-2  maintenance, 1 anomaly
    target kvm (fake, ok):    kvm-1 (x86_64 kvm), arm-1 (aarch64 qemu)
    target gone (fake):       collected once, then unreachable: stale, one failed collection
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from exporters.prometheus import METRICS
from resmon.contract import Anomaly, HostReport, HostState, ProviderKind
from resmon.contract.testing import fake_report
from resmon.runner import CollectionOutcome
from resmon.store import Store, TargetSpec
from tests.live_servers import promql, run_prometheus, serve_api, wait_until

from .test_prometheus_rules import RULES, series_names

REPO_ROOT = Path(__file__).resolve().parents[2]
GRAFANA = REPO_ROOT / "contrib" / "grafana"
PROMETHEUS = REPO_ROOT / "contrib" / "prometheus"
TOKEN = "scrape-token"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "resmon_dashboard", GRAFANA / "resmon_dashboard.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel."""
    found = []
    for panel in dashboard["panels"]:
        for query in panel.get("targets", []):
            found.append((panel["title"], query["expr"]))
    return found


DASHBOARD = json.loads((GRAFANA / "resmon.json").read_text())


def test_checked_in_dashboard_is_the_generated_one() -> None:
    assert (GRAFANA / "resmon.json").read_text() == generator().render() + "\n", (
        "contrib/grafana/resmon.json differs from its generator: "
        "run python contrib/grafana/resmon_dashboard.py"
    )


def test_every_panel_has_queries_on_known_series() -> None:
    known = set(METRICS) | {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"]
                            for r in g["rules"]}  # fmt: skip
    panels = [p for p in DASHBOARD["panels"] if p["type"] != "row"]
    assert panels and all(p.get("targets") for p in panels)
    for title, expr in queries(DASHBOARD):
        assert not series_names(expr) - known, f"{title}: {expr}"
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


# -- a real Prometheus --------------------------------------------------------------------------


def _record(store: Store, target: str, reports: list[HostReport], **failure: str) -> None:
    outcome = CollectionOutcome(
        target=target, collector="fake", started_at=datetime.now(UTC), duration_s=0.5,
        reports=reports, **failure,  # type: ignore[arg-type]
    )  # fmt: skip
    store.record(TargetSpec(target, "fake", "fake://fleet", 60.0), outcome)


def load_fleet(store: Store) -> None:
    cluster = fake_report("gold", target="vc", vcpus=48, memory_mib=196608, used_vcpus=150)
    cluster.provider_kind = ProviderKind.CLUSTER
    esx1 = fake_report("esx-1", target="vc", vcpus=24, memory_mib=98304, parent_id="gold",
                       hv_type="vmware", used_vcpus=80)  # fmt: skip
    esx2 = fake_report("esx-2", target="vc", vcpus=24, memory_mib=98304, parent_id="gold",
                       hv_type="vmware", used_vcpus=70)  # fmt: skip
    esx2.state = HostState.MAINTENANCE
    esx2.anomalies = [Anomaly(code="vocabulary.trait", field="traits", message="not an os-trait")]
    _record(store, "vc", [cluster, esx1, esx2])
    kvm = fake_report("kvm-1", target="kvm", vcpus=32, memory_mib=131072, used_memory_mib=65536)
    arm = fake_report("arm-1", target="kvm", vcpus=16, memory_mib=65536, arch="aarch64",
                      hv_type="qemu", traits=())  # fmt: skip
    _record(store, "kvm", [kvm, arm])
    _record(store, "gone", [fake_report("old-1", target="gone")])
    _record(store, "gone", [], error_kind="unreachable", error_message="connection refused")


@pytest.fixture
def resmon_address(tmp_path: Path) -> Iterator[str]:
    store = Store(f"sqlite:///{tmp_path / 'resmon.db'}")
    store.upgrade()
    load_fleet(store)
    try:
        with serve_api(store, api_tokens=[TOKEN]) as address:
            yield address
    finally:
        store.close()


@pytest.fixture
def prometheus_url(resmon_address: str, tmp_path: Path) -> Iterator[str]:
    """Prometheus run with contrib/prometheus/prometheus.yml, pointed at this resmon, faster."""
    if shutil.which("prometheus") is None:
        pytest.skip("Prometheus server absent")
    for rules in ("rules.yml", "alerts.yml"):
        shutil.copy(PROMETHEUS / rules, tmp_path)
    (tmp_path / "resmon-token").write_text(TOKEN + "\n")
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    (job,) = config["scrape_configs"]
    job["scrape_timeout"] = "1s"
    job["authorization"]["credentials_file"] = str(tmp_path / "resmon-token")
    job["static_configs"] = [{"targets": [resmon_address]}]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    with run_prometheus(tmp_path / "prometheus.yml", tmp_path) as url:
        yield url


@pytest.mark.prometheus
def test_every_panel_query_returns_data_from_prometheus(prometheus_url: str) -> None:
    wait_until(lambda: promql(prometheus_url, 'up{job="resmon"} == 1'), "a successful scrape")
    for title, expr in queries(DASHBOARD):
        wait_until(lambda expr=expr: promql(prometheus_url, expr), f"{title!r}: {expr}", 30)
    # The fleet sums count the cluster's hosts once: 5 compute hosts, allocation ratio 4.
    (vcpu,) = promql(
        prometheus_url, 'resmon_class:inventory_capacity_units:sum{resource_class="VCPU"}'
    )
    assert float(vcpu["value"][1]) == (24 + 24 + 32 + 16 + 8) * 4
    states = {s["metric"]["state"]: float(s["value"][1])
              for s in promql(prometheus_url, "resmon_state:hosts:count")}  # fmt: skip
    assert states == {"up": 4, "maintenance": 1}
    (gold,) = promql(prometheus_url, 'resmon_cluster:inventory_free:ratio{resource_class="VCPU"}')
    assert gold["metric"]["hostname"] == "gold.example"
    assert float(gold["value"][1]) == pytest.approx((48 * 4 - 150) / (48 * 4))
