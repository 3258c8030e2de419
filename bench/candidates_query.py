"""Benchmark: GET /v1/candidates over HTTP (uvicorn on 127.0.0.1) with 10,000 hosts in the store,
on SQLite (a file in a temp dir) and PostgreSQL (a fresh database, dropped afterwards).

A mix of queries (resources only, with traits, with an instance type, both orders) is sent
one at a time from a keep-alive client; p50 and p99 are per backend. The last line is exactly
``p99_ms_sqlite=<float> p99_ms_postgres=<float>``. Target: p99 <= 20 ms on both.

    python bench/candidates_query.py [--hosts 10000] [--requests 500]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from metrics_render import populate
from sqlalchemy import create_engine, text

from exporters.api import create_app
from resmon.store import Store

QUERIES = [
    "resources=VCPU:4,MEMORY_MB:8192",
    "resources=VCPU:4,MEMORY_MB:8192,DISK_GB:40&required=HW_CPU_X86_AVX2,!COMPUTE_STATUS_DISABLED"
    "&instance=x86_64/kvm/hvm&limit=50",
    "resources=VCPU:16,MEMORY_MB:65536&order=least_free",
    "resources=VCPU:2&required=HW_CPU_X86_AVX512F&instance=x86_64/qemu/hvm&limit=10",
    "resources=MEMORY_MB:500000",  # nothing fits: the whole range is searched
    "resources=DISK_GB:100,VCPU:1&required=!HW_CPU_X86_SSE42&order=least_free&limit=200",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(store: Store) -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(store), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def measure(store: Store, requests: int, label: str) -> float:
    with serve(store) as base, httpx.Client(base_url=base) as client:
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


def prepared(url: str, hosts: int) -> Store:
    store = Store(url)
    store.upgrade()
    start = time.perf_counter()
    populate(store, hosts)
    with store.engine.begin() as conn:  # what autovacuum / a periodic ANALYZE would do
        conn.execute(text("ANALYZE"))
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
        store = prepared(f"sqlite:///{Path(tmp) / 'resmon.db'}", args.hosts)
        try:
            p99_sqlite = measure(store, args.requests, "sqlite")
        finally:
            store.close()

    admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    name = f"resmon_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        store = prepared(args.postgres.rsplit("/", 1)[0] + "/" + name, args.hosts)
        try:
            p99_postgres = measure(store, args.requests, "postgres")
        finally:
            store.close()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    print(f"p99_ms_sqlite={p99_sqlite:.2f} p99_ms_postgres={p99_postgres:.2f}")


if __name__ == "__main__":
    main()
