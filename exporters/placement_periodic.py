"""The periodic Placement sync of ``resmon run`` (a ``[placement]`` table in the configuration).

The daemon decides when a sync is due and whether this replica may run it: the sync is an
internal task with a lease like a target's (:data:`TASK_NAME`, a reserved name no configured
target can have), so with replicas sharing PostgreSQL exactly one runs it, and a replica taking
it over waits ``interval_s`` from the last start. :class:`PlacementSyncTask` runs each sync in
its own thread: collections, the API and shutdown never wait for Placement. A sync is bounded by
``timeout_s`` (every request gets at most the time left, each at most ``request_timeout_s``) and
cancelled at shutdown.

Its outcome is kept in memory (``/metrics`` and ``/v1/placement/status`` of this daemon) and in
the task's row of the store (``resmon placement status`` from anywhere): last attempt, last
success, error kind and one-line reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from copy import deepcopy
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from resmon.config import ConfigError, PlacementSettings
from resmon.store import Store, TargetSpec

from ._sync_status import TASK_NAME, SyncStatus
from .placement_auth import adapter_for, connection_for
from .placement_sync import PlacementSyncError, SyncOptions, SyncResult, sync
from .prometheus import render_placement_sync

__all__ = ["TASK_NAME", "PlacementSyncTask", "task_spec"]

log = logging.getLogger("resmon.placement")


def task_spec(settings: PlacementSettings) -> TargetSpec:
    """The task's row in the store (the url says where to, never with a secret)."""
    where = f"cloud:{settings.cloud}" if settings.cloud else (settings.endpoint or "catalog")
    return TargetSpec(
        name=TASK_NAME, collector="placement", url=where, interval_s=settings.interval_s
    )


class PlacementSyncTask:
    """Runs syncs on request (:meth:`trigger`), one at a time, each in its own thread."""

    def __init__(
        self, store: Store, settings: PlacementSettings, *, targets: Sequence[str] = ()
    ) -> None:
        self.store = store
        self.settings = settings
        self.spec = task_spec(settings)
        self.options = SyncOptions(
            mode=settings.mode, fold_used_into_reserved=settings.fold_used_into_reserved,
            remove_missing=settings.remove_missing,
        )  # fmt: skip
        self._targets = list(targets)
        #: Every configured target was collected at least once (see waiting()).
        self._ready = not self._targets
        self._lock = threading.Lock()
        self._status = SyncStatus(mode=settings.mode, interval_s=settings.interval_s)
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self._api: Any = None

    # -- what the daemon calls ----------------------------------------------------------------

    def waiting(self) -> bool:
        """True while a configured target was never collected: a sync now would tell Placement
        that its providers are gone (and remove them with ``remove_missing``). Asked by the
        daemon's scheduling loop: it reads the database only until every target was collected
        once, and not at all while the database is known to be away."""
        if self._ready:
            return False
        if not self.store.health().up:
            return False  # the sync fails on the database by itself, without holding the loop
        try:
            never = {t.name for t in self.store.targets() if t.last_status == "never"}
        except SQLAlchemyError as exc:
            log.debug("placement sync: cannot read the targets: %s", exc)
            return False
        if never & set(self._targets):
            with self._lock:
                if self._status.status == "never":
                    self._status.status = "waiting"
            return True
        self._ready = True
        return False

    def set_lease_held(self, held: bool) -> None:
        with self._lock:
            self._status.lease_held = held

    def trigger(self) -> bool:
        """Start a sync now; False (and nothing started) while the previous one still runs."""
        with self._lock:
            if self._cancel.is_set():
                return False
            if self._thread is not None and self._thread.is_alive():
                log.warning("placement sync: the previous sync is still running, skipping this one")
                return False
            self._status.running = True
            self._thread = threading.Thread(target=self._run, name="resmon-placement", daemon=True)
            self._thread.start()
        return True

    def cancel(self) -> None:
        """Stop a running sync before its next request; no sync starts after this."""
        self._cancel.set()

    def stop(self, timeout_s: float) -> None:
        """Cancel a running sync and wait for it up to ``timeout_s``."""
        self._cancel.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=max(timeout_s, 0.0))
            if thread.is_alive():
                log.warning("placement sync: still waiting on Placement at shutdown; left behind")

    def join(self, timeout_s: float) -> bool:
        """Wait for the running sync (tests); True when none runs."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout=timeout_s)
            return not thread.is_alive()
        return True

    def status(self) -> SyncStatus:
        with self._lock:
            return deepcopy(self._status)

    def metrics(self) -> bytes:
        return render_placement_sync(self.status())

    # -- one sync ------------------------------------------------------------------------------

    def _run(self) -> None:
        started = time.monotonic()
        result: SyncResult | None = None
        kind: str | None = None
        message: str | None = None
        try:
            result = sync(
                self.store, self._adapter(), self.options,
                deadline=started + self.settings.timeout_s, cancel=self._cancel,
            )  # fmt: skip
        except PlacementSyncError as exc:
            kind, message = exc.kind, _one_line(str(exc))
        except ConfigError as exc:
            kind, message = "config", _one_line(str(exc))
        except Exception as exc:  # a bug of ours: the daemon goes on, the next sync retries
            log.exception("placement sync crashed")
            kind, message = "internal_error", _one_line(f"{type(exc).__name__}: {exc}")
        if kind is not None and self._cancel.is_set():
            # Whatever broke after the daemon began stopping (a connection it closed, a store it
            # closed) is the stop's doing, not Placement's.
            kind, message = "cancelled", f"the daemon stopped during the sync ({kind}: {message})"
        duration = time.monotonic() - started
        self._finish(duration, result, kind, message)

    def _adapter(self) -> Any:
        # Built once and kept: its session keeps the Keystone token between syncs.
        if self._api is None:
            connection = connection_for(self.settings)
            self._api = adapter_for(connection, timeout_s=self.settings.request_timeout_s)
        return self._api

    def _finish(
        self, duration: float, result: SyncResult | None, kind: str | None, message: str | None
    ) -> None:
        now = time.time()
        with self._lock:
            s = self._status
            s.runs += 1
            s.running = False
            s.last_attempt_at, s.duration_s = now, duration
            s.error_kind, s.error_message = kind, message
            if result is not None:
                s.providers, s.writes = result.providers, result.writes
            if kind is None:
                s.status, s.last_success_at, s.consecutive_failures = "success", now, 0
            else:
                s.status = "failed"
                s.consecutive_failures += 1
                s.errors[kind] = s.errors.get(kind, 0) + 1
        if kind is None and result is not None:
            log.info(
                "placement sync: %d providers, %d writes (%d created, %d removed, %d conflicts "
                "retried), %.3fs", result.providers, result.writes, result.created,
                result.removed, result.conflicts_retried, duration,
            )  # fmt: skip
        elif kind != "cancelled":
            log.warning("placement sync failed after %.3fs: %s: %s", duration, kind, message)
        if kind == "cancelled":
            return  # the daemon is stopping: not the last word on Placement
        try:
            self.store.record_task(
                self.spec, duration_s=duration, error_kind=kind, error_message=message
            )
        except SQLAlchemyError as exc:  # the status stays in memory; the store says it is away
            log.warning("placement sync: its status could not be stored: %s", _one_line(str(exc)))


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]
