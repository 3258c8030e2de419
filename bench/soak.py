"""Soak: one daemon collecting many targets at short intervals for a long time, in this process.

By default 50 targets on libvirt's built-in test driver (``test:///default``: a real libvirt
connection per target, no hypervisor needed) every 5 s for 10 minutes, stored in a fresh SQLite
file (or ``--database-url``, e.g. a PostgreSQL database). After a warm-up (a tenth of the run,
at least 30 s: connections opened, caches filled) the process's resident memory, open file
descriptors and threads are sampled; at the end they are compared with that baseline.

A collection is missed when a target's next start comes more than 1.5 intervals after the
previous one (each further interval counts one), or its last start is over 1.5 intervals before
the end.

Usage: python bench/soak.py [--duration S] [--targets N] [--interval S] [--database-url URL]
       python bench/soak.py --short     # 60 s, to try it
Last line: ``rss_growth_pct=<float> fd_growth=<int> thread_growth=<int> missed_collections=<int>``
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from resmon.config import ResmonConfig
from resmon.daemon import Daemon
from resmon.store import Store, models


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def native_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def missed(starts: list[datetime], interval_s: float, since: datetime, until: datetime) -> int:
    count = 0
    times = sorted(t for t in starts if t >= since)
    for before, after in zip([since, *times], [*times, until], strict=True):
        gap = (after - before).total_seconds()
        if gap > 1.5 * interval_s:
            count += int(gap / interval_s + 0.5) - 1
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (600)")
    parser.add_argument("--short", action="store_true", help="60 s instead, to try it")
    parser.add_argument("--targets", type=int, default=50)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds per target (5)")
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    args = parser.parse_args()
    duration = 60.0 if args.short else args.duration
    warmup = max(30.0, duration / 10)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")

    workdir = tempfile.TemporaryDirectory(prefix="resmon-soak-")
    url = args.database_url or f"sqlite:///{workdir.name}/soak.db"
    config = ResmonConfig.model_validate(
        {
            "resmon": {"database_url": url, "listen": "", "max_workers": 16},
            "retention": {"interval_s": 30},
            "targets": [
                {"name": f"soak-{n:03d}", "collector": "libvirt", "url": "test:///default",
                 "interval_s": args.interval, "timeout_s": min(args.interval, 5.0)}
                for n in range(args.targets)
            ],
        }
    )  # fmt: skip
    store = Store(url)
    store.upgrade()
    daemon = Daemon(config, store)
    runner = threading.Thread(target=daemon.run, name="soak-daemon")
    started_at = datetime.now(UTC)
    runner.start()
    print(f"soak: {args.targets} targets every {args.interval:g}s for {duration:g}s into {url}")

    time.sleep(warmup)
    measured_from = datetime.now(UTC)
    base = (rss_bytes(), open_fds(), native_threads())
    print(f"after {warmup:g}s warm-up: rss={base[0] / 2**20:.1f}MiB fds={base[1]} "
          f"threads={base[2]}")  # fmt: skip
    peak_rss = base[0]
    while (datetime.now(UTC) - started_at).total_seconds() < duration:
        time.sleep(5)
        peak_rss = max(peak_rss, rss_bytes())
    end = (rss_bytes(), open_fds(), native_threads())
    until = datetime.now(UTC)
    print(f"at the end: rss={end[0] / 2**20:.1f}MiB (peak {peak_rss / 2**20:.1f}MiB) "
          f"fds={end[1]} threads={end[2]}")  # fmt: skip

    daemon.stop()
    runner.join(timeout=60)
    starts: dict[str, list[datetime]] = defaultdict(list)
    with store.session() as session:
        rows = session.execute(
            select(models.Target.name, models.CollectionRun.started_at, models.CollectionRun.status)
            .join(models.CollectionRun, models.CollectionRun.target_id == models.Target.id)
            .where(models.CollectionRun.started_at >= measured_from - timedelta(seconds=60))
        )
        failures = 0
        for name, started, status in rows:
            aware = started if started.tzinfo else started.replace(tzinfo=UTC)
            starts[name].append(aware)
            failures += status != "success"
    store.close()
    workdir.cleanup()
    total_missed = sum(
        missed(starts.get(f"soak-{n:03d}", []), args.interval, measured_from, until)
        for n in range(args.targets)
    )
    collections = sum(len(v) for v in starts.values())
    print(f"collections since the warm-up: {collections} ({failures} failed)")
    growth = 100.0 * (end[0] - base[0]) / base[0]
    print(f"rss_growth_pct={growth:.2f} fd_growth={end[1] - base[1]} "
          f"thread_growth={end[2] - base[2]} missed_collections={total_missed}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
