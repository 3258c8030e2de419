"""collect() keeps the target's timeout as a whole deadline on a link that trickles bytes.

pywinrm bounds each socket read, and the fault proxy's ``slow`` mode answers every read within
any such bound (a quarter of a second per 256 bytes), so only a deadline on the whole exchange
ends it: the collector shuts its session's sockets down and reports a timeout. (A host that
keeps the command running is tested in test_hyperv_wsman.py: its shell is still deleted.)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from collectors.hyperv import HypervCollector
from resmon.contract import CollectorError, HostReport, TargetTimeout
from tests.faults.fault_proxy import FaultProxy

from .conftest import ServerFactory, host_reply, make_target
from .wsman_server import WSManServer

LOG = logging.getLogger("tests.hyperv.deadline")
#: Room for the healthy collection below on a loaded machine; pywinrm's read timeout is as long.
TIMEOUT_S = 2.0
#: How long collect() may take: the deadline, as long again for the cleanup, and an allowance for
#: a loaded machine (a bound, not a target: without the deadline a collection through the slow
#: proxy below takes over twenty seconds).
BOUND_S = 2 * TIMEOUT_S + 5.0


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _settled(count: Callable[[], int], at_most: int, within_s: float = 20.0) -> int:
    """``count()`` once it is down to ``at_most`` (or its value after ``within_s``)."""
    give_up = time.monotonic() + within_s
    while (value := count()) > at_most and time.monotonic() < give_up:
        time.sleep(0.1)
    return value


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(None, slow_chunk=128)  # 512 bytes a second
    try:
        yield fault_proxy
    finally:
        fault_proxy.close()


def _through(proxy: FaultProxy, server: WSManServer) -> str:
    port = server.httpd.server_address[1]
    proxy.upstream = ("127.0.0.1", port)
    proxy.mode = "pass"  # a proxy made without an upstream hangs
    return server.url.replace(f":{port}/", f":{proxy.port}/")


def _collect_in_thread(collector: HypervCollector) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(collector.collect())
        except CollectorError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.parametrize(
    ("server_kwargs", "options"),
    [({}, {}), ({"tls": False}, {"allow_http": True})],
    ids=["https-ntlm", "http-ntlm-sealed"],
)
def test_trickling_link_times_out_within_the_deadline_and_leaves_nothing(
    server_kwargs: dict[str, object],
    options: dict[str, object],
    wsman: ServerFactory,
    pki: tuple[Path, Path, Path],
    proxy: FaultProxy,
) -> None:
    server = wsman(host_reply("server2022_every_vm_state"), **server_kwargs)
    target = make_target(
        server, pki[0], url=_through(proxy, server), options=options, timeout_s=TIMEOUT_S
    )
    threads, fds = threading.active_count(), _fds()

    # A healthy link first: the deadline does not disturb a collection that ends in time.
    collector = HypervCollector.from_target(target, logger=LOG)
    try:
        (report,) = collector.collect()
        assert isinstance(report, HostReport)

        proxy.mode = "slow"
        collector_thread, outcome = _collect_in_thread(collector)
        collector_thread.join(BOUND_S)
        assert not collector_thread.is_alive(), "collect() ran on past its deadline"
    finally:
        collector.close()

    (error,) = outcome
    assert isinstance(error, TargetTimeout), error
    assert error.target == "hv-under-test"
    assert f"{TIMEOUT_S:g}s" in str(error)
    # Nothing the attempt opened outlives it (the proxy ends its side once ours is shut down).
    assert _settled(threading.active_count, threads) <= threads
    assert _settled(_fds, fds) <= fds
