"""A ``resmon run`` process for fault tests, and what can be read of it from outside.

The daemon runs as the operator runs it (its own process, ``resmon run --no-serve``), so that
its threads and descriptors can be counted in ``/proc/<pid>`` without the test's own (the fault
proxy and the servers live in the test process).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from resmon.store import Store, models


def start_daemon(
    config: Path, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "resmon.cli", "--log-level", "info", "run", "--no-serve",
             "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, **(env or {})},
        )  # fmt: skip


def stop_daemon(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def resources(pid: int) -> tuple[int, int]:
    """(open descriptors, threads) of process ``pid``."""
    return len(os.listdir(f"/proc/{pid}/fd")), len(os.listdir(f"/proc/{pid}/task"))


def aware(moment: datetime) -> datetime:
    """SQLite gives naive datetimes back; the store writes UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def runs_since(store: Store, target: str, since: datetime) -> list[models.CollectionRun]:
    """``target``'s runs that started at or after ``since``, oldest first."""
    return [r for r in store.runs(target) if aware(r.started_at) >= since]


def wait_for(
    condition: Callable[[], bool],
    within_s: float,
    what: str | Callable[[], str],
    log: Path | None = None,
) -> None:
    """Until ``condition`` holds; fails after ``within_s`` saying ``what`` (a callable: worked
    out at the failure) and the end of the daemon's ``log``."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            detail = f"\n--- daemon log ---\n{log.read_text()[-4000:]}" if log else ""
            said = what() if callable(what) else what
            raise AssertionError(f"{said}: not within {within_s:g}s{detail}")
        time.sleep(0.1)
