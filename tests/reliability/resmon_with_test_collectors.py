"""``resmon`` with two test collectors registered, for tests that need a real process.

``fake`` is :class:`resmon.contract.testing.FakeCollector`; ``slow`` is the same, taking
``SLOW_S`` seconds; ``hang`` never returns from ``collect()`` (a hypervisor that accepted the
connection and went silent), whatever its timeout.
"""

from __future__ import annotations

import sys
import threading
import time

from resmon.cli import main
from resmon.contract import HostReport
from resmon.contract.testing import FakeCollector
from resmon.registry import register

SLOW_S = 1.5


class SlowCollector(FakeCollector):
    name = "slow"

    def collect(self) -> list[HostReport]:
        time.sleep(SLOW_S)
        return super().collect()


class HangingCollector(FakeCollector):
    name = "hang"

    def collect(self) -> list[HostReport]:
        threading.Event().wait()  # forever
        raise AssertionError("unreachable")


if __name__ == "__main__":
    register(FakeCollector)
    register(SlowCollector)
    register(HangingCollector)
    sys.exit(main(sys.argv[1:]))
