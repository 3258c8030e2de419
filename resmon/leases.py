"""Which daemon collects which target: leases on PostgreSQL, one daemon per SQLite file.

Several ``resmon run`` replicas share one PostgreSQL database; each target is collected by the
replica holding its lease (a row of ``target_leases``). The protocol, its clock and its failure
cases are described in ``docs/replicas.md``; in short, every ``ttl / 3`` seconds a replica, in
one transaction and on the database's clock:

1. announces itself in ``replicas`` (``expires_at = now + ttl``) and forgets replicas whose
   announcement expired;
2. renews the leases it holds (``expires_at = now + ttl``), learning which it lost;
3. computes its share of the targets from the live replicas (sorted ids: the first
   ``targets % replicas`` take one more), gives back leases beyond it and claims free or expired
   ones up to it with ``SELECT … FOR UPDATE SKIP LOCKED`` (two replicas never claim one row).

A collection starts only after a fencing update (``last_started_at = now`` where the lease is
still this replica's and unexpired) succeeds; a new holder waits until ``last_started_at +
interval_s``, so a target is never collected twice within its interval when it changes hands.

On SQLite there are no replicas: the daemon holds an exclusive lock on ``<database>-daemon.lock``
for its lifetime, and a second daemon on the same file refuses to start.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError

from resmon.store import Store, StoreError, models
from resmon.store._store import sqlite_file

__all__ = ["LeaseError", "Leases", "LocalLeases", "PostgresLeases", "open_leases"]

log = logging.getLogger("resmon.leases")

_L = models.Base.metadata.tables["target_leases"]
_R = models.Base.metadata.tables["replicas"]
_T = models.Base.metadata.tables["targets"]


class LeaseError(StoreError):
    """This daemon may not collect from this database (another one already does)."""


class Leases:
    """The targets this daemon may collect; the daemon asks before every collection."""

    replica_id: str = ""

    def tick(self) -> dict[str, float]:
        """Renew and rebalance when due; returns the targets newly held → seconds until due."""
        raise NotImplementedError

    def holds(self, name: str) -> bool:
        raise NotImplementedError

    def start(self, name: str) -> bool:
        """Record that a collection of ``name`` starts now; False if the lease is no longer
        this daemon's (the collection must not run)."""
        raise NotImplementedError

    def close(self) -> None:
        """Give every lease back (at shutdown), so other replicas take over at once."""
        raise NotImplementedError


def open_leases(
    store: Store, intervals: Mapping[str, float], *, ttl_s: float, replica_id: str | None
) -> Leases:
    """Leases over the targets of ``intervals`` (name → interval_s), already synced."""
    if store.engine.dialect.name == "postgresql":
        return PostgresLeases(store, intervals, ttl_s=ttl_s, replica_id=replica_id)
    return LocalLeases(store, intervals)


class LocalLeases(Leases):
    """One daemon per SQLite file, holding every target."""

    def __init__(self, store: Store, intervals: Mapping[str, float]) -> None:
        self.replica_id = f"{socket.gethostname()}:{os.getpid()}"
        self._names = list(intervals)
        self._given = False
        self._fd: int | None = None
        path = sqlite_file(store.engine)
        if path is not None:
            self._fd = _exclusive_lock(Path(f"{path}-daemon.lock"), path)

    def tick(self) -> dict[str, float]:
        if self._given:
            return {}
        self._given = True
        return dict.fromkeys(self._names, 0.0)

    def holds(self, name: str) -> bool:
        return True

    def start(self, name: str) -> bool:
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None


def _exclusive_lock(lock_path: Path, database: Path) -> int:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise LeaseError(
            f"another resmon daemon (pid {holder}) is already collecting into {database}: "
            "a SQLite database takes one daemon; stop it, or share a PostgreSQL database "
            "between replicas"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class PostgresLeases(Leases):
    """Leases with a TTL in ``target_leases``, shared by every replica (see the module doc)."""

    def __init__(
        self,
        store: Store,
        intervals: Mapping[str, float],
        *,
        ttl_s: float,
        replica_id: str | None,
    ) -> None:
        self.store = store
        self.ttl = timedelta(seconds=ttl_s)
        self.replica_id = replica_id or f"{socket.gethostname()}:{os.getpid()}"
        self._intervals = dict(intervals)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Guarded by _lock: the targets held, newly held ones not yet handed to the daemon,
        #: and the monotonic time until which the leases renewed last are certainly ours.
        self._held: set[str] = set()
        self._gained: dict[str, float] = {}
        self._valid_until = 0.0
        with store.connection() as conn:
            rows = conn.execute(select(_T.c.id, _T.c.name).where(_T.c.name.in_(self._intervals)))
            self._ids = {name: target_id for target_id, name in rows}
            self._names = {target_id: name for name, target_id in self._ids.items()}
            if self._ids:
                conn.execute(
                    insert(_L)
                    .values([{"target_id": i} for i in sorted(self._ids.values())])
                    .on_conflict_do_nothing(index_elements=["target_id"])
                )

    def tick(self) -> dict[str, float]:
        if self._thread is None:
            self._renew()  # the first claim before the first collections
            self._thread = threading.Thread(target=self._renew_loop, name="resmon-leases",
                                            daemon=True)  # fmt: skip
            self._thread.start()
        with self._lock:
            gained, self._gained = self._gained, {}
        return gained

    def _renew_loop(self) -> None:
        # Its own thread: renewals must not wait for collections being stored.
        while not self._stop.wait(self.ttl.total_seconds() / 3):
            self._renew()

    def _renew(self) -> None:
        started = time.monotonic()
        try:
            gained, held = self._renew_and_balance()
        except SQLAlchemyError as exc:
            log.warning("renewing the target leases failed (retrying): %s", exc)
            return
        with self._lock:
            self._held = held
            self._valid_until = started + self.ttl.total_seconds()
            for name in gained:
                self._gained[name] = gained[name]
            for name in set(self._gained) - held:
                del self._gained[name]

    def holds(self, name: str) -> bool:
        with self._lock:
            return name in self._held and time.monotonic() < self._valid_until

    def start(self, name: str) -> bool:
        if not self.holds(name):
            return False
        if not self.store.health().up:
            # The database is away: nobody can take the lease over until it expires, and
            # holds() ends it here before it expires there (validity counts from before the
            # renewal), so collecting goes on without the fencing write instead of waiting a
            # whole database timeout per target. Only last_started_at is not recorded.
            return True
        try:
            with self.store.connection() as conn:
                fenced = conn.execute(
                    update(_L)
                    .where(
                        _L.c.target_id == self._ids[name],
                        _L.c.holder == self.replica_id,
                        _L.c.expires_at > func.now(),
                    )
                    .values(last_started_at=func.now())
                ).rowcount
        except SQLAlchemyError as exc:
            log.warning("target %s: cannot confirm its lease, not collecting: %s", name, exc)
            return False
        if fenced != 1:
            log.info("target %s: lease lost to another replica", name)
            with self._lock:
                self._held.discard(name)
            return False
        return True

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # A renewal blocked on a database that does not answer ends within its timeout.
            self._thread.join(timeout=min(self.ttl.total_seconds(), self.store.timeout_s))
        if not self.store.health().up:
            log.warning("the database is away: the target leases expire by themselves")
            with self._lock:
                self._held.clear()
            return
        try:
            with self.store.connection() as conn:
                conn.execute(
                    update(_L)
                    .where(_L.c.holder == self.replica_id)
                    .values(holder=None, expires_at=None)
                )
                conn.execute(_R.delete().where(_R.c.id == self.replica_id))
        except SQLAlchemyError as exc:
            log.warning("giving the target leases back failed (they expire by themselves): %s", exc)
        with self._lock:
            self._held.clear()

    # -- one renewal --------------------------------------------------------------------------

    def _renew_and_balance(self) -> tuple[dict[str, float], set[str]]:
        now, ttl, me = func.now(), self.ttl, self.replica_id
        with self.store.connection() as conn:
            db_now = conn.execute(select(now)).scalar_one()
            conn.execute(
                insert(_R)
                .values(id=me, hostname=socket.gethostname(), pid=os.getpid(),
                        started_at=now, expires_at=now + ttl)
                .on_conflict_do_update(index_elements=["id"], set_={"expires_at": now + ttl})
            )  # fmt: skip
            conn.execute(_R.delete().where(_R.c.expires_at < now))
            live = list(conn.scalars(select(_R.c.id).order_by(_R.c.id)))
            mine = set(self._ids.values())
            held = set(
                conn.scalars(
                    update(_L)
                    .where(_L.c.holder == me, _L.c.target_id.in_(mine))
                    .values(expires_at=now + ttl)
                    .returning(_L.c.target_id)
                )
            )
            total, rank = len(mine), live.index(me)
            share = total // len(live) + (1 if rank < total % len(live) else 0)
            if len(held) > share:
                extra = sorted(held)[share:]
                conn.execute(
                    update(_L)
                    .where(_L.c.target_id.in_(extra), _L.c.holder == me)
                    .values(holder=None, expires_at=None)
                )
                held -= set(extra)
            claimed: dict[int, float] = {}
            if len(held) < share:
                free = conn.execute(
                    select(_L.c.target_id, _L.c.last_started_at)
                    .where(
                        _L.c.target_id.in_(mine),
                        (_L.c.holder.is_(None)) | (_L.c.expires_at < now),
                    )
                    .order_by(_L.c.target_id)
                    .limit(share - len(held))
                    .with_for_update(skip_locked=True)
                ).all()
                if free:
                    conn.execute(
                        update(_L)
                        .where(_L.c.target_id.in_([row.target_id for row in free]))
                        .values(holder=me, expires_at=now + ttl, acquired_at=now)
                    )
                for target_id, last_started in free:
                    interval = self._intervals[self._names[target_id]]
                    waited = (db_now - last_started).total_seconds() if last_started else interval
                    claimed[target_id] = max(0.0, interval - waited)
        held_names = {self._names[i] for i in held | set(claimed)}
        if claimed or len(held_names) != len(self._held):
            log.info("holding %d targets (share %d of %d, %d replicas)",
                     len(held_names), share, total, len(live))  # fmt: skip
        return {self._names[i]: delay for i, delay in claimed.items()}, held_names
