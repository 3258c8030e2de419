"""The command line and the daemon, driven through ``resmon.cli.main`` with the fake collector."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import SQLAlchemyError

from resmon.cli import host_report_json_schema, main
from resmon.config import ConfigError, load_config, split_userinfo
from resmon.contract.testing import FakeCollector
from resmon.daemon import Daemon
from resmon.registry import register, unregister
from resmon.store import Store

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def fake_registered() -> Iterator[None]:
    register(FakeCollector)
    yield
    unregister("fake")


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "resmon.toml"
    path.write_text(body)
    return path


def config_body(tmp_path: Path, extra: str = "") -> str:
    return f"""
[resmon]
database_url = "sqlite:///{tmp_path / "db" / "resmon.db"}"
listen = ""

[[targets]]
name = "good"
collector = "fake"
url = "fake://2"
interval_s = 1
timeout_s = 1

[[targets]]
name = "bad"
collector = "fake"
url = "fake://1"
interval_s = 1
timeout_s = 1
options = {{ fail = "unreachable" }}
{extra}
"""


def test_committed_json_schema_matches_the_models() -> None:
    committed = (REPO / "schema" / "host-report-v1.json").read_text()
    assert committed == host_report_json_schema(), "run: resmon schema export"


def test_run_once_stores_successes_and_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, config_body(tmp_path))
    assert main(["run", "--once", "--config", str(path)]) == 1
    out, err = capsys.readouterr()
    assert "good: ok (2 providers" in out
    assert "target bad (fake) failed: unreachable" in err
    assert main(["targets", "--config", str(path)]) == 0
    table = capsys.readouterr().out
    assert "good" in table and "success" in table and "unreachable: told to fail" in table
    good_row = next(line for line in table.splitlines() if line.startswith("good "))
    assert good_row.split()[4] == "2", "the good target holds two providers"


def test_collect_prints_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["collect", "--once", "--target", "fake=fake://3", "--format", "json"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert [r["identity"]["host_id"] for r in reports] == ["host-0", "host-1", "host-2"]
    assert all(r["schema_version"] == "1.1" for r in reports)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[[targets]]\nname='a'\ncollector='fake'\nurl='fake://'\ninterval_s=-1\n",
         "targets[0].interval_s: Input should be greater than or equal to 1"),
        ("[[targets]]\nname='a'\ncollector='fake'\nurl='fake://'\npassword='x'\n",
         "inline 'password' is not accepted"),
        ("[[targets]]\nname='a'\ncollector='fake'\n", "targets[0].url: Field required"),
        ("[resmon]\nlisten = 'x'\nnope = 1\n", "resmon.nope: Extra inputs are not permitted"),
        ("[resmon]\nanswer_cache_mib = -1\n",
         "resmon.answer_cache_mib: Input should be greater than or equal to 0"),
        ("[[targets]\n", "not valid TOML"),
        ("[[targets]]\nname='a'\ncollector='fake'\nurl='https://u:secret@h/sdk'\n",
         "carries a password"),
    ],
)  # fmt: skip
def test_bad_config_names_file_field_and_problem(tmp_path: Path, body: str, expected: str) -> None:
    path = write_config(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert expected in str(info.value)
    assert "secret" not in str(info.value)


def test_bad_config_exits_2_with_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, "[[targets]]\nname='a'\n")
    assert main(["run", "--once", "--config", str(path)]) == 2
    assert "targets[0].collector: Field required" in capsys.readouterr().err


def test_missing_password_env_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = "[[targets]]\nname='a'\ncollector='fake'\nurl='fake://'\npassword_env='RESMON_NOPE'\n"
    path = write_config(tmp_path, body)
    os.environ.pop("RESMON_NOPE", None)
    store_url = f"sqlite:///{tmp_path / 'x.db'}"
    # Refused when the configuration is loaded, before anything is collected.
    assert main(["run", "--once", "--config", str(path), "--database", store_url]) == 2
    assert "'RESMON_NOPE' (password_env) is not set" in capsys.readouterr().err


def test_userinfo_is_split_off() -> None:
    assert split_userinfo("https://admin@vc.example/sdk") == ("https://vc.example/sdk", "admin")
    assert split_userinfo("qemu:///system") == ("qemu:///system", None)


def test_daemon_repeats_and_stops_on_request(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, config_body(tmp_path)))
    store = Store(config.resmon.database_url)
    store.upgrade()
    daemon = Daemon(config, store)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(store.runs("good")) < 2:
        time.sleep(0.1)
    daemon.stop_event.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(store.runs("good")) >= 2
    assert {r.status for r in store.runs("bad")} == {"failed"}


class _Hang(FakeCollector):
    name = "hang"

    def collect(self):  # type: ignore[no-untyped-def]
        time.sleep(30)
        return super().collect()


def test_hung_collector_is_abandoned_as_timeout(tmp_path: Path) -> None:
    register(_Hang)
    try:
        body = config_body(tmp_path).replace(
            'collector = "fake"\nurl = "fake://2"', 'collector = "hang"\nurl = "fake://2"'
        )
        config = load_config(write_config(tmp_path, body))
        store = Store(config.resmon.database_url)
        store.upgrade()
        started = time.monotonic()
        outcomes = {o.target: o for o in Daemon(config, store).run(once=True)}
        assert time.monotonic() - started < 10
        assert outcomes["good"].error_kind == "timeout"
        assert store.targets()[1].last_status == "failed"
    finally:
        unregister("hang")


def _has_run(store: Store, target: str) -> bool:
    """Whether ``target`` has a stored run yet (the database may still be being created)."""
    try:
        return bool(store.runs(target))
    except SQLAlchemyError:
        return False


def test_sigterm_stops_resmon_run(tmp_path: Path) -> None:
    body = f"""
[resmon]
database_url = "sqlite:///{tmp_path / "r.db"}"
listen = ""
[[targets]]
name = "t"
collector = "libvirt"
url = "test:///default"
interval_s = 1
timeout_s = 1
"""
    path = write_config(tmp_path, body)
    proc = subprocess.Popen([sys.executable, "-m", "resmon.cli", "run", "--config", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    deadline = time.monotonic() + 60  # start-up is slow on a loaded machine: wait for a run
    while not _has_run(store, "t"):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    store.close()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
