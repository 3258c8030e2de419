"""SIGTERM stops ``resmon run`` within ``[resmon] shutdown_grace_s``: what finishes within the
grace is stored, what does not is dropped, and a collector that never returns holds nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from resmon.store import Store

from .waiting import stored_runs

HELPER = Path(__file__).with_name("resmon_with_test_collectors.py")
GRACE_S = 3.0


def test_sigterm_stores_what_finished_and_drops_what_hangs(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'resmon.db'}"
    config = tmp_path / "resmon.toml"
    config.write_text(f"""
[resmon]
database_url = "{db}"
listen = ""
shutdown_grace_s = {GRACE_S}

[[targets]]
name = "quick"
collector = "fake"
url = "fake://1"
interval_s = 600

[[targets]]
name = "in-flight"
collector = "slow"
url = "fake://2"
interval_s = 600

[[targets]]
name = "silent"
collector = "hang"
url = "fake://1"
interval_s = 600
timeout_s = 300
""")
    proc = subprocess.Popen(
        [sys.executable, str(HELPER), "--log-level", "info", "run", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        store = Store(db)
        deadline = time.monotonic() + 60
        while True:  # until the first round is under way (the quick target is stored)
            assert proc.poll() is None, proc.communicate()[1]
            if stored_runs(store, "quick"):
                break
            assert time.monotonic() < deadline, "the quick target was never stored"
            time.sleep(0.05)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=GRACE_S + 20)
        took = time.monotonic() - signalled
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    # The grace, plus the process's own exit on a loaded machine; never the hung collector.
    assert took < GRACE_S + 5, f"stopped {took:.1f}s after SIGTERM"
    # The collection in flight finished within the grace: stored.
    assert [r.status for r in store.runs("in-flight")] == ["success"]
    # The one that never returns was dropped: no run, and the log says so.
    assert store.runs("silent") == []
    assert "target silent: collection still running at shutdown, dropped" in stderr
    store.close()
