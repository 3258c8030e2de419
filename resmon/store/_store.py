"""The store: one transaction per collected target, stored whole or not at all."""

from __future__ import annotations

import fcntl
import logging
import math
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Row, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql import Executable

from resmon.contract import Anomaly as AnomalyModel
from resmon.contract import HostReport
from resmon.outcome import CollectionOutcome

from . import models

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DEFAULT_URL",
    "BoundedReads",
    "INTERNAL_PREFIX",
    "Store",
    "StoreError",
    "StoreHealth",
    "TargetSpec",
    "TaskStatus",
    "alembic_directory",
    "migration_head",
    "redact_url",
]

log = logging.getLogger("resmon.store")

DEFAULT_URL = "sqlite:///resmon.db"
#: Bound of every database call (connect, pool checkout, statement, one whole operation).
DEFAULT_TIMEOUT_S = 10.0
#: Inventory fields whose change goes into the change log.
_LOGGED_FIELDS = ("total", "reserved", "allocation_ratio")
#: A provider's child tables, rewritten whole at each successful collection.
_CHILDREN: tuple[type[models.Inventory | models.HostTrait | models.SupportedInstance
                      | models.NumaCell | models.Anomaly], ...] = (
    models.Inventory, models.HostTrait, models.SupportedInstance, models.NumaCell,
    models.Anomaly,
)  # fmt: skip
#: PostgreSQL advisory lock key held while migrating ("resmon" + 1): one process migrates,
#: the others wait for it and then find the schema current.
MIGRATION_LOCK_KEY = 0x7265736D6F6E0001


#: Rows of ``targets`` whose name starts with this are the daemon's own periodic tasks (a
#: configured target's name cannot hold it): they take leases like targets, so one replica runs
#: each, and keep their status in the target columns, but are no target anyone collects and are
#: left out of every list of targets.
INTERNAL_PREFIX = "#"


class StoreError(Exception):
    """The database refused a write or cannot be reached; nothing of that write was kept."""


@dataclass(frozen=True)
class TargetSpec:
    """What the store keeps of a configured target (never its credentials)."""

    name: str
    collector: str
    url: str
    interval_s: float = 60.0


@dataclass(frozen=True)
class TaskStatus:
    """The last run of an internal task (see :data:`INTERNAL_PREFIX`), as stored."""

    name: str
    last_status: str
    last_attempt_at: datetime | None
    last_success_at: datetime | None
    last_duration_s: float | None
    error_kind: str | None
    error_message: str | None
    consecutive_failures: int
    #: The replica holding the task's lease now, if any (PostgreSQL replicas only).
    holder: str | None


def alembic_directory() -> Path:
    """The migrations: inside the installed package (a wheel carries them as package data), or
    at the top of the source tree for a checkout or an editable install."""
    packaged = Path(__file__).resolve().parent / "migrations"
    if (packaged / "env.py").is_file():
        return packaged
    source_tree = Path(__file__).resolve().parents[2] / "alembic"
    if (source_tree / "env.py").is_file():
        return source_tree
    raise StoreError(f"alembic migrations not found (looked in {packaged} and {source_tree})")


def migration_head() -> str:
    """The newest migration's revision: the database schema this resmon writes."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(alembic_directory())).get_current_head()
    if head is None:
        raise StoreError(f"no migration found in {alembic_directory()}")
    return head


def redact_url(url: str | URL) -> str:
    """The database URL with its password hidden, fit for logs and error messages."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except ArgumentError:
        return "<unparsable database URL>"
    return parsed.render_as_string(hide_password=True)


def _sqlite_pragmas(timeout_s: float) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # The busy timeout first: switching to WAL needs a lock another process may hold.
        cursor.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")  # a lock wait, bounded
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode, NORMAL syncs at checkpoints instead of at every commit: a crash of the
        # process loses nothing committed and the file is never corrupted; a power loss may
        # roll back the last collections (collected again at their next interval). An fsync
        # per collection made the writer's throughput hostage to every other disk user.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return on_connect


def sqlite_file(engine: Engine) -> Path | None:
    """The database file of a SQLite engine (None for other databases and in-memory ones)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve()


def create_store_engine(url: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> Engine:
    """An engine whose connects, pool checkouts and statements are bounded by ``timeout_s``."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(
            "database_url is not valid: expected DIALECT[+DRIVER]://..., e.g. "
            "sqlite:///var/lib/resmon/resmon.db or postgresql+psycopg://resmon@db-host/resmon"
        ) from None
    shown = repr(redact_url(parsed))
    try:
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(parsed, connect_args={"timeout": timeout_s})
            event.listen(engine, "connect", _sqlite_pragmas(timeout_s))
            return engine
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg":
            # libpq counts whole seconds (at least 2); the server ends any statement that runs
            # longer than the bound, so a lock wait or a runaway query cannot hold a writer.
            connect_args["connect_timeout"] = max(2, math.ceil(timeout_s))
            connect_args["options"] = f"-c statement_timeout={int(timeout_s * 1000)}"
        return create_engine(
            parsed, pool_pre_ping=True, pool_timeout=timeout_s, connect_args=connect_args
        )
    except (ArgumentError, ImportError) as exc:  # unknown scheme or driver not installed
        raise StoreError(f"database_url {shown}: cannot be used: {exc}") from None
    except OSError as exc:
        raise StoreError(
            f"database_url {shown}: cannot create the database's directory: {exc.strerror}"
        ) from None


def _is_outage(exc: SQLAlchemyError) -> bool:
    """The database (or the way to it) failed, as opposed to refusing this one write."""
    if isinstance(exc, (OperationalError, InterfaceError, PoolTimeout)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _insert(session: Session, model: type[models.Base]) -> postgresql.Insert | sqlite.Insert:
    """An INSERT of ``model`` in the session's dialect, which has ``on_conflict_do_*``."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


@dataclass(frozen=True)
class StoreHealth:
    """Whether the database answered the last operation, and the last failure seen."""

    up: bool
    last_error: str | None
    last_error_at: datetime | None
    #: time.monotonic() of the last failure (for how recent it is)
    last_error_monotonic: float | None


class _Guard:
    """Bounds every store operation, whatever the database does.

    The engine's timeouts cover connects and statements a server answers; a server that accepts
    and then never answers (or a network that drops everything) would still hold the calling
    thread for good. A watchdog thread shuts the sockets of every open connection down when an
    operation outlives the bound, so the blocked call fails at once and its transaction is rolled
    back by the server; the pool replaces the connections afterwards.
    """

    def __init__(self, engine: Engine, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._operations: dict[int, float] = {}  # id of the operation -> monotonic start
        self._next_id = 0
        self._connections: weakref.WeakSet[ConnectionPoolEntry] = weakref.WeakSet()
        self._health = StoreHealth(True, None, None, None)
        self._watchdog: threading.Thread | None = None
        self._closed = threading.Event()
        event.listen(engine, "connect", self._on_connect)

    def _on_connect(self, _dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        # The pool's record, not the DBAPI connection (sqlite3's cannot be weakly referenced).
        with self._lock:
            self._connections.add(record)

    @contextmanager
    def operation(self) -> Iterator[None]:
        with self._lock:
            op, self._next_id = self._next_id, self._next_id + 1
            self._operations[op] = time.monotonic()
            if self._watchdog is None:
                self._watchdog = threading.Thread(
                    target=self._watch, name="resmon-store-watchdog", daemon=True
                )
                self._watchdog.start()
        try:
            yield
        except SQLAlchemyError as exc:
            if _is_outage(exc):
                self.mark_down(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
            raise
        else:
            self.mark_up()
        finally:
            with self._lock:
                del self._operations[op]

    def mark_up(self) -> None:
        with self._lock:
            if not self._health.up:
                log.warning("the database answers again")
            self._health = StoreHealth(
                True,
                self._health.last_error,
                self._health.last_error_at,
                self._health.last_error_monotonic,
            )

    def mark_down(self, error: str) -> None:
        with self._lock:
            if self._health.up:
                log.error("the database is unavailable: %s", error)
            self._health = StoreHealth(False, error, datetime.now(UTC), time.monotonic())

    def health(self) -> StoreHealth:
        with self._lock:
            return self._health

    def _watch(self) -> None:
        tick = min(1.0, self.timeout_s / 4)
        while not self._closed.wait(tick):
            now = time.monotonic()
            with self._lock:
                overdue = [s for s in self._operations.values() if now - s > self.timeout_s]
            if overdue:
                self.mark_down(f"the database did not answer within {self.timeout_s:g}s")
                self.interrupt()

    def interrupt(self) -> None:
        """Make every call blocked on one of the engine's connections fail now."""
        with self._lock:
            records = list(self._connections)
        for record in records:
            connection = record.dbapi_connection
            if connection is None:
                continue
            try:
                if hasattr(connection, "interrupt"):  # sqlite3: abort the running statement
                    connection.interrupt()
                    continue
                # A dup of the descriptor shares the socket: shutting it down wakes the blocked
                # reader with EOF without closing the descriptor under the driver's feet.
                sock = socket.socket(fileno=os.dup(connection.fileno()))
            except Exception:  # closed already, or a driver without a socket: nothing to do
                continue
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            finally:
                sock.close()

    def close(self) -> None:
        self._closed.set()


class BoundedReads:
    """A read session whose database calls are each one bounded store operation.

    ``db_seconds`` adds up the time spent in them (waiting for the database and reading its
    rows), ``longest_call_s`` is the longest one.
    """

    def __init__(self, session: Session, guard: _Guard) -> None:
        self._session = session
        self._guard = guard
        self.db_seconds = 0.0
        self.longest_call_s = 0.0

    @contextmanager
    def call(self) -> Iterator[Session]:
        """The session, for database calls that are done when the block ends (one statement
        whose rows are all fetched, e.g. a grouped count)."""
        start = time.perf_counter()
        try:
            with self._guard.operation():
                yield self._session
        finally:
            took = time.perf_counter() - start
            self.db_seconds += took
            self.longest_call_s = max(self.longest_call_s, took)

    def stream(self, statement: Executable, chunk_rows: int) -> Iterator[Sequence[Row[Any]]]:
        """The rows of ``statement``, ``chunk_rows`` at a time: the execute and each fetch are
        bounded calls, what the caller does with a chunk is not."""
        with self.call() as session:
            result = session.execute(statement)
        while True:
            with self.call():
                chunk = result.fetchmany(chunk_rows)
            if not chunk:
                return
            yield chunk


class Store:
    """Current state of every provider, collection history, anomalies and the change log.

    Every operation is bounded by ``timeout_s`` (see :class:`_Guard`); :meth:`health` says whether
    the database answered the last one.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        engine: Engine | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.engine = engine or create_store_engine(url, timeout_s=timeout_s)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Reads on PostgreSQL without BEGIN and ROLLBACK: two round trips of four for an API
        # request. Nothing changes for them: under READ COMMITTED each statement sees what was
        # committed when it started, in a transaction or not. (SQLite's driver opens
        # transactions only for writes already.)
        reader = self.engine
        if self.engine.dialect.name == "postgresql":
            reader = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._read_sessions = sessionmaker(reader, expire_on_commit=False)
        self._guard = _Guard(self.engine, timeout_s)

    def close(self) -> None:
        self._guard.close()
        self.engine.dispose()

    def health(self) -> StoreHealth:
        return self._guard.health()

    def outage(self) -> str | None:
        """The last error when the database failed within the last ``timeout_s`` seconds (a
        fresh failure need not be probed again), else None."""
        health = self._guard.health()
        if health.up or health.last_error_monotonic is None:
            return None
        if time.monotonic() - health.last_error_monotonic > self.timeout_s:
            return None
        return health.last_error

    def interrupt(self) -> None:
        """Fail every call now blocked on the database (used at shutdown)."""
        self._guard.interrupt()

    # -- schema ---------------------------------------------------------------------------

    def upgrade(self, revision: str = "head") -> None:
        """Bring the database to ``revision`` with the Alembic migrations."""
        from alembic.config import Config

        from alembic import command

        config = Config()
        config.set_main_option("script_location", str(alembic_directory()))
        with self._migration_lock(), self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # A migration may rewrite big tables (and waits for another process's): the
                # statement bound is for collections.
                connection.exec_driver_sql("SET LOCAL statement_timeout = 0")
                # Released at commit; DDL is transactional, so waiters see all or nothing.
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """On a SQLite file, an exclusive lock on ``<file>-migrate.lock`` while migrating
        (pysqlite runs DDL outside a transaction, so SQLite's own locks do not serialise it)."""
        path = sqlite_file(self.engine)
        if path is None:
            yield
            return
        fd = os.open(f"{path}-migrate.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def revision(self) -> str | None:
        """The migration revision the database is at (None before the first migration),
        bounded like every store call; a database that does not answer raises."""
        from alembic.runtime.migration import MigrationContext

        with self.connection() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def is_current(self) -> bool:
        return inspect(self.engine).has_table("alembic_version")

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read session (no commit; on PostgreSQL no transaction either)."""
        with self._guard.operation(), self._read_sessions() as session:
            yield session

    @contextmanager
    def reads(self) -> Iterator[BoundedReads]:
        """A read session for a long read (``/metrics`` of a large fleet) whose every database
        call, not the whole read, is bounded by ``timeout_s``: the caller's own work between
        the calls (formatting the rows it streams) never counts against the database's bound."""
        with self._read_sessions() as session:
            yield BoundedReads(session, self._guard)

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection in a transaction, committed at the end, bounded like every store call."""
        with self._guard.operation(), self.engine.begin() as connection:
            yield connection

    # -- writes ---------------------------------------------------------------------------

    def sync_targets(self, specs: Sequence[TargetSpec]) -> None:
        """Create or update the rows of the configured targets (their status is kept)."""
        try:
            with self._write() as session:
                # Same order in every process, so concurrent syncs cannot deadlock on the rows.
                for spec in sorted(specs, key=lambda spec: spec.name):
                    self._target_row(session, spec)
        except SQLAlchemyError as exc:
            raise StoreError(
                f"could not record the configured targets in {redact_url(self.url)}: "
                f"{str(exc).splitlines()[0]}"
            ) from exc

    def record(self, spec: TargetSpec, outcome: CollectionOutcome) -> int:
        """Store one collection in one transaction and return the run id.

        On success the target's providers are replaced by the reported ones; on failure only the
        run and the target's status are written, and the providers stored earlier stay as they
        were. If the database refuses the write, nothing of it is kept and a failed run with
        kind ``store_error`` is recorded instead (when the database still answers).
        """
        try:
            with self._write() as session:
                return self._record(session, spec, outcome)
        except SQLAlchemyError as exc:
            log.error("storing collection of %s failed: %s", spec.name, exc)
            failed = CollectionOutcome(
                target=outcome.target,
                collector=outcome.collector,
                started_at=outcome.started_at,
                duration_s=outcome.duration_s,
                error_kind="store_error",
                error_message=f"the database refused the collection: {type(exc).__name__}",
            )
            try:
                with self._write() as session:
                    self._record(session, spec, failed)
            except SQLAlchemyError:
                pass
            raise StoreError(f"could not store the collection of {spec.name!r}: {exc}") from exc

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self._guard.operation(), self._sessions() as session, session.begin():
            yield session

    def _target_row(self, session: Session, spec: TargetSpec) -> models.Target:
        """The target's row, created if missing, locked until the transaction ends.

        Insert-if-absent cannot collide with another process doing the same, and the lock
        orders the writes of one target: a run id is taken only under it, so a target's hosts
        always point at its newest successful run.
        """
        session.execute(
            _insert(session, models.Target)
            .values(
                name=spec.name, collector=spec.collector, url=spec.url,
                interval_s=spec.interval_s, last_status="never", consecutive_failures=0,
            )
            .on_conflict_do_nothing(index_elements=["name"])
        )  # fmt: skip
        row = session.scalars(
            select(models.Target)
            .where(models.Target.name == spec.name)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).one()
        row.collector, row.url, row.interval_s = spec.collector, spec.url, spec.interval_s
        return row

    def record_task(
        self,
        spec: TargetSpec,
        *,
        duration_s: float,
        error_kind: str | None,
        error_message: str | None,
    ) -> None:
        """Store how an internal task's run went in its row (no run history is kept)."""
        if not spec.name.startswith(INTERNAL_PREFIX):
            raise ValueError(f"{spec.name!r} is not an internal task's name")
        with self._write() as session:
            row = self._target_row(session, spec)
            finished = datetime.now(UTC)
            row.last_attempt_at = finished
            row.last_duration_s = duration_s
            row.last_error_kind = error_kind
            row.last_error_message = error_message
            if error_kind is None:
                row.last_status = "success"
                row.last_success_at = finished
                row.consecutive_failures = 0
            else:
                row.last_status = "failed"
                row.consecutive_failures = (row.consecutive_failures or 0) + 1

    def task_status(self, name: str) -> TaskStatus | None:
        """An internal task's last run and its lease holder; None if it never ran here."""
        leases = models.TargetLease
        with self.session() as session:
            row = session.scalars(select(models.Target).where(models.Target.name == name)).first()
            if row is None:
                return None
            holder = session.scalar(
                select(leases.holder).where(
                    leases.target_id == row.id, leases.expires_at > func.now()
                )
            )
            return TaskStatus(
                name=row.name, last_status=row.last_status, last_attempt_at=row.last_attempt_at,
                last_success_at=row.last_success_at, last_duration_s=row.last_duration_s,
                error_kind=row.last_error_kind, error_message=row.last_error_message,
                consecutive_failures=row.consecutive_failures or 0, holder=holder,
            )  # fmt: skip

    def _record(self, session: Session, spec: TargetSpec, outcome: CollectionOutcome) -> int:
        target = self._target_row(session, spec)
        finished = datetime.now(UTC)
        anomaly_count = sum(len(r.anomalies) for r in outcome.reports) + sum(
            len(a) for a in outcome.anomalies.values()
        )
        run = models.CollectionRun(
            target_id=target.id,
            started_at=outcome.started_at,
            duration_s=outcome.duration_s,
            status="success" if outcome.ok else "failed",
            error_kind=outcome.error_kind,
            error_message=outcome.error_message,
            provider_count=len(outcome.reports),
            anomaly_count=anomaly_count,
        )
        session.add(run)
        session.flush()
        self._count(session, target.id, "" if outcome.ok else outcome.error_kind or "unknown")
        target.last_attempt_at = finished
        target.last_duration_s = outcome.duration_s
        target.last_error_kind = outcome.error_kind
        target.last_error_message = outcome.error_message
        if not outcome.ok:
            target.last_status = "failed"
            target.consecutive_failures = (target.consecutive_failures or 0) + 1
            return run.id
        target.last_status = "success"
        target.last_success_at = finished
        target.consecutive_failures = 0
        self._replace_providers(session, target, run, outcome, finished)
        return run.id

    @staticmethod
    def _count(session: Session, target_id: int, error_kind: str) -> None:
        """Add the run to the target's counter of its outcome, created at 1 if missing.

        One statement, ``runs = runs + 1`` on the stored row: replicas recording at once add up.
        """
        session.execute(
            _insert(session, models.CollectionCount)
            .values(target_id=target_id, error_kind=error_kind, runs=1)
            .on_conflict_do_update(
                index_elements=["target_id", "error_kind"],
                set_={"runs": models.CollectionCount.runs + 1},
            )
        )

    def _replace_providers(
        self,
        session: Session,
        target: models.Target,
        run: models.CollectionRun,
        outcome: CollectionOutcome,
        now: datetime,
    ) -> None:
        """Rewrite the target's providers: their rows updated in place (new ones added, gone
        ones deleted), their child rows deleted and inserted again with one statement per table
        for the whole target, however many providers it has (a statement per row would cost a
        round trip, and a wait for the interpreter lock, each)."""
        existing = {
            h.host_id: h
            for h in session.scalars(select(models.Host).where(models.Host.target_id == target.id))
        }
        old_inventories: dict[int, dict[str, dict[str, float]]] = {}
        if existing:
            inv = models.Inventory
            for host_pk, rc, *logged in session.execute(
                select(inv.host_pk, inv.resource_class, inv.total, inv.reserved,
                       inv.allocation_ratio)
                .join(models.Host, models.Host.id == inv.host_pk)
                .where(models.Host.target_id == target.id)
            ):  # fmt: skip
                old_inventories.setdefault(host_pk, {})[rc] = dict(
                    zip(_LOGGED_FIELDS, logged, strict=True)
                )
        reported = {r.identity.host_id for r in outcome.reports}
        for host_id, gone in existing.items():
            if host_id not in reported:
                self._log_change(
                    session, run, target.name, host_id, "*", "provider_removed", 1, None, now
                )
                session.delete(gone)
        kept = [h.id for host_id, h in existing.items() if host_id in reported]
        if kept:
            for child in _CHILDREN:
                session.execute(delete(child).where(child.host_pk.in_(kept)))
        hosts = []
        for report in outcome.reports:
            host = existing.get(report.identity.host_id)
            if host is None:
                host = models.Host(target_id=target.id, host_id=report.identity.host_id)
                session.add(host)
                self._log_change(
                    session, run, target.name, report.identity.host_id, "*", "provider_added",
                    None, 1, now,
                )  # fmt: skip
            self._fill_host(host, report, run.id)
            hosts.append((host, report))
        session.flush()  # the new providers' ids
        rows: dict[type[models.Base], list[dict[str, Any]]] = {child: [] for child in _CHILDREN}
        for host, report in hosts:
            self._log_inventory_changes(
                session, run, target.name, report, old_inventories.get(host.id, {}), now
            )
            self._child_rows(
                rows, host.id, report, outcome.anomalies.get(report.key, []), run.id, now
            )
        for model, values in rows.items():
            if values:
                session.execute(insert(model), values)

    @staticmethod
    def _fill_host(host: models.Host, report: HostReport, run_id: int) -> None:
        host.hostname = report.identity.hostname
        host.provider_kind = report.provider_kind.value
        host.parent_id = report.parent_id
        host.state = report.state.value
        host.hv_type = report.hypervisor.hv_type if report.hypervisor else None
        host.hypervisor_version = report.hypervisor.version if report.hypervisor else None
        host.arch = report.cpu.arch if report.cpu else None
        host.cpu_model = report.cpu.model if report.cpu else None
        host.collector_name = report.collector.name
        host.collector_version = report.collector.version
        host.schema_version = report.schema_version
        host.collected_at = report.collected_at
        host.last_run_id = run_id
        host.report = report.model_dump(mode="json")
        host.boot_time = report.boot_time
        host.health = report.health.value if report.health else None
        location, observed, storage = report.location, report.observed, report.storage
        host.datacenter = location.datacenter if location else None
        host.cluster = location.cluster if location else None
        host.observed_cpu_used_mhz = observed.cpu_used_mhz if observed else None
        host.observed_memory_used_bytes = observed.memory_used_bytes if observed else None
        host.instance_states = (
            report.instance_states.model_dump() if report.instance_states else None
        )
        host.storage_provisioned_bytes = storage.provisioned_bytes if storage else None
        host.storage_uncommitted_bytes = storage.uncommitted_bytes if storage else None

    @staticmethod
    def _child_rows(
        rows: dict[type[models.Base], list[dict[str, Any]]],
        host_pk: int,
        report: HostReport,
        core_anomalies: list[AnomalyModel],
        run_id: int,
        now: datetime,
    ) -> None:
        """Append the child rows of one provider to ``rows`` (per table)."""
        rows[models.Inventory] += [
            {
                "host_pk": host_pk, "resource_class": inv.resource_class, "total": inv.total,
                "reserved": inv.reserved, "hypervisor_reserved": inv.hypervisor_reserved,
                "operator_reserved": inv.operator_reserved, "min_unit": inv.min_unit,
                "max_unit": inv.max_unit, "step_size": inv.step_size,
                "allocation_ratio": inv.allocation_ratio, "used": inv.used,
                "capacity": inv.capacity, "free": inv.free,
            }
            for inv in report.inventories
        ]  # fmt: skip
        rows[models.HostTrait] += [{"host_pk": host_pk, "trait": t} for t in report.traits]
        rows[models.SupportedInstance] += [
            {
                "host_pk": host_pk, "arch": si.arch, "hv_type": si.hv_type,
                "vm_mode": si.vm_mode, "max_vcpus": si.max_vcpus,
                "details": {"machine_types": si.machine_types, "firmware": si.firmware,
                            **si.details},
            }
            for si in report.supported_instances
        ]  # fmt: skip
        rows[models.NumaCell] += [
            {
                "host_pk": host_pk, "cell_id": cell.cell_id, "cpu_count": len(cell.cpus),
                "memory_bytes": cell.memory_bytes, "free_memory_bytes": cell.free_memory_bytes,
                "huge_pages": {str(p.page_size_bytes): {"total": p.total, "free": p.free}
                               for p in cell.huge_pages},
            }
            for cell in report.numa_cells
        ]  # fmt: skip
        rows[models.Anomaly] += [
            {
                "host_pk": host_pk, "run_id": run_id, "code": a.code, "field": a.field,
                "message": a.message, "raw_value": a.raw_value, "source": source,
                "detected_at": now,
            }
            for source, anomalies in (("collector", report.anomalies), ("core", core_anomalies))
            for a in anomalies
        ]  # fmt: skip

    def _log_inventory_changes(
        self,
        session: Session,
        run: models.CollectionRun,
        target_name: str,
        report: HostReport,
        old: dict[str, dict[str, float]],
        now: datetime,
    ) -> None:
        if not old:
            return
        new = {inv.resource_class: inv for inv in report.inventories}
        for rc in sorted(set(old) | set(new)):
            before, after = old.get(rc), new.get(rc)
            for name in _LOGGED_FIELDS:
                was = before[name] if before is not None else None
                now_value = getattr(after, name) if after is not None else None
                if was != now_value:
                    self._log_change(
                        session, run, target_name, report.identity.host_id, rc, name, was,
                        now_value, now,
                    )  # fmt: skip

    @staticmethod
    def _log_change(
        session: Session,
        run: models.CollectionRun,
        target_name: str,
        host_id: str,
        resource_class: str,
        field: str,
        old: float | None,
        new: float | None,
        now: datetime,
    ) -> None:
        session.add(
            models.CapacityChange(
                run_id=run.id, target_name=target_name, host_id=host_id,
                resource_class=resource_class, field=field, old_value=old, new_value=new,
                changed_at=now,
            )
        )  # fmt: skip

    # -- reads used by the CLI -------------------------------------------------------------

    def targets(self) -> list[models.Target]:
        """The targets (never the internal tasks), by name."""
        with self.session() as session:
            return list(
                session.scalars(
                    select(models.Target)
                    .where(~models.Target.name.startswith(INTERNAL_PREFIX, autoescape=True))
                    .order_by(models.Target.name)
                )
            )

    def host_counts(self) -> dict[str, int]:
        """Providers currently stored per target name (targets without any are absent)."""
        with self.session() as session:
            rows = session.execute(
                select(models.Target.name, func.count(models.Host.id))
                .join(models.Host, models.Host.target_id == models.Target.id)
                .group_by(models.Target.name)
            )
            return {name: count for name, count in rows}

    def runs(self, target_name: str) -> list[models.CollectionRun]:
        with self.session() as session:
            return list(
                session.scalars(
                    select(models.CollectionRun)
                    .join(models.Target)
                    .where(models.Target.name == target_name)
                    .order_by(models.CollectionRun.id)
                )
            )

    def reports(self, target_name: str | None = None) -> list[HostReport]:
        with self.session() as session:
            query = select(models.Host.report).order_by(models.Host.id)
            if target_name is not None:
                query = query.join(models.Target).where(models.Target.name == target_name)
            return [HostReport.model_validate(r) for r in session.scalars(query)]
