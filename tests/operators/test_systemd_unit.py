"""``contrib/systemd/resmon.service`` verifies with systemd's own checker and keeps its hardening.

``systemd-analyze verify`` exits 0 on unknown or misspelt directives and only warns, so any
output at all fails the test. The unit's ExecStart (``/usr/local/bin/resmon``, where
``pipx install --global`` puts it) is pointed at this environment's ``resmon`` for the check; the
operator guide's test verifies the unit unchanged after installing resmon there.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
UNIT = REPO_ROOT / "contrib" / "systemd" / "resmon.service"
INSTALLED_RESMON = "/usr/local/bin/resmon"

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze absent (Debian's systemd)"
)


def directives(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines of the unit, by key (a key may repeat)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def verify(unit_text: str, directory: Path) -> subprocess.CompletedProcess[str]:
    resmon = Path(sys.executable).with_name("resmon")
    assert resmon.is_file(), f"{resmon}: resmon is not installed in this environment"
    unit = directory / "resmon.service"
    unit.write_text(unit_text.replace(INSTALLED_RESMON, str(resmon)))
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_unit_verifies_without_a_warning(tmp_path: Path) -> None:
    result = verify(UNIT.read_text(), tmp_path)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result


def test_a_misspelt_directive_fails_the_check(tmp_path: Path) -> None:
    result = verify(UNIT.read_text().replace("NoNewPrivileges=", "NoNewPrivilege="), tmp_path)
    assert "Unknown key" in result.stdout + result.stderr


def test_unit_runs_resmon_hardened_with_config_state_and_credentials() -> None:
    unit = directives(UNIT.read_text())
    assert unit["ExecStart"] == [f"{INSTALLED_RESMON} run --config /etc/resmon/resmon.toml"]
    hardening = {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
        "ProtectHome": "yes", "DynamicUser": "yes", "CapabilityBoundingSet": "",
        "SupplementaryGroups": "libvirt", "StateDirectory": "resmon",
        "ConfigurationDirectory": "resmon", "WorkingDirectory": "/var/lib/resmon",
    }  # fmt: skip
    for key, value in hardening.items():
        assert unit.get(key) == [value], key
    assert unit["LoadCredential"] == ["secret:/etc/resmon/credentials"]
