"""Benchmark: GET /v1/candidates over HTTP (uvicorn on 127.0.0.1) with 10,000 hosts in the store,
on SQLite (a file in a temp dir) and PostgreSQL (a fresh database, dropped afterwards).

A third of the hosts carry no DISK_GB (as vSphere hosts, whose datastores are sharing
providers); each target also has shared-storage providers (one per 25 hosts) mounted by those
hosts and by some hosts with local disk, so DISK_GB answers span a host and a sharing provider.

The API is ``resmon serve`` in its own process, as deployed. A mix of queries (resources only,
with traits, with an instance type, both orders) is sent one at a time from a keep-alive
client; p50 and p99 are per backend, first as deployed (an answer is kept until the next
collection, exporters/_answer_cache.py: the repeats are hits), then with ``answer_cache_mib = 0``,
every answer computed: the search and encoding this benchmark exists to watch. The last line,
with every answer computed, is exactly ``p99_ms_sqlite=<float> p99_ms_postgres=<float>``.
Target: p99 <= 20 ms on both.

    python bench/candidates_query.py [--hosts 10000] [--requests 500]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from metrics_render import populate
from sqlalchemy import create_engine, select, text

from resmon.contract import HostReport, Inventory, ProviderKind
from resmon.contract.testing import fake_report
from resmon.runner import CollectionOutcome
from resmon.store import Store, TargetSpec
from resmon.store.models import Host, Target

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.live_servers import resmon_serve  # noqa: E402

QUERIES = [
    "resources=VCPU:4,MEMORY_MB:8192",
    "resources=VCPU:4,MEMORY_MB:8192,DISK_GB:40&required=HW_CPU_X86_AVX2,!COMPUTE_STATUS_DISABLED"
    "&instance=x86_64/kvm/hvm&limit=50",
    "resources=VCPU:16,MEMORY_MB:65536&order=least_free",
    "resources=VCPU:2&required=HW_CPU_X86_AVX512F&instance=x86_64/qemu/hvm&limit=10",
    "resources=MEMORY_MB:500000",  # nothing fits: the whole range is searched
    "resources=DISK_GB:100,VCPU:1&required=!HW_CPU_X86_SSE42&order=least_free&limit=200",
    # Sharing providers in the answers: disk first (ordered by the datastores' free space) and
    # a trait only some datastores have.
    "resources=DISK_GB:40,VCPU:2,MEMORY_MB:4096&limit=50",
    "resources=VCPU:4,DISK_GB:200&required=CUSTOM_VMWARE_DATASTORE_NFS&order=least_free",
]

#: Hosts per shared-storage provider, and how many providers each host with local disk mounts.
SHARED_PER = 25


def measure(url: str, workdir: Path, requests: int, label: str, answer_cache_mib: int) -> float:
    """p99 of ``requests`` queries to ``resmon serve`` (its own process, as deployed)."""
    # Generous timeout: the first request loads the whole fleet into the candidate index.
    with (
        resmon_serve(url, workdir, answer_cache_mib=answer_cache_mib) as address,
        httpx.Client(base_url=f"http://{address}", timeout=300) as client,
    ):
        for query in QUERIES:  # warm-up; also checks every query is accepted
            start = time.perf_counter()
            response = client.get(f"/v1/candidates?{query}")
            took_ms = (time.perf_counter() - start) * 1000
            response.raise_for_status()
            # The first request loads the API process's candidate index: reported, not counted.
            print(
                f"{label}: {len(response.json()['candidates']):4d} candidates in "
                f"{took_ms:7.1f} ms for {query}"
            )
        times = []
        for i in range(requests):
            query = QUERIES[i % len(QUERIES)]
            start = time.perf_counter()
            response = client.get(f"/v1/candidates?{query}")
            times.append((time.perf_counter() - start) * 1000)
            response.raise_for_status()
    times.sort()
    p50 = statistics.median(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"{label}: requests={requests} p50_ms={p50:.2f} p99_ms={p99:.2f} max_ms={times[-1]:.2f}")
    return p99


def add_shared_storage(store: Store) -> None:
    """Re-record each target with every third host diskless and its shared storage added."""
    with store.session() as session:
        by_target: dict[str, list[HostReport]] = {}
        for name, report in session.execute(
            select(Target.name, Host.report).join(Host.target).order_by(Host.id)
        ):
            by_target.setdefault(name, []).append(HostReport.model_validate(report))
    for name, reports in by_target.items():
        for n, report in enumerate(reports):
            if n % 3 == 0:
                kept = [i for i in report.inventories if i.resource_class != "DISK_GB"]
                report.inventories = kept
        shared = []
        for first in range(0, len(reports), SHARED_PER):
            ds = fake_report(f"datastore-{first // SHARED_PER}", target=name,
                             traits=("MISC_SHARES_VIA_AGGREGATE",))  # fmt: skip
            ds.provider_kind = ProviderKind.SHARED_STORAGE
            ds.hypervisor = ds.cpu = ds.memory = None
            ds.supported_instances = []
            total = (4000, 8000, 16000)[first % 3]
            ds.inventories = [Inventory(resource_class="DISK_GB", total=total, used=first % total)]
            if first % 2:
                ds.traits.append("CUSTOM_VMWARE_DATASTORE_NFS")
            # Every diskless host, and every fourth host with local disk (both answers).
            group = enumerate(reports[first : first + SHARED_PER], first)
            mounted = [r.identity.host_id for n, r in group if n % 3 == 0 or n % 4 == 0]
            ds.shared_with = sorted(mounted)
            shared.append(ds)
        outcome = CollectionOutcome(
            target=name, collector="fake", started_at=datetime.now(UTC), duration_s=1.5,
            reports=reports + shared,
        )  # fmt: skip
        store.record(TargetSpec(name, "fake", "fake://", interval_s=3600.0), outcome)


def prepared(url: str, hosts: int) -> Store:
    # Loading thousands of hosts in one collection takes longer than the store's default bound
    # on one operation on a loaded machine.
    store = Store(url, timeout_s=600)
    store.upgrade()
    start = time.perf_counter()
    populate(store, hosts)
    add_shared_storage(store)
    # A fleet that has run for a while: PostgreSQL's autovacuum has long since vacuumed and
    # analysed the bulk load (left to itself, it starts during the measurement).
    statement = "VACUUM ANALYZE" if store.engine.dialect.name == "postgresql" else "ANALYZE"
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(statement))
    print(f"populated {hosts} hosts in {time.perf_counter() - start:.1f}s ({url.split(':')[0]})")
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument(
        "--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="an existing database to create the benchmark database from",
    )  # fmt: skip
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'resmon.db'}"
        prepared(url, args.hosts).close()
        measure(url, Path(tmp), args.requests, "sqlite, answers kept", 32)
        p99_sqlite = measure(url, Path(tmp), args.requests, "sqlite", 0)

    admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    name = f"resmon_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = args.postgres.rsplit("/", 1)[0] + "/" + name
        prepared(url, args.hosts).close()
        with tempfile.TemporaryDirectory() as tmp:
            measure(url, Path(tmp), args.requests, "postgres, answers kept", 32)
            p99_postgres = measure(url, Path(tmp), args.requests, "postgres", 0)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    print(f"p99_ms_sqlite={p99_sqlite:.2f} p99_ms_postgres={p99_postgres:.2f}")


if __name__ == "__main__":
    main()
