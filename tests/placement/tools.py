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

import pytest

from resmon.store import Store
from tests.live_servers import serve_api

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
