"""Log lines: ``[resmon] log_level`` applies, every line about a target names it, one line at
start and one per collection, ``--log-format json`` for log shippers, and no secret anywhere."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from resmon.cli import main
from resmon.contract.testing import FakeCollector
from resmon.logs import add_secret, configure_logging
from resmon.registry import register, unregister
from resmon.store import Store

from .waiting import stored_runs

HELPER = Path(__file__).with_name("resmon_with_test_collectors.py")
DB_SENTINEL = "db-sentinel-Zq8Hn2"
TARGET_SENTINEL = "target-sentinel-Kd41xv"


@pytest.fixture(autouse=True)
def fake_registered() -> Iterator[None]:
    register(FakeCollector)
    yield
    unregister("fake")
    configure_logging("warning")


def _targets() -> str:
    return """
[[targets]]
name = "good"
collector = "fake"
url = "fake://2"
interval_s = 60
password_env = "RESMON_TEST_TARGET_SECRET"

[[targets]]
name = "broken"
collector = "fake"
url = "fake://1"
interval_s = 60
options = { fail = "unreachable" }
"""


@pytest.mark.parametrize(("level", "shown"), [("info", True), ("error", False)])
def test_log_level_from_the_configuration_applies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], level: str, shown: bool
) -> None:
    config = tmp_path / "resmon.toml"
    config.write_text(
        f'[resmon]\nlog_level = "{level}"\nlisten = ""\n'
        f'database_url = "sqlite:///{tmp_path / "r.db"}"\n' + _targets()
    )
    os.environ["RESMON_TEST_TARGET_SECRET"] = TARGET_SENTINEL
    try:
        main(["run", "--once", "--config", str(config)])
    finally:
        del os.environ["RESMON_TEST_TARGET_SECRET"]
    err = capsys.readouterr().err
    assert ("target good: ok, 2 hosts" in err) is shown
    assert ("target broken: failed" in err) is shown
    assert logging.getLogger().level == logging.getLevelName(level.upper())


def test_a_collector_line_names_its_target_and_hides_secrets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from resmon.runner import target_logger

    configure_logging("info")
    add_secret("hunter2-sentinel")
    target_logger("fake", "kvm-07").warning("refused password %s", "hunter2-sentinel")
    err = capsys.readouterr().err
    assert "resmon.collector.fake: target kvm-07: refused password ***" in err
    assert "hunter2-sentinel" not in err


@pytest.mark.postgres
def test_json_lines_at_start_and_per_collection_without_secrets(
    tmp_path: Path, postgres_url: str
) -> None:
    database = make_url(postgres_url).set(password=DB_SENTINEL)  # trust auth ignores it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "resmon.toml"
    config.write_text(
        f'[resmon]\nlisten = "127.0.0.1:{port}"\n'
        f'database_url = "{database.render_as_string(hide_password=False)}"\n' + _targets()
    )
    env = dict(os.environ, RESMON_TEST_TARGET_SECRET=TARGET_SENTINEL)
    proc = subprocess.Popen(
        [sys.executable, str(HELPER), "--log-format", "json", "--log-level", "debug",
         "run", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    store = Store(postgres_url)
    try:
        deadline = time.monotonic() + 60
        while not (stored_runs(store, "good") and stored_runs(store, "broken")):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
        store.close()
    assert proc.returncode == 0, stderr
    assert DB_SENTINEL not in stdout + stderr and TARGET_SENTINEL not in stdout + stderr
    lines = [json.loads(line) for line in stderr.splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    messages = [(line["level"], line["message"]) for line in lines]
    start = [m for level, m in messages if m.startswith("resmon ") and "targets" in m]
    assert len(start) == 1
    assert f"http://127.0.0.1:{port}" in start[0] and "2 targets" in start[0]
    assert f"postgresql+psycopg://{database.username}:***@" in start[0]
    assert any(
        level == "info" and m.startswith("target good: ok, 2 hosts") for level, m in messages
    )
    assert any(
        level == "warning" and m.startswith("target broken: failed") and "unreachable" in m
        for level, m in messages
    )
    # The collector's own lines carry the target as a field.
    assert any(line.get("target") == "good" for line in lines if line["logger"].startswith(
        "resmon.collector."))  # fmt: skip
