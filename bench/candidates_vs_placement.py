"""Benchmark: resmon's ``/placement/allocation_candidates`` against a real OpenStack Placement
16.0.0 holding the same fleet, over HTTP, one request at a time.

The fleet is bench/candidates_query.py's (varied hosts, a third of them without local disk,
shared-storage providers mounted by those hosts and by some with local disk), stored in resmon
(SQLite file) and synced into Placement (its own venv under tests/.build, SQLite, noauth2,
served by wsgiref as the tests serve it) with ``resmon placement sync``'s code in standalone mode.
resmon's API is served twice by ``resmon serve`` (each in its own process, as Placement is):
as deployed, where an answer is kept until the next collection (exporters/_answer_cache.py), and
with ``answer_cache_mib = 0``, every answer computed (what the first query after a collection
costs). Each query is sent once to each as a warm-up (the counts are printed
side by side), then the mix is sent ``--rounds`` times to each, one at a time.

Prints the sync throughput (providers/s), the writes and time of a re-sync with nothing
changed, p50/p99 per server, the speedups with every answer computed, and as the last line
(resmon as deployed) exactly
``speedup_vs_placement_p50=<float> speedup_vs_placement_p99=<float> resync_writes=<int>``.
Targets: >= 30x on both, 0 writes.

    python bench/candidates_vs_placement.py [--hosts 1000] [--rounds 10]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from candidates_query import prepared  # noqa: E402

from exporters.placement_sync import SyncOptions, placement_adapter, sync  # noqa: E402
from tests.live_servers import resmon_serve  # noqa: E402
from tests.placement.tools import run_placement  # noqa: E402

HEADERS = {"x-auth-token": "admin", "openstack-api-version": "placement 1.39"}
#: What a scheduler asks: flavours with and without disk (served by local disks and by the
#: sharing providers), traits, a query nothing fits; Nova's own limit (1000) and smaller ones.
QUERIES = [
    "resources=VCPU:4,MEMORY_MB:8192&limit=50",
    "resources=VCPU:4,MEMORY_MB:8192,DISK_GB:40&required=HW_CPU_X86_AVX2&limit=50",
    "resources=VCPU:2,MEMORY_MB:4096,DISK_GB:20&limit=1000",
    "resources=VCPU:16,MEMORY_MB:65536,DISK_GB:200&required=!COMPUTE_STATUS_DISABLED&limit=50",
    "resources=VCPU:2&required=HW_CPU_X86_AVX512F&limit=10",
    "resources=DISK_GB:100&limit=50",
    "resources=VCPU:8,DISK_GB:500&required=CUSTOM_VMWARE_DATASTORE_NFS&limit=50",
    "resources=MEMORY_MB:5000000&limit=50",  # nothing fits
]


def timings(client: httpx.Client, path: str, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        for query in QUERIES:
            start = time.perf_counter()
            response = client.get(f"{path}?{query}")
            times.append((time.perf_counter() - start) * 1000)
            response.raise_for_status()
    return sorted(times)


def summary(label: str, times: list[float]) -> tuple[float, float]:
    p50 = statistics.median(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"{label}: requests={len(times)} p50_ms={p50:.2f} p99_ms={p99:.2f} "
          f"max_ms={times[-1]:.2f}")  # fmt: skip
    return p50, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10, help="times the query mix is sent")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite:///{Path(tmp) / 'resmon.db'}"
        store = prepared(database_url, args.hosts)
        with run_placement(Path(tmp)) as placement:
            api = placement_adapter(placement, timeout=600)
            start = time.perf_counter()
            first = sync(store, api, SyncOptions(mode="standalone"))
            took = time.perf_counter() - start
            print(f"sync: providers={first.providers} writes={first.writes} in {took:.1f}s "
                  f"({first.providers / took:.1f} providers/s)")  # fmt: skip
            start = time.perf_counter()
            again = sync(store, api, SyncOptions(mode="standalone"))
            print(f"re-sync with nothing changed: writes={again.writes} in "
                  f"{time.perf_counter() - start:.1f}s")  # fmt: skip

            with ExitStack() as stack:
                # resmon as deployed (an answer is kept until the next collection), and with
                # every answer computed (what the first query after each collection costs).
                kept, computed = (
                    stack.enter_context(httpx.Client(
                        base_url="http://" + stack.enter_context(
                            resmon_serve(database_url, Path(tmp), answer_cache_mib=mib)
                        ),
                        headers=HEADERS, timeout=600,
                    ))
                    for mib in (32, 0)
                )  # fmt: skip
                theirs = stack.enter_context(
                    httpx.Client(base_url=placement, headers=HEADERS, timeout=600)
                )
                ours_path, theirs_path = (
                    "/placement/allocation_candidates",
                    "/allocation_candidates",
                )
                for query in QUERIES:  # warm-up (resmon loads its index), answers side by side
                    counts = []
                    for client, path in ((kept, ours_path), (computed, ours_path),
                                         (theirs, theirs_path)):  # fmt: skip
                        response = client.get(f"{path}?{query}")
                        response.raise_for_status()
                        counts.append(len(response.json()["allocation_requests"]))
                    assert counts[0] == counts[1], (query, counts)
                    print(f"answers resmon={counts[0]:5d} placement={counts[2]:5d} for {query}")
                mine = summary("resmon", timings(kept, ours_path, args.rounds))
                every = summary("resmon, every answer computed",
                                timings(computed, ours_path, args.rounds))  # fmt: skip
                placements = summary("placement", timings(theirs, theirs_path, args.rounds))
        store.close()
    print(
        f"every answer computed: speedup_p50={placements[0] / every[0]:.1f} "
        f"speedup_p99={placements[1] / every[1]:.1f}"
    )
    print(
        f"speedup_vs_placement_p50={placements[0] / mine[0]:.1f} "
        f"speedup_vs_placement_p99={placements[1] / mine[1]:.1f} resync_writes={again.writes}"
    )


if __name__ == "__main__":
    main()
