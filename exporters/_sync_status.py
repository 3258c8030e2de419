"""What a process knows of the Placement syncs it ran: read by ``/metrics`` and
``/v1/placement/status``, written by :mod:`exporters.placement_periodic`."""

from __future__ import annotations

from dataclasses import dataclass, field

from resmon.store import INTERNAL_PREFIX

__all__ = ["ERROR_KINDS", "TASK_NAME", "SyncStatus"]

#: The sync's row in ``targets`` (its lease and its stored status): a reserved name.
TASK_NAME = f"{INTERNAL_PREFIX}placement-sync"

#: What stops a sync (``PlacementSyncError.kind``, the metrics' ``kind`` label).
ERROR_KINDS = (
    "unreachable",  # no connection to Placement or Keystone
    "timeout",  # a request, or the whole sync, ran out of time
    "auth",  # 401/403 from Placement, or Keystone refused the credentials
    "server_error",  # a 5xx from Placement
    "conflict",  # 409s went on after every retry
    "rejected",  # another 4xx: Placement refused what was sent
    "store_error",  # resmon's own database could not be read
    "config",  # the connection cannot be built (clouds.yaml, secret, CA bundle, ...)
    "cancelled",  # the daemon stopped during the sync
    "internal_error",  # a bug of resmon's (logged with its traceback)
)


@dataclass
class SyncStatus:
    """A snapshot; times are Unix seconds."""

    mode: str
    interval_s: float
    #: Syncs this process ran (attempts, failed or not) and its failures by error kind.
    runs: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    #: never, success, failed, or waiting (for the first collection of every target).
    status: str = "never"
    running: bool = False
    #: This process holds the sync's lease (always, without replicas).
    lease_held: bool = False
    last_attempt_at: float | None = None
    last_success_at: float | None = None
    duration_s: float | None = None
    error_kind: str | None = None
    error_message: str | None = None
    consecutive_failures: int = 0
    #: Of the last sync that got as far as reading resmon's store.
    providers: int | None = None
    writes: int | None = None
