"""Writes collections to the store from a thread of its own.

The daemon's scheduling thread hands each finished collection over and goes on: a database that
is slow or gone never delays the next collection, the API or shutdown. While the database is
away, a target's newer collection replaces its older one still waiting, so the backlog never
exceeds one collection per target; each attempt is bounded by the store's own timeout.

The daemon's other writes (pruning old history) go in between two collections through
:meth:`StoreWriter.exclusive`, so that they reuse the writer's connection instead of opening one
more alongside it, and never queue for the database's write lock behind it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from resmon.outcome import CollectionOutcome

from ._store import Store, StoreError, TargetSpec

__all__ = ["StoreWriter"]

log = logging.getLogger("resmon.store")


class StoreWriter:
    """A single writer thread in front of ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cond = threading.Condition()
        self._pending: dict[str, tuple[TargetSpec, CollectionOutcome]] = {}
        self._busy = False
        self._closing = False
        self._writing = threading.Lock()
        self.dropped = 0  #: collections replaced or abandoned before they could be stored
        self._thread = threading.Thread(target=self._run, name="resmon-store-writer", daemon=True)
        self._thread.start()

    def submit(self, spec: TargetSpec, outcome: CollectionOutcome) -> None:
        with self._cond:
            if spec.name in self._pending:
                self.dropped += 1
                # The outage itself is logged once by the store; this would repeat per target.
                log.debug(
                    "target %s: an earlier collection was not stored yet (database slow or "
                    "unavailable); keeping only the newest",
                    spec.name,
                )
            self._pending[spec.name] = (spec, outcome)
            self._cond.notify_all()

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
                name = next(iter(self._pending))
                spec, outcome = self._pending.pop(name)
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
