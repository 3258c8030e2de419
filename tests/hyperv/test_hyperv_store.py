"""Fault profiles end to end: collector → runner → store on SQLite and PostgreSQL.

Each fault is recorded with its error kind, nothing of that run is stored, and the host's
earlier data stays exactly as it was.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.hyperv import HypervCollector
from resmon.runner import collect_target
from resmon.store import Store, TargetSpec

from .conftest import FAULTS, PASSWORD, ServerFactory, make_target
from .wsman_server import Reply


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Reply(stderr=(FAULTS / "role_absent.clixml").read_bytes(), exit_code=1), "unsupported"),
        (Reply(stderr=(FAULTS / "access_denied.clixml").read_bytes(), exit_code=1), "auth_failed"),
        (Reply(stderr=(FAULTS / "powershell_exception.clixml").read_bytes(), exit_code=1),
         "invalid_native_data"),
        (Reply(stdout=(FAULTS / "truncated.json").read_bytes()), "invalid_native_data"),
        (Reply(stdout=b"{}", delay_s=3.0), "timeout"),
    ],
    ids=["role-absent", "access-denied", "powershell-exception", "truncated-json", "slow"],
)  # fmt: skip
def test_fault_stores_nothing_and_keeps_earlier_data(
    store: Store, wsman: ServerFactory, pki: tuple[Path, Path, Path], fault: Reply, kind: str
) -> None:
    server = wsman()
    target = make_target(server, pki[0], timeout_s=1.5)
    spec = TargetSpec(name=target.name, collector="hyperv", url=target.url)

    good, _ = collect_target(HypervCollector, target)
    assert good.ok, good.error_message
    store.record(spec, good)
    before = store.reports(target.name)
    assert before and before[0].running_instances.count > 0

    server.reply = fault
    bad, _ = collect_target(HypervCollector, target)
    assert bad.error_kind == kind, bad.error_message
    store.record(spec, bad)

    assert store.reports(target.name) == before
    runs = store.runs(target.name)
    assert [(r.status, r.error_kind) for r in runs] == [("success", None), ("failed", kind)]
    assert PASSWORD not in (runs[-1].error_message or "")
    [row] = store.targets()
    assert row.last_status == "failed" and row.consecutive_failures == 1
