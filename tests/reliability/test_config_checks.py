"""Configuration mistakes are reported when the configuration is loaded (``resmon targets``,
``resmon run`` start-up), not at the first collection."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from resmon.cli import main
from resmon.config import ConfigError, load_config
from resmon.contract.testing import FakeCollector
from resmon.registry import register, unregister


@pytest.fixture(autouse=True)
def fake_registered() -> Iterator[None]:
    register(FakeCollector)
    yield
    unregister("fake")


def _write(tmp_path: Path, targets: str) -> Path:
    path = tmp_path / "resmon.toml"
    path.write_text(
        f'[resmon]\nlisten = ""\ndatabase_url = "sqlite:///{tmp_path / "r.db"}"\n' + targets
    )
    return path


def test_interval_has_a_floor(tmp_path: Path) -> None:
    path = _write(tmp_path, "[[targets]]\nname='a'\ncollector='fake'\nurl='fake://'\n"
                            "interval_s=1e-9\ntimeout_s=1e-9\n")  # fmt: skip
    with pytest.raises(
        ConfigError, match=r"targets\[0\]\.interval_s: .*greater than or equal to 1"
    ):
        load_config(path)


BROKEN_TARGETS = """
[[targets]]
name = "no-such-collector"
collector = "nosuch"
url = "x://y"

[[targets]]
name = "unknown-option"
collector = "fake"
url = "fake://1"
options = { colour = "blue" }

[[targets]]
name = "unset-env"
collector = "fake"
url = "fake://1"
password_env = "RESMON_TEST_SURELY_UNSET"

[[targets]]
name = "fine"
collector = "fake"
url = "fake://1"
"""

EXPECTED = [
    "target 'no-such-collector': collector: no collector named 'nosuch' is installed",
    "target 'unknown-option': unsupported: unknown options: ['colour']",
    "target 'unset-env': environment variable 'RESMON_TEST_SURELY_UNSET' (password_env) is not set",
]


def test_resmon_targets_reports_every_broken_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.environ.pop("RESMON_TEST_SURELY_UNSET", None)
    assert main(["targets", "--config", str(_write(tmp_path, BROKEN_TARGETS))]) == 1
    out, err = capsys.readouterr()
    assert "fine" in out  # the table is still printed
    for problem in EXPECTED:
        assert problem in err
    assert "'fine'" not in err


def test_resmon_run_refuses_broken_targets_before_collecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    os.environ.pop("RESMON_TEST_SURELY_UNSET", None)
    assert main(["run", "--once", "--config", str(_write(tmp_path, BROKEN_TARGETS))]) == 2
    err = capsys.readouterr().err
    for problem in EXPECTED:
        assert problem in err
    assert not (tmp_path / "r.db").exists()  # nothing was collected or stored


def test_world_readable_password_file_is_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = tmp_path / "vc-password"
    secret.write_text("pw\n")
    secret.chmod(0o644)
    targets = (
        f"[[targets]]\nname='vc'\ncollector='fake'\nurl='fake://1'\npassword_file='{secret}'\n"
    )
    assert main(["targets", "--config", str(_write(tmp_path, targets))]) == 0
    err = capsys.readouterr().err
    assert f"target 'vc': password_file '{secret}' is readable by every user (mode 0644)" in err
    secret.chmod(0o600)
    assert main(["targets", "--config", str(_write(tmp_path, targets))]) == 0
    assert "readable by every user" not in capsys.readouterr().err
