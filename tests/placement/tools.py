"""Helpers for tests that run software nobody here wrote in its own virtualenv.

Each tool gets a venv under ``tests/.build/`` (gitignored), created on first use with pip from a
requirements file in this directory and re-created when that file changes, so the packages
never mix with resmon's own environment.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from resmon.store import Store
from tests.live_servers import free_port, serve_api, wait_until

HERE = Path(__file__).resolve().parent
BUILD = HERE.parent / ".build"


def tool_venv(name: str, requirements: Path) -> Path:
    """The venv ``tests/.build/<name>`` with ``requirements`` installed; its ``bin`` dir."""
    venv = BUILD / name
    stamp = venv / "requirements.sha256"
    wanted = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if stamp.is_file() and stamp.read_text() == wanted:
        return venv / "bin"
    shutil.rmtree(venv, ignore_errors=True)
    BUILD.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
         "-r", str(requirements)],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    if install.returncode != 0:
        pytest.fail(f"installing {requirements.name} into {venv} failed:\n{install.stderr[-3000:]}")
    stamp.write_text(wanted)
    return venv / "bin"


@contextmanager
def serve_resmon(store: Store) -> Iterator[str]:
    """resmon's API on a loopback port for the duration; yields its base URL."""
    with serve_api(store, start_timeout_s=30) as address:
        yield f"http://{address}"


#: Placement's configuration for the tests and the benchmark: SQLite, no authentication.
PLACEMENT_CONFIG = """[DEFAULT]
debug = False
[api]
auth_strategy = noauth2
[placement_database]
connection = sqlite:///{db}
"""


def placement_bin() -> Path:
    """The venv of openstack-placement (server-requirements.txt); its ``bin`` dir."""
    return tool_venv("placement-server", HERE / "server-requirements.txt")


@contextmanager
def run_placement(workdir: Path, start_timeout_s: float = 120.0) -> Iterator[str]:
    """A fresh OpenStack Placement (its own SQLite database under ``workdir``) served on a
    loopback port by serve_placement.py; yields its URL, stops it after."""
    with running_placement(workdir, start_timeout_s) as (url, _process):
        yield url


@contextmanager
def running_placement(
    workdir: Path, start_timeout_s: float = 120.0
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """:func:`run_placement`, also yielding the server's process (for tests that stop it)."""
    bin_dir = placement_bin()
    conf_dir = workdir / "placement"
    conf_dir.mkdir()
    (conf_dir / "placement.conf").write_text(PLACEMENT_CONFIG.format(db=conf_dir / "placement.db"))
    subprocess.run(
        [str(bin_dir / "placement-manage"), "--config-file", str(conf_dir / "placement.conf"),
         "db", "sync"],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    port = free_port()
    log_path = workdir / "placement.log"
    url = f"http://127.0.0.1:{port}"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(bin_dir / "python"), str(HERE / "serve_placement.py"), str(port)],
            env={"OS_PLACEMENT_CONFIG_DIR": str(conf_dir), "PATH": "/usr/bin:/bin"},
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

        def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"Placement did not start: {log_path.read_text()}")
            try:
                return httpx.get(url + "/", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(answers, "Placement to start", start_timeout_s)
            yield url, process
        finally:
            process.terminate()
            process.wait(timeout=30)
