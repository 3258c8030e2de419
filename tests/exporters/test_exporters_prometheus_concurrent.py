"""A collection stored while /metrics is being rendered never fails the scrape."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import exporters.prometheus as prometheus
from resmon.contract.testing import fake_report
from resmon.store import Store

from .conftest import record


def test_providers_stored_mid_render_are_left_to_the_next_scrape(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_hosts = prometheus._write_hosts

    def hosts_then_collect(*args: Any) -> Any:
        counts = write_hosts(*args)
        # After the hosts were read: a new target and new providers of a known one.
        record(store, "late", [fake_report("late-0", target="late")])
        record(store, "kvm-a", [fake_report("kvm-new", target="kvm-a")])
        return counts

    monkeypatch.setattr(prometheus, "_write_hosts", hosts_then_collect)
    body = prometheus.render_metrics(store).decode()
    samples = [s for f in text_string_to_metric_families(body) for s in f.samples]
    assert {"name": "resmon_exporter_store_success", "value": 1.0} in [
        {"name": s.name, "value": s.value} for s in samples if not s.labels
    ]
    assert not [s for s in samples if s.labels.get("host_id") in ("late-0", "kvm-new")]

    monkeypatch.setattr(prometheus, "_write_hosts", write_hosts)
    body = prometheus.render_metrics(store).decode()
    assert 'host_id="kvm-new",target="kvm-a",resource_class="VCPU"' in body
