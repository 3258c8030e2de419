"""Several processes starting at once on a fresh database (SQLite file and PostgreSQL).

Each runs ``resmon run --once`` over the same targets (libvirt's built-in ``test:///default``
driver): the migrations must run once while the others wait, concurrent creation of the same
target rows must not collide, and every target's hosts must point at its newest successful run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import func, select

from resmon.store import Store, models

PROCESSES = 4
TARGETS = 6


def _config(tmp_path: Path, database_url: str) -> Path:
    body = f'[resmon]\ndatabase_url = "{database_url}"\nlisten = ""\n'
    for n in range(TARGETS):
        body += (
            f'\n[[targets]]\nname = "t{n}"\ncollector = "libvirt"\nurl = "test:///default"\n'
            "timeout_s = 20\n"
        )
    path = tmp_path / "resmon.toml"
    path.write_text(body)
    return path


def _run_all_at_once(config: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "resmon.cli", "run", "--once", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(PROCESSES)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
        assert "Traceback" not in err, err


def test_concurrent_run_once_on_a_fresh_database(tmp_path: Path, database_url: str) -> None:
    config = _config(tmp_path, database_url)
    for _ in range(2):  # on a fresh database, then on the one the first round made
        _run_all_at_once(config)
    store = Store(database_url)
    try:
        with store.session() as session:
            assert session.scalar(select(func.count()).select_from(models.Target)) == TARGETS
            runs = session.scalar(select(func.count()).select_from(models.CollectionRun))
            assert runs == TARGETS * PROCESSES * 2
            newest = dict(
                session.execute(
                    select(models.CollectionRun.target_id, func.max(models.CollectionRun.id))
                    .where(models.CollectionRun.status == "success")
                    .group_by(models.CollectionRun.target_id)
                ).all()
            )
            hosts = session.execute(select(models.Host.target_id, models.Host.last_run_id)).all()
            assert len(hosts) == TARGETS
            for target_id, last_run_id in hosts:
                assert last_run_id == newest[target_id]
    finally:
        store.close()
