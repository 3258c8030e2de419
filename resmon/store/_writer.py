"""Writes collections to the store from a thread of its own.

The daemon's scheduling thread hands each finished collection over and goes on: a database that
is slow or gone never delays the next collection, the API or shutdown. While the database is
away, a target's newer collection replaces its older ones still waiting, so the backlog never
exceeds one collection per target; each attempt is bounded by the store's own timeout. While
it answers, a writer that falls behind for a while (a loaded machine, a slow disk) keeps up to
:data:`BACKLOG_PER_TARGET` collections of a target and stores them in order once it catches up,
instead of losing all but the newest.

The daemon's other writes (pruning old history) go in between two collections through
:meth:`StoreWriter.exclusive`, so that they reuse the writer's connection instead of opening one
more alongside it, and never queue for the database's write lock behind it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from resmon.outcome import CollectionOutcome

from ._store import Store, StoreError, TargetSpec

__all__ = ["BACKLOG_PER_TARGET", "StoreWriter"]

log = logging.getLogger("resmon.store")

#: Collections of one target waiting at most while the database answers (older ones dropped).
BACKLOG_PER_TARGET = 4


class StoreWriter:
    """A single writer thread in front of ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cond = threading.Condition()
        #: Waiting collections, oldest first, and how many of each target.
        self._pending: deque[tuple[TargetSpec, CollectionOutcome]] = deque()
        self._waiting: dict[str, int] = {}
        self._busy = False
        self._closing = False
        self._writing = threading.Lock()
        self.dropped = 0  #: collections replaced or abandoned before they could be stored
        self._thread = threading.Thread(target=self._run, name="resmon-store-writer", daemon=True)
        self._thread.start()

    def submit(self, spec: TargetSpec, outcome: CollectionOutcome) -> None:
        with self._cond:
            waiting = self._waiting.get(spec.name, 0)
            keep = BACKLOG_PER_TARGET - 1 if self.store.outage() is None else 0
            if waiting > keep:
                self._drop(spec.name, waiting - keep)
                # The outage itself is logged once by the store; this would repeat per target.
                log.debug(
                    "target %s: %d earlier collection(s) not stored yet (database slow or "
                    "unavailable); dropped the oldest",
                    spec.name,
                    waiting - keep,
                )
            self._pending.append((spec, outcome))
            self._waiting[spec.name] = min(waiting, keep) + 1
            self._cond.notify_all()

    def backlog(self) -> int:
        """Collections waiting to be stored (not counting one being stored)."""
        with self._cond:
            return len(self._pending)

    def _drop(self, name: str, count: int) -> None:
        """Drop the ``count`` oldest waiting collections of target ``name`` (condition held)."""
        kept: deque[tuple[TargetSpec, CollectionOutcome]] = deque()
        for item in self._pending:
            if count and item[0].name == name:
                count -= 1
                self.dropped += 1
            else:
                kept.append(item)
        self._pending = kept

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the writer between two collections while the block writes."""
        with self._writing:
            yield

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until everything submitted is stored (or failed); False if ``timeout_s`` ran
        out first."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._pending or self._busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout_s: float) -> None:
        """Store what is waiting within ``timeout_s``, then give up on the rest."""
        if not self.flush(timeout_s):
            with self._cond:
                left = len(self._pending) + (1 if self._busy else 0)
                self.dropped += len(self._pending)
                self._pending.clear()
                self._waiting.clear()
            log.warning("stopping: %d collection(s) could not be stored in time, dropped", left)
            self.store.interrupt()  # fail the write in progress so its transaction rolls back
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=1.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return
                spec, outcome = self._pending.popleft()
                if self._waiting[spec.name] > 1:
                    self._waiting[spec.name] -= 1
                else:
                    del self._waiting[spec.name]
                self._busy = True
            try:
                with self._writing:
                    self.store.record(spec, outcome)
            except StoreError as exc:
                log.error("target %s: %s", spec.name, exc)
            except Exception:  # the writer must outlive any one write
                log.exception("target %s: storing the collection failed", spec.name)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
