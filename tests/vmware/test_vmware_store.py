"""The simulator killed mid-run, end to end: collector → runner → store.

The failed collection is recorded, nothing of it is stored, and the providers of the last good
collection stay as they were (on SQLite and PostgreSQL).
"""

from __future__ import annotations

import pytest

from collectors.vmware import VmwareCollector
from resmon.contract import ProviderKind
from resmon.runner import collect_target
from resmon.store import Store, TargetSpec

from . import vcsim
from .test_vmware_vcsim import target_for

pytestmark = pytest.mark.vcsim


def test_killed_simulator_keeps_previous_data(store: Store, fresh_vpx: vcsim.Simulator) -> None:
    target = target_for(fresh_vpx, timeout_s=3.0)
    spec = TargetSpec(name=target.name, collector="vmware", url=target.url)

    good, session = collect_target(VmwareCollector, target)
    assert good.ok, good.error_message
    store.record(spec, good)
    before = store.reports(target.name)
    kinds = {r.provider_kind for r in before}
    assert {ProviderKind.COMPUTE_HOST, ProviderKind.CLUSTER, ProviderKind.SHARED_STORAGE} <= kinds

    fresh_vpx.kill()
    bad, dropped = collect_target(VmwareCollector, target, instance=session)
    assert dropped is None
    assert bad.error_kind in {"unreachable", "timeout"}, bad.error_message
    store.record(spec, bad)

    assert store.reports(target.name) == before
    assert [r.status for r in store.runs(target.name)] == ["success", "failed"]
    [row] = store.targets()
    assert row.last_status == "failed" and row.last_error_kind == bad.error_kind
