"""Time to collect one libvirt host through resmon versus the bare libvirt calls it makes.

For a test-driver host (test:///default) and for a real libvirtd with QEMU (qemu:///system,
reused when it answers, else started as the tests start it and stopped at the end; skipped with
a reason when it cannot start). Each case warms the collector once (capabilities and domain
capabilities are read once per connection), then times ``collect()`` and the same per-cycle
libvirt calls made directly on the same open connection.

Usage: python bench/libvirt_collect.py [--reps N]
Last line: ``ratio_vs_raw=<float> hosts_per_s=<float>`` (real libvirtd when available).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import libvirt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "libvirt"))
import libvirtd_daemon  # noqa: E402

from collectors.libvirt import LibvirtCollector  # noqa: E402
from resmon.contract import Target  # noqa: E402

GUEST = """<domain type='{kind}'><name>resmon-bench</name><memory unit='MiB'>64</memory>
<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>
<devices><emulator>/usr/bin/qemu-system-x86_64</emulator><memballoon model='none'/></devices>
</domain>"""


def raw_cycle(conn: Any, cells: int, page_kib: list[int]) -> None:
    """The calls LibvirtCollector makes every cycle, with nothing done to the answers."""
    conn.getInfo()
    conn.getCPUMap()
    if cells:
        try:
            conn.getCellsFreeMemory(0, cells)
            if page_kib:
                conn.getFreePages(page_kib, 0, cells)
        except libvirt.libvirtError:
            pass
    conn.getFreeMemory()
    for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
        dom.info()
        dom.UUIDString()
        dom.name()
    for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        pool.UUIDString()
        pool.info()
        pool.name()


def medians_s(a: Callable[[], object], b: Callable[[], object], reps: int) -> tuple[float, float]:
    """Median seconds of ``a`` and of ``b``, run alternately so both see the same machine load."""
    times_a, times_b = [], []
    for _ in range(reps):
        start = time.perf_counter()
        a()
        middle = time.perf_counter()
        b()
        times_a.append(middle - start)
        times_b.append(time.perf_counter() - middle)
    return statistics.median(times_a), statistics.median(times_b)


def bench(uri: str, reps: int) -> tuple[float, float]:
    target = Target(name="bench", collector="libvirt", url=uri, timeout_s=120)
    collector = LibvirtCollector.from_target(target, logger=logging.getLogger("bench"))
    try:
        start = time.perf_counter()
        (host, *_) = collector.collect()
        first = time.perf_counter() - start
        conn = collector._conn  # the collector's own open connection
        cells = len(host.numa_cells)
        page_kib = sorted(
            {p.page_size_bytes // 1024 for c in host.numa_cells for p in c.huge_pages}
        )
        raw_cycle(conn, cells, page_kib)  # warm the raw path too
        resmon, raw = medians_s(collector.collect, lambda: raw_cycle(conn, cells, page_kib), reps)
    finally:
        collector.close()
    print(
        f"{uri}: first collect {first * 1000:.1f} ms (capabilities + domcaps); "
        f"median of {reps}: resmon {resmon * 1e6:.0f} us, raw libvirt {raw * 1e6:.0f} us, "
        f"ratio {resmon / raw:.2f}, {len(host.running_instances.instances)} running guests"
    )
    return resmon, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    args = parser.parse_args()

    resmon, raw = bench("test:///default", args.reps)
    try:
        daemon = libvirtd_daemon.start()
    except libvirtd_daemon.DaemonUnavailable as exc:
        print(f"real libvirtd skipped: {exc}")
    else:
        dom = None
        try:
            conn = libvirt.open(daemon.uri)
            kind = "kvm" if Path("/dev/kvm").exists() else "qemu"
            try:
                dom = conn.createXML(GUEST.format(kind=kind), 0)
            except libvirt.libvirtError as exc:
                print(f"no bench guest ({exc}); timing the host without guests")
            resmon, raw = bench(daemon.uri, args.reps)
        finally:
            if dom is not None:
                dom.destroy()
            libvirtd_daemon.stop(daemon)
    print(f"ratio_vs_raw={resmon / raw:.3f} hosts_per_s={1 / resmon:.1f}")


if __name__ == "__main__":
    main()
