"""``timeout_s`` limits the whole collection: building the collector and collecting, together."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import pytest

from resmon.cli import main
from resmon.config import ResmonConfig
from resmon.contract import HostReport, Target
from resmon.contract.testing import FakeCollector
from resmon.daemon import Daemon
from resmon.registry import register, unregister
from resmon.store import Store

TIMEOUT_S = 1.0


class _SlowBothHalves(FakeCollector):
    """Each half alone is within the timeout (0.7 × timeout_s); together they are not."""

    name = "slow-halves"

    @classmethod
    def from_target(cls, target: Target, *, logger: Any) -> Self:
        time.sleep(target.timeout_s * 0.7)
        return super().from_target(target, logger=logger)

    def collect(self) -> list[HostReport]:
        time.sleep(self.target.timeout_s * 0.7)
        return super().collect()


class _Slow(FakeCollector):
    """Collecting takes four times the timeout."""

    name = "slow-collect"

    def collect(self) -> list[HostReport]:
        time.sleep(self.target.timeout_s * 4)
        return super().collect()


@pytest.fixture(autouse=True)
def collectors() -> Iterator[None]:
    register(_SlowBothHalves)
    register(_Slow)
    yield
    unregister(_SlowBothHalves.name)
    unregister(_Slow.name)


#: ``resmon run --once`` and ``resmon collect --once`` bound a collection alike (``--store`` makes
#: the second record its run).
COMMANDS = {
    "run": ["run", "--once"],
    "collect": ["collect", "--once", "--store", "--format", "json"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("collector", [_SlowBothHalves.name, _Slow.name])
def test_the_whole_collection_is_limited_by_timeout_s(
    tmp_path: Path, collector: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    config = tmp_path / "resmon.toml"
    config.write_text(f"""
[resmon]
database_url = "{db}"
listen = ""
[[targets]]
name = "t"
collector = "{collector}"
url = "fake://1"
interval_s = 60
timeout_s = {TIMEOUT_S}
""")
    assert main([*COMMANDS[command], "--config", str(config)]) == 1
    assert f"target t ({collector}) failed: timeout" in capsys.readouterr().err
    store = Store(db)
    [run] = store.runs("t")
    store.close()
    assert run.status == "failed" and run.error_kind == "timeout"
    # Given up at the limit, not at the limit plus some grace.
    assert TIMEOUT_S <= run.duration_s < TIMEOUT_S + 0.5


class _LateCloseable(FakeCollector):
    """Collects for twice the timeout, then returns a working collector; says when closed."""

    name = "late-closeable"
    closed = threading.Event()

    def collect(self) -> list[HostReport]:
        time.sleep(self.target.timeout_s * 2)
        return super().collect()

    def close(self) -> None:
        type(self).closed.set()


def test_a_collector_returning_after_its_timeout_is_closed(tmp_path: Path) -> None:
    """The daemon gave up on it; when it does return, its session must not be left open."""
    register(_LateCloseable)
    try:
        config = ResmonConfig.model_validate({
            "resmon": {"database_url": f"sqlite:///{tmp_path / 'r.db'}", "listen": ""},
            "targets": [{"name": "t", "collector": _LateCloseable.name, "url": "fake://1",
                         "interval_s": 60, "timeout_s": TIMEOUT_S}],
        })  # fmt: skip
        [outcome] = Daemon(config, None).run(once=True)
        assert outcome.error_kind == "timeout"
        assert _LateCloseable.closed.wait(30), "the late collector was never closed"
    finally:
        unregister(_LateCloseable.name)
