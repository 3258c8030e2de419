"""libvirt over a link that trickles: the connection opens, then the capabilities crawl in past the
timeout. Keepalive cannot end such a connection (the peer does answer), so the collector must shut
its socket down when it gives up; else the read abandoned in its worker thread holds the thread
and the socket until the last byte arrives, and every attempt adds one of each."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from resmon.contract import Target, TargetTimeout

from .daemon_process import wait_for
from .fault_proxy import FaultProxy

libvirt = pytest.importorskip("libvirt")

pytestmark = pytest.mark.libvirtd

#: A connection's handshake (a dozen short answers) gets through within the timeout; the
#: capabilities document (kilobytes) does not.
TIMEOUT_S = 2.0
ESTABLISHED = "01"  # /proc/net/tcp state


@pytest.fixture(scope="module")
def libvirt_socket() -> Iterator[str]:
    from tests.libvirt import libvirtd_daemon

    with libvirtd_daemon.running_or_skip():
        yield "/run/libvirt/libvirt-sock"


def _established_to(port: int) -> int:
    """This process's established TCP connections to ``port`` on loopback."""
    count = 0
    with open("/proc/self/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if int(fields[2].split(":")[1], 16) == port and fields[3] == ESTABLISHED:
                count += 1
    return count


def test_a_connection_given_up_on_a_trickling_link_is_shut_down(libvirt_socket: str) -> None:
    from collectors.libvirt import LibvirtCollector

    proxy = FaultProxy(libvirt_socket, slow_chunk=64, slow_delay_s=0.05)
    proxy.mode = "slow"
    target = Target(
        name="trickle", collector="libvirt", url=f"qemu+tcp://127.0.0.1:{proxy.port}/system",
        timeout_s=TIMEOUT_S, options={"domain_capabilities": False},
    )  # fmt: skip
    collector = LibvirtCollector.from_target(target, logger=logging.getLogger("test"))
    try:
        with pytest.raises(TargetTimeout, match="reading capabilities"):
            collector.collect()
        # Given up, and shut down at once: nothing of this process still talks to the proxy.
        assert _established_to(proxy.port) == 0
        wait_for(
            lambda: not any(t.name == "resmon-libvirt:trickle" for t in threading.enumerate()),
            30, "the abandoned read's thread to end",
        )  # fmt: skip
    finally:
        collector.close()
        proxy.close()
