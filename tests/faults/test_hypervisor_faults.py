"""Each fault of the network or the host, in front of each real hypervisor part, seen by a daemon.

A :class:`FaultProxy` stands between ``resmon run`` and the real part (libvirtd, the vCenter
simulator, the WS-Management server). The daemon collects two targets of the driver: one through
the proxy, one straight to the part. For every fault × driver:

* each attempt against the faulted target fails with the contract's error kind for that fault,
  within ``timeout_s`` (plus a generous allowance for scheduling on a loaded machine);
* the healthy target keeps being collected on its own interval;
* what the faulted target had before is still served by the API, marked stale;
* repeated attempts leave nothing behind: the daemon's descriptors and threads do not grow.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from exporters.api import create_app
from resmon.store import Store

from .daemon_process import aware, resources, runs_since, start_daemon, stop_daemon, wait_for
from .fault_proxy import FaultProxy, Mode

#: The faulted target: every attempt is bounded by this.
FAULTED_INTERVAL_S = 1.0
FAULTED_TIMEOUT_S = 1.0
#: The healthy target's schedule.
HEALTHY_INTERVAL_S = 2.0
HEALTHY_TIMEOUT_S = 2.0
#: Scheduling on a shared, loaded machine: a timeout is noticed within the daemon's tick, and
#: a start may come late; generous so that only a real hang or a starved pool exceeds it.
SLACK_S = 2.5
#: Attempts watched per fault: what the daemon holds after the first is compared with what it
#: holds after the last (a leak grows with each attempt; the attempt in flight, or one being torn
#: down, may hold one more descriptor or thread at any moment).
ATTEMPTS = 3
IN_FLIGHT = 1
#: How long descriptors and threads are sampled in pass mode before the fault (the fewest seen
#: is the baseline), and how long they may take to come back to it after the fault.
SAMPLE_S = 1.0
SETTLE_S = 15.0
PASSWORD = "fault-suite-Pw-7d1e"
PASSWORD_ENV = "RESMON_FAULTS_PASSWORD"

#: The error kind each fault must be recorded as (resmon.contract's kinds). ``refuse`` and
#: ``garbage`` (no protocol at all on the port) are failures to reach the service; ``hang`` and
#: ``slow`` (bytes trickle in, so no read ever times out) are bounded by the whole-collection
#: timeout.
EXPECTED_KIND: dict[Mode, str] = {
    "refuse": "unreachable",
    "hang": "timeout",
    "slow": "timeout",
    "garbage": "unreachable",
}


#: Known defects, each (driver, fault) with what goes wrong.
KNOWN: dict[tuple[str, Mode], str] = {
    ("libvirt", "garbage"): (
        "after garbage broke an open connection, one socket of it is sometimes still open when "
        "the target is back (2 of 5 runs, one descriptor; it does not grow with the attempts, "
        "the check during the fault passes): the broken connection is closed in a thread and "
        "libvirt frees its socket when its last reference goes, which is not yet tied to close()"
    ),
}


@dataclass
class Part:
    """A real part and how the daemon's targets reach it."""

    driver: str
    #: TOML of the target fields after name/collector, given the URL.
    fields: str
    healthy_url: str
    faulted_url: str
    upstream: tuple[str, int] | str
    stop: Any


def _toml_target(name: str, collector: str, url: str, interval: float, timeout: float,
                 fields: str) -> str:  # fmt: skip
    return (
        f'\n[[targets]]\nname = "{name}"\ncollector = "{collector}"\nurl = "{url}"\n'
        f"interval_s = {interval}\ntimeout_s = {timeout}\n{fields}"
    )


def _libvirt(proxy_port: int) -> Iterator[Part]:
    pytest.importorskip("libvirt")
    from tests.libvirt import libvirtd_daemon

    # libvirt's remote driver over TCP (what qemu+tcp:// speaks to a remote libvirtd) reaches
    # the local libvirtd's socket through the proxy; read-only, without the per-guest-type
    # domain capabilities (slow to answer on a QEMU host, and not what is under test here).
    with libvirtd_daemon.running_or_skip() as daemon:
        yield Part(
            driver="libvirt",
            fields="options = { domain_capabilities = false }\n",
            healthy_url=daemon.uri,
            faulted_url=f"qemu+tcp://127.0.0.1:{proxy_port}/system",
            upstream="/run/libvirt/libvirt-sock",
            stop=None,
        )


def _vmware(proxy_port: int) -> Iterator[Part]:
    from tests.vmware import vcsim

    try:
        sim = vcsim.start(cluster=1, host=2, standalone=0, vm=2, username="resmon",
                          password=PASSWORD)  # fmt: skip
    except vcsim.SimulatorUnavailable as exc:
        pytest.fail(f"cannot start the vCenter simulator: {exc}")
    host, port = sim.url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)
    try:
        yield Part(
            driver="vmware",
            fields=(
                f'username = "resmon"\npassword_env = "{PASSWORD_ENV}"\nca_bundle = "{sim.cert}"\n'
            ),
            healthy_url=sim.url,
            faulted_url=sim.url.replace(f"{host}:{port}", f"127.0.0.1:{proxy_port}"),
            upstream=(host, int(port)),
            stop=None,
        )
    finally:
        sim.stop()


def _hyperv(proxy_port: int, tmp: Path) -> Iterator[Part]:
    from collectors.hyperv import SCRIPT
    from tests.hyperv.wsman_server import Reply, WSManServer, make_test_pki

    ca, cert, key = make_test_pki(tmp)
    profile = Path(__file__).parents[1] / "hyperv" / "fixtures" / "hosts" / "server2019_small.json"
    server = WSManServer(
        expected_script=SCRIPT, reply=Reply(stdout=profile.read_bytes()), auth="basic",
        username="resmon", password=PASSWORD, tls=(cert, key),
    ).start()  # fmt: skip
    port = server.httpd.server_address[1]
    try:
        yield Part(
            driver="hyperv",
            fields=(
                f'username = "resmon"\npassword_env = "{PASSWORD_ENV}"\nca_bundle = "{ca}"\n'
                'options = { transport = "basic" }\n'
            ),
            healthy_url=server.url,
            faulted_url=server.url.replace(f":{port}/", f":{proxy_port}/"),
            upstream=("127.0.0.1", port),
            stop=None,
        )
    finally:
        server.stop()


@dataclass
class Rig:
    part: Part
    proxy: FaultProxy
    daemon: subprocess.Popen[bytes]
    store: Store
    log: Path


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("libvirt", marks=pytest.mark.libvirtd),
        pytest.param("vmware", marks=pytest.mark.vcsim),
        "hyperv",
    ],
)
def rig(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """The driver's real part, a proxy in front of it, and a daemon collecting through both."""
    tmp = tmp_path_factory.mktemp(request.param)
    proxy = FaultProxy(None)  # upstream set once the part is up (the proxy's port comes first)
    parts = {
        "libvirt": lambda: _libvirt(proxy.port),
        "vmware": lambda: _vmware(proxy.port),
        "hyperv": lambda: _hyperv(proxy.port, tmp),
    }
    starting = parts[request.param]()
    part = next(starting)
    proxy.upstream = part.upstream
    proxy.mode = "pass"
    database = f"sqlite:///{tmp / 'resmon.db'}"
    config = tmp / "resmon.toml"
    config.write_text(
        f'[resmon]\ndatabase_url = "{database}"\nlisten = ""\n'
        + _toml_target("healthy", part.driver, part.healthy_url, HEALTHY_INTERVAL_S,
                       HEALTHY_TIMEOUT_S, part.fields)
        + _toml_target("faulted", part.driver, part.faulted_url, FAULTED_INTERVAL_S,
                       FAULTED_TIMEOUT_S, part.fields)
    )  # fmt: skip
    log = tmp / "daemon.log"
    daemon = start_daemon(config, log, {PASSWORD_ENV: PASSWORD})
    store = Store(database)
    try:
        yield Rig(part=part, proxy=proxy, daemon=daemon, store=store, log=log)
    finally:
        stop_daemon(daemon)
        store.close()
        proxy.close()
        starting.close()


@pytest.mark.parametrize("fault", list(EXPECTED_KIND))
def test_fault(rig: Rig, fault: Mode, request: pytest.FixtureRequest) -> None:
    known = KNOWN.get((rig.part.driver, fault))
    if known is not None:  # not strict: how much piles up depends on the machine's load
        request.applymarker(pytest.mark.xfail(reason=known, strict=False))
    store, log, proxy = rig.store, rig.log, rig.proxy
    api = TestClient(create_app(store))

    # Earlier data: a success through the proxy.
    baseline = _passing(rig)
    before = api.get("/v1/hosts", params={"target": "faulted"}).json()["hosts"]
    assert before and not any(h["stale"] for h in before)

    proxy.mode = fault
    switched = datetime.now(UTC)
    samples: list[tuple[int, int, int]] = []  # (attempts so far, descriptors, threads)

    def attempts_done() -> bool:
        attempts = len(_safe_runs(store, "faulted", switched))
        samples.append((attempts, *resources(rig.daemon.pid)))
        return attempts > ATTEMPTS  # the samples after the last attempt are complete

    wait_for(attempts_done, 30 + ATTEMPTS * (FAULTED_TIMEOUT_S + FAULTED_INTERVAL_S) * 3,
             f"{ATTEMPTS} attempts under {fault}", log)  # fmt: skip
    attempts = _safe_runs(store, "faulted", switched)[:ATTEMPTS]
    window_end = aware(attempts[-1].started_at)

    # The error kind, and the time each attempt took.
    for run in attempts:
        assert (run.status, run.error_kind) == ("failed", EXPECTED_KIND[fault]), (
            run.error_kind, run.error_message,
        )  # fmt: skip
        assert run.duration_s <= FAULTED_TIMEOUT_S + SLACK_S, (run.duration_s, run.error_message)

    # The healthy target stayed on its schedule meanwhile.
    healthy = [r for r in _safe_runs(store, "healthy", switched)
               if aware(r.started_at) <= window_end]  # fmt: skip
    assert healthy and all(r.status == "success" for r in healthy), [
        (r.status, r.error_kind, r.error_message) for r in healthy
    ]
    starts = [switched, *(aware(r.started_at) for r in healthy), window_end]
    gaps = [(b - a).total_seconds() for a, b in zip(starts, starts[1:], strict=False)]
    assert max(gaps) <= HEALTHY_INTERVAL_S + SLACK_S, gaps

    # The faulted target's earlier data is still served, marked stale.
    after = api.get("/v1/hosts", params={"target": "faulted"}).json()["hosts"]
    assert [h["id"] for h in after] == [h["id"] for h in before]
    assert all(h["stale"] for h in after)
    [status] = [t for t in api.get("/v1/targets").json()["targets"] if t["name"] == "faulted"]
    assert status["collection"]["stale"], status
    assert status["collection"]["error_kind"] == EXPECTED_KIND[fault], status

    # Nothing piles up during the fault: the fewest descriptors and threads seen after the last
    # attempt, against after the first.
    for index, what in ((1, "descriptors"), (2, "threads")):
        first = min(s[index] for s in samples if s[0] == 1)
        last = min(s[index] for s in samples if s[0] == ATTEMPTS)
        assert last <= first + IN_FLIGHT, (
            f"{what} grew from {first} to {last} over {ATTEMPTS - 1} attempts under {fault}"
        )

    # Back by itself once the fault ends, and what the failed attempts held is released.
    _passing(rig)
    wait_for(
        lambda: all(now <= then for now, then in zip(resources(rig.daemon.pid), baseline,
                                                        strict=True)),
        SETTLE_S, lambda: f"descriptors and threads back to {baseline} after {fault} (now "
        f"{resources(rig.daemon.pid)}; descriptors: {_descriptors(rig.daemon.pid)})", log,
    )  # fmt: skip


def _descriptors(pid: int) -> list[str]:
    """What the descriptors of ``pid`` are (for a failure message)."""
    found = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            found.append(os.readlink(f"/proc/{pid}/fd/{name}"))
        except OSError:
            continue
    return sorted(found)


def _passing(rig: Rig) -> tuple[int, int]:
    """Pass mode until the faulted target is collected again; then the fewest descriptors and
    threads the daemon holds over :data:`SAMPLE_S`."""
    rig.proxy.mode = "pass"
    since = datetime.now(UTC)
    wait_for(
        lambda: any(r.status == "success" for r in _safe_runs(rig.store, "faulted", since)),
        60, "a collection through the proxy in pass mode", rig.log,
    )  # fmt: skip
    samples = []
    end = time.monotonic() + SAMPLE_S
    while time.monotonic() < end:
        samples.append(resources(rig.daemon.pid))
        time.sleep(0.02)
    return min(s[0] for s in samples), min(s[1] for s in samples)


def _safe_runs(store: Store, target: str, since: datetime) -> list[Any]:
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return runs_since(store, target, since)
    except SQLAlchemyError:  # the daemon is still creating the database
        return []
