"""Start-up failures end the process with one line naming the setting, never a traceback, and
never a daemon that collects without the API it was asked to serve."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from resmon.cli import main

HELPER = Path(__file__).with_name("resmon_with_test_collectors.py")


def test_api_address_in_use_exits_with_a_clear_error(tmp_path: Path) -> None:
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    config = tmp_path / "resmon.toml"
    config.write_text(f"""
[resmon]
database_url = "sqlite:///{tmp_path / "resmon.db"}"
listen = "127.0.0.1:{port}"
[[targets]]
name = "t"
collector = "fake"
url = "fake://1"
interval_s = 60
""")
    try:
        proc = subprocess.run(
            [sys.executable, str(HELPER), "run", "--config", str(config)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    finally:
        taken.close()
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"resmon: cannot listen on 127.0.0.1:{port} ([resmon] listen): Address already in use"
    ]


def _unwritable_dir(tmp_path: Path) -> str:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    return f"sqlite:///{blocker / 'sub' / 'resmon.db'}"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (lambda _: "nosuchdb://host/x", "nosuchdb"),
        (lambda _: "not a url", "is not valid: expected"),
        (lambda _: f"postgresql+psycopg://resmon:s3cret-pw@127.0.0.1:{_closed_port()}/x",
         "Connection refused"),
        (_unwritable_dir, "cannot create the database's directory"),
    ],
    ids=["unknown-scheme", "unparsable", "unreachable-postgresql", "unwritable-sqlite-dir"],
)  # fmt: skip
def test_database_setup_errors_are_one_line_naming_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: object, reason: str
) -> None:
    database = url(tmp_path)  # type: ignore[operator]
    started = time.monotonic()
    assert main(["db", "upgrade", "--database", database]) == 2
    assert time.monotonic() - started < 15
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("resmon: [resmon] database_url "), err
    assert reason in lines[0]
    assert "s3cret-pw" not in err and "Traceback" not in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_sqlite_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    assert main(["db", "upgrade", "--database", f"sqlite:///{ro / 'resmon.db'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("resmon: [resmon] database_url ") and len(err.splitlines()) == 1
