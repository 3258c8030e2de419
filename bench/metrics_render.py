"""Benchmark: render /metrics from a store holding 10,000 hosts (SQLite file in a temp dir, or
an empty database given with ``--database-url``, e.g. PostgreSQL).

Prints the render time (median of several renders after one warm-up), the time the renders
spent in database calls (``resmon_exporter_store_read_duration_seconds``: every call is bounded
by ``database_timeout_s``, so the most that one call took is at most that sum) against
``database_timeout_s``, the body size and the process RSS. The last line is exactly
``render_ms=<float> bytes=<int> rss_mb=<float>``. Targets: render <= 300 ms, RSS <= 300 MB.

    python bench/metrics_render.py [--hosts 10000] [--per-target 500] [--database-url URL]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from resmon.contract import Anomaly, HugePages, NumaCell
from resmon.contract.testing import fake_report
from resmon.runner import CollectionOutcome
from resmon.store import DEFAULT_TIMEOUT_S, Store, TargetSpec

_TRAITS = ("HW_CPU_X86_AVX2", "HW_CPU_X86_AVX512F", "HW_CPU_X86_SSE42", "COMPUTE_STATUS_DISABLED")


def populate(store: Store, hosts: int, per_target: int = 500) -> None:
    """``hosts`` varied compute hosts in targets of ``per_target``, one record() per target.

    Sizes, use, traits, NUMA cells and hypervisor types vary with the host number so that
    candidate queries select a realistic share of the fleet.
    """
    for first in range(0, hosts, per_target):
        name = f"target-{first // per_target:03d}"
        reports = []
        for i in range(first, min(first + per_target, hosts)):
            vcpus = (8, 16, 32, 64, 128)[i % 5]
            memory_mib = vcpus * (2048, 4096, 8192)[i % 3]
            traits = tuple(t for k, t in enumerate(_TRAITS) if (i >> k) % 3 != 0)
            hv_type = "kvm" if i % 10 else "qemu"
            report = fake_report(
                f"host-{i:05d}", target=name, vcpus=vcpus, memory_mib=memory_mib,
                disk_gib=(500, 1000, 2000)[i % 3], hv_type=hv_type, traits=traits,
                used_vcpus=(i * 7) % (vcpus * 4), used_memory_mib=(i * 977) % memory_mib,
                parent_id=f"cluster-{i % 20}",
            )  # fmt: skip
            half = vcpus // 2
            page = HugePages(page_size_bytes=2 * 1024 * 1024, total=1024, free=i % 1024)
            report.numa_cells = [
                NumaCell(cell_id=c, cpus=list(range(c * half, (c + 1) * half)),
                         memory_bytes=memory_mib * 1024 * 512, huge_pages=[page])
                for c in range(2)
            ]  # fmt: skip
            if i % 50 == 0:
                report.anomalies = [Anomaly(code="unknown_cpu_model", message="odd model")]
            reports.append(report)
        outcome = CollectionOutcome(
            target=name, collector="fake", started_at=datetime.now(UTC), duration_s=1.5,
            reports=reports,
        )  # fmt: skip
        store.record(TargetSpec(name, "fake", "fake://", interval_s=3600.0), outcome)


def _read_seconds(body: bytes) -> float:
    """The render's own figure of the time it spent in database calls."""
    name = b"resmon_exporter_store_read_duration_seconds "
    start = body.index(b"\n" + name) + 1 + len(name)
    return float(body[start : body.index(b"\n", start)])


def _rss_mb() -> float:
    # ru_maxrss is KiB on Linux: the peak, which is what a memory limit must allow.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--per-target", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-url", help="an empty database (default: a SQLite file)")
    args = parser.parse_args()

    from exporters.prometheus import render_metrics

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'resmon.db'}"
        store = Store(url)
        store.upgrade()
        start = time.perf_counter()
        populate(store, args.hosts, args.per_target)
        print(f"populated {args.hosts} hosts in {time.perf_counter() - start:.1f}s")
        body = render_metrics(store)  # warm-up: connection pool, statement caches
        times, reads = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            body = render_metrics(store)
            times.append((time.perf_counter() - start) * 1000)
            reads.append(_read_seconds(body))
        store.close()
    samples = sum(1 for line in body.splitlines() if not line.startswith(b"#"))
    print(f"renders_ms={[round(t, 1) for t in times]} samples={samples}")
    print(
        f"database calls per render: {max(reads):.2f}s at most in all = "
        f"{100 * max(reads) / DEFAULT_TIMEOUT_S:.0f}% of database_timeout_s "
        f"({DEFAULT_TIMEOUT_S:g}s); longest render {max(times) / 1000:.2f}s"
    )
    print(f"render_ms={statistics.median(times):.1f} bytes={len(body)} rss_mb={_rss_mb():.1f}")


if __name__ == "__main__":
    main()
