"""The guides in ``docs/`` say true things: every command in them runs, every anomaly code the
code can emit is explained, and every alert is documented.

``docs/operators.md`` then ``docs/schedulers.md`` run as one root shell script, as an operator
would type them, from the top of a copy of this checkout, inside a private mount namespace where
``/etc``, ``/opt``, ``/run``, ``/var/lib`` and ``/usr/local`` are overlays on a tmpfs: the
commands install and write where the guides say, and the machine is left as it was. Blocks
fenced as ``sh systemd`` need systemd as init, which a container lacks: there, ``systemctl``
is a stand-in that does what systemd does with the installed unit (its ``ExecStart=`` in its
``WorkingDirectory=``, with ``LoadCredential=`` files copied to the credentials directory).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml

from resmon import __version__

REPO_ROOT = Path(__file__).resolve().parents[2]
OPERATORS = REPO_ROOT / "docs" / "operators.md"
SCHEDULERS = REPO_ROOT / "docs" / "schedulers.md"
GUIDES = (OPERATORS, SCHEDULERS)
FENCE = re.compile(r"^```([^\s`]*)[ \t]*([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
#: What the sandbox lays over the real machine.
OVERLAID = ("/etc", "/opt", "/run", "/var/lib", "/usr/local")
LISTEN_PORT = 9180  # the guides' listen address, 127.0.0.1:9180
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def shell_blocks(path: Path) -> list[tuple[str, str]]:
    """(tag, body) of every ``sh`` block; the tag is ``systemd`` or empty."""
    return [
        (tag.strip(), body) for lang, tag, body in FENCE.findall(path.read_text()) if lang == "sh"
    ]


# -- the guides against the code ---------------------------------------------------------------


def emitted_anomaly_codes() -> tuple[set[str], list[re.Pattern[str]]]:
    """Codes passed to ``Anomaly(code=...)``, ``Anomaly.of(code, ...)`` or an ``_anomaly``
    helper in the core and the collectors: literal codes, and f-string codes as patterns."""
    literal: set[str] = set()
    patterns: list[re.Pattern[str]] = []
    for package in ("resmon", "collectors"):
        for source in (REPO_ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text())):
                if not isinstance(node, ast.Call):
                    continue
                name = getattr(node.func, "id", getattr(node.func, "attr", None))
                if name == "of" and getattr(node.func, "value", None) is not None:
                    name = getattr(node.func.value, "id", None)  # type: ignore[attr-defined]
                if name not in ("Anomaly", "_anomaly"):
                    continue
                code = next((k.value for k in node.keywords if k.arg == "code"), None)
                if code is None and node.args:
                    code = node.args[0]
                if isinstance(code, ast.Constant) and isinstance(code.value, str):
                    literal.add(code.value)
                elif isinstance(code, ast.JoinedStr):
                    parts = [
                        re.escape(v.value) if isinstance(v, ast.Constant) else "[a-z_]+"
                        for v in code.values
                    ]
                    patterns.append(re.compile("".join(parts)))
    return literal, patterns


def documented_anomaly_codes() -> set[str]:
    section = OPERATORS.read_text().split("## Anomaly codes", 1)[1]
    codes: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            codes |= set(re.findall(r"`([^`]+)`", line.split("|")[1]))
    return codes


def test_every_emitted_anomaly_code_is_explained_and_no_other() -> None:
    literal, patterns = emitted_anomaly_codes()
    documented = documented_anomaly_codes()
    assert literal and patterns  # the scan finds the calls
    assert literal - documented == set(), "anomaly codes missing from docs/operators.md"
    for pattern in patterns:
        assert any(pattern.fullmatch(code) for code in documented), pattern.pattern
    unknown = {
        code for code in documented - literal if not any(p.fullmatch(code) for p in patterns)
    }
    assert unknown == set(), "docs/operators.md explains codes nothing emits"


def test_each_anomaly_code_is_explained_once() -> None:
    section = OPERATORS.read_text().split("## Anomaly codes", 1)[1]
    rows = [
        code
        for line in section.splitlines()
        if line.startswith("| `")
        for code in re.findall(r"`([^`]+)`", line.split("|")[1])
    ]
    assert sorted(c for c in set(rows) if rows.count(c) > 1) == [], "rows that repeat a code"


def test_every_alert_is_documented() -> None:
    alerts = yaml.safe_load((REPO_ROOT / "contrib" / "prometheus" / "alerts.yml").read_text())
    names = {rule["alert"] for group in alerts["groups"] for rule in group["rules"]}
    table = {
        m for line in OPERATORS.read_text().splitlines() for m in re.findall(r"^\| `(\w+)`", line)
    }
    assert names - table == set()


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_shell_blocks_parse_and_only_systemd_blocks_use_systemd(guide: Path) -> None:
    blocks = shell_blocks(guide)
    assert blocks
    for tag, body in blocks:
        assert tag in ("", "systemd"), tag
        result = subprocess.run(["bash", "-n"], input=body, capture_output=True, text=True)
        assert result.returncode == 0, f"{guide.name}: {result.stderr}\n{body}"
        commands = [line.split()[0] for line in body.splitlines() if line.strip()]
        if tag == "systemd":
            assert set(commands) == {"systemctl"}, body
        else:
            assert "systemctl" not in body and "journalctl" not in body, body


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_paths_the_guides_name_exist(guide: Path) -> None:
    for path in re.findall(
        r"\b((?:contrib|docs|requirements|schema)/[\w./-]+\w)", guide.read_text()
    ):
        assert (REPO_ROOT / path).exists(), f"{guide.name} names {path}"


# -- the guides, run --------------------------------------------------------------------------

STAND_IN = r"""
RESMON_UNIT=/etc/systemd/system/resmon.service
RESMON_UNIT_LOG=/run/resmon-unit.log
RESMON_UNIT_PID=
unit_setting() { sed -n "s/^$1=//p" "$RESMON_UNIT"; }
resmon_unit_start() {
  local exec_start workdir credential id source file
  exec_start=$(unit_setting ExecStart)
  workdir=$(unit_setting WorkingDirectory)
  credential=$(unit_setting LoadCredential)
  id=${credential%%:*}; source=${credential#*:}
  install -d -m 0700 /run/credentials/resmon.service
  for file in "$source"/*; do
    install -m 0400 "$file" "/run/credentials/resmon.service/${id}_$(basename "$file")"
  done
  install -d -m 0750 "/var/lib/$(unit_setting StateDirectory)"
  (cd "$workdir" && CREDENTIALS_DIRECTORY=/run/credentials/resmon.service exec $exec_start) \
    >>"$RESMON_UNIT_LOG" 2>&1 &
  RESMON_UNIT_PID=$!
  for _ in $(seq 1 120); do
    if curl -fsS -o /dev/null http://127.0.0.1:9180/healthz 2>/dev/null; then return 0; fi
    kill -0 "$RESMON_UNIT_PID" 2>/dev/null || break
    sleep 0.5
  done
  echo "resmon.service did not start:" >&2; tail -n 30 "$RESMON_UNIT_LOG" >&2; return 1
}
resmon_unit_stop() {
  if [ -n "$RESMON_UNIT_PID" ]; then
    kill -TERM "$RESMON_UNIT_PID" 2>/dev/null || true
    wait "$RESMON_UNIT_PID" || true
    RESMON_UNIT_PID=
  fi
}
systemctl() {
  case "$*" in
    daemon-reload) ;;
    "enable --now resmon.service"|"start resmon.service") resmon_unit_start ;;
    "stop resmon.service") resmon_unit_stop ;;
    "restart resmon.service") resmon_unit_stop; resmon_unit_start ;;
    *) echo "the systemctl stand-in does not know: systemctl $*" >&2; return 1 ;;
  esac
}
trap resmon_unit_stop EXIT
"""


def sandbox_available() -> str | None:
    """Why the guides cannot run here, or None."""
    if os.geteuid() != 0:
        return "running the guides needs root (they install into /opt, /etc and /usr/local)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is absent"
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a mount namespace here: {probe.stderr.strip()}"
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", LISTEN_PORT))
        except OSError:
            return f"127.0.0.1:{LISTEN_PORT}, the guides' listen address, is in use"
    return None


def copy_checkout(destination: Path) -> Path:
    """The checkout's files as git sees them (tracked or not ignored), or the whole tree less
    build output where there is no git."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True,
    )  # fmt: skip
    if listed.returncode != 0:
        shutil.copytree(
            REPO_ROOT, destination,
            ignore=shutil.ignore_patterns(".git", ".build", "__pycache__", "*.egg-info", "*.db",
                                          "dist", "build", ".*_cache"),
        )  # fmt: skip
        return destination
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file():  # a tracked file deleted in the work tree is left out
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def guide_script() -> str:
    parts = [STAND_IN]
    for guide in GUIDES:
        for number, (_tag, body) in enumerate(shell_blocks(guide), start=1):
            parts.append(f"echo '>>> {guide.name}, block {number}'\n{body}")
    return "\n".join(parts)


@pytest.mark.timeout(1500)
def test_guides_run_as_written(tmp_path: Path) -> None:
    reason = sandbox_available()
    if reason:
        pytest.skip(reason)
    checkout = copy_checkout(tmp_path / "resmon")
    script = tmp_path / "guides.sh"
    script.write_text(guide_script())
    layers = tmp_path / "layers"
    layers.mkdir()
    overlays = "\n".join(
        f"mkdir -p {layers}/upper{d} {layers}/work{d}\n"
        f"mount -t overlay overlay -o lowerdir={d},upperdir={layers}/upper{d},"
        f"workdir={layers}/work{d} {d}"
        for d in OVERLAID
    )
    setup = f"set -eu\nmount -t tmpfs resmon-guides {layers}\n{overlays}\n"
    setup += f"cd {checkout}\nexec bash -euo pipefail {script}\n"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = SYSTEM_PATH
    result = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "bash", "-c", setup],
        capture_output=True, text=True, env=env, timeout=1400,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for guide in GUIDES:  # every block ran, to the last one
        assert f">>> {guide.name}, block {len(shell_blocks(guide))}" in result.stdout
    assert f"resmon {__version__} (collector contract" in result.stdout
    assert '"candidates": [' in result.stdout and '"host_id": "vm"' in result.stdout
