"""Encoded candidate answers, kept while the fleet they were computed from is unchanged.

A candidate answer (``/v1/candidates``, ``/placement/allocation_candidates``) is a function of
the query and of what the store holds, and what the store holds changes only when a collection
is stored: each one moves its target's generation (the id of its latest collection run, see
:mod:`exporters._candidates`). Staleness changes with time alone, so it is part of the key too.
Every request still reads the target statuses; when the fleet read is the one the cached
answers were computed from, the same query gets the same bytes without searching or encoding.
The first request that sees another fleet drops every entry: none can be right any more.

Schedulers send the same few flavours again and again between collections (a scheduler asks
for every instance it places), which is what this saves. It is bounded by entries and bytes, and
least recently used entries go first. Only successful answers are kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable

from ._queries import TargetStatus

__all__ = ["DEFAULT_MAX_BYTES", "AnswerCache", "fleet_key"]

#: Room for about sixty answers of 1,000 allocation requests (the largest a query may ask for).
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_ENTRIES = 512

FleetKey = tuple[tuple[int, int | None, bool], ...]


def fleet_key(targets: Iterable[TargetStatus]) -> FleetKey:
    """What a candidate answer depends on besides the query: each target's generation and
    staleness."""
    return tuple(sorted((t.id, t.last_run_id, t.stale) for t in targets))


class AnswerCache:
    """Encoded answers by query, for one fleet at a time. Thread-safe.

    ``max_bytes=0`` keeps nothing (every request computes its answer).
    """

    def __init__(
        self, max_bytes: int = DEFAULT_MAX_BYTES, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._fleet: FleetKey | None = None
        self._entries: OrderedDict[Hashable, bytes] = OrderedDict()
        self._bytes = 0

    def answer(
        self, targets: Iterable[TargetStatus], query: Hashable, compute: Callable[[], bytes]
    ) -> bytes:
        """The answer kept for ``query`` over the fleet of ``targets`` (as just read), else
        ``compute()``'s, then kept. An exception from ``compute`` keeps nothing."""
        fleet = fleet_key(targets)
        body = self.get(fleet, query)
        if body is None:
            body = compute()
            self.put(fleet, query, body)
        return body

    def get(self, fleet: FleetKey, query: Hashable) -> bytes | None:
        with self._lock:
            self._follow(fleet)
            body = self._entries.get(query)
            if body is None:
                self.misses += 1
                return None
            self._entries.move_to_end(query)
            self.hits += 1
            return body

    def put(self, fleet: FleetKey, query: Hashable, body: bytes) -> None:
        if len(body) > self.max_bytes:
            return
        with self._lock:
            self._follow(fleet)
            previous = self._entries.pop(query, None)
            if previous is not None:
                self._bytes -= len(previous)
            self._entries[query] = body
            self._bytes += len(body)
            while self._bytes > self.max_bytes or len(self._entries) > self.max_entries:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= len(dropped)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def _follow(self, fleet: FleetKey) -> None:
        # An answer computed from an older fleet may be stored after a newer fleet was seen:
        # it then replaces the newer entries, which only costs the next requests a search.
        if fleet != self._fleet:
            self._entries.clear()
            self._bytes = 0
            self._fleet = fleet
