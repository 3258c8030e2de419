"""The wheel and sdist carry what a user needs, and a pipx install of the wheel runs.

``python -m build`` as a user would run it (an isolated build of the sdist, then of the wheel from
that sdist); ``pipx install`` of the wheel into a pipx home of its own; then ``resmon --version``
and ``resmon run --once`` on the embedded default (SQLite, libvirt's ``test:///default``) in an
empty directory, far from the source tree.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from resmon import __version__
from resmon.cli import version_text
from resmon.contract import CONTRACT_VERSION, SCHEMA_VERSION
from resmon.store import alembic_directory, migration_head

REPO_ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = sorted(p.name for p in (REPO_ROOT / "alembic" / "versions").glob("*.py"))
SCHEMA_FILES = sorted(p.name for p in (REPO_ROOT / "schema").glob("*.json"))


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO_ROOT)],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def pipx_resmon(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The ``resmon`` command of a pipx install of the wheel (with the libvirt extra)."""
    home = tmp_path_factory.mktemp("pipx")
    env = {**os.environ, "PIPX_HOME": str(home), "PIPX_BIN_DIR": str(home / "bin"),
           "PIPX_MAN_DIR": str(home / "man")}  # fmt: skip
    (wheel,) = dist.glob("resmon-*.whl")
    subprocess.run(
        [sys.executable, "-m", "pipx", "install",
         f"--pip-args=--constraint {REPO_ROOT / 'requirements' / 'constraints.txt'}",
         f"{wheel}[libvirt]"],
        check=True, capture_output=True, env=env, timeout=900,
    )  # fmt: skip
    yield home / "bin" / "resmon"


def test_wheel_carries_migrations_and_schema(dist: Path) -> None:
    (wheel,) = dist.glob("resmon-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for migration in MIGRATIONS:
        assert f"resmon/store/migrations/versions/{migration}" in names
    assert {"resmon/store/migrations/env.py", "resmon/store/migrations/script.py.mako"} <= names
    for schema in SCHEMA_FILES:
        assert f"resmon/schema/{schema}" in names
    packages = [
        init.relative_to(REPO_ROOT).as_posix()
        for top in ("resmon", "collectors", "exporters")
        for init in (REPO_ROOT / top).rglob("__init__.py")
    ]
    assert packages and set(packages) <= names, "a package is missing from the wheel"
    assert "resmon/py.typed" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".db")]


def test_sdist_carries_the_sources_the_wheel_is_built_from(dist: Path) -> None:
    (sdist,) = dist.glob("resmon-*.tar.gz")
    root = f"resmon-{__version__}/"
    names = {n.removeprefix(root) for n in tarfile.open(sdist).getnames()}
    assert {f"alembic/versions/{m}" for m in MIGRATIONS} <= names
    assert {f"schema/{s}" for s in SCHEMA_FILES} <= names
    assert {"setup.py", "requirements/constraints.txt", "contrib/systemd/resmon.service",
            "docs/operators.md"} <= names  # fmt: skip


def test_pipx_installed_wheel_runs_once_on_the_embedded_default(
    pipx_resmon: Path, tmp_path: Path
) -> None:
    version = subprocess.run(
        [pipx_resmon, "--version"], check=True, capture_output=True, text=True, cwd=tmp_path
    ).stdout
    assert version.strip() == version_text()
    run = subprocess.run(
        [pipx_resmon, "run", "--once"], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("local-test: ok (1 providers, 1 compute hosts"), run.stdout
    with sqlite3.connect(tmp_path / "resmon.db") as db:
        (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone()
        (hosts,) = db.execute("SELECT count(*) FROM hosts").fetchone()
    assert revision == migration_head()
    assert hosts == 1


def test_version_names_contract_report_schema_and_database_schema() -> None:
    head = migration_head()
    assert head == MIGRATIONS[-1].split("_", 1)[0]
    assert version_text() == (
        f"resmon {__version__} (collector contract {CONTRACT_VERSION}, "
        f"report schema {SCHEMA_VERSION}, database schema {head})"
    )
    assert alembic_directory() == REPO_ROOT / "alembic"  # a checkout reads its own tree
