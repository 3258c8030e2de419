"""An in-memory index of the rows candidate queries read, kept per API process.

``GET /v1/candidates`` must answer in milliseconds over fleets of tens of thousands of hosts, and
the SQL of :func:`exporters._queries.candidates` cannot: PostgreSQL misjudges how many rows the
``min_unit``/``max_unit``/``step_size`` conditions keep, joins the whole fleet and sorts it. So
each API process keeps the candidate-relevant rows of the up compute hosts in memory and answers
from them, with exactly the rules and order of that SQL.

It is a read-through cache, never a second source of truth:

- Provider rows change only when a collection is stored, and every stored collection (a success,
  which replaces the target's providers, or a failure) adds a ``collection_runs`` row in the same
  transaction. A target's *generation* is the id of its latest run; every request reads the
  generations with the target statuses (one indexed lookup per target) and reloads the targets
  whose generation moved.
- A reload re-reads the generations after loading and loads again (up to three rounds) the
  targets collected in between, so that a target's rows come from one committed state; if
  collections keep landing, the next request loads again.
- Staleness is not cached: it comes with the target statuses read for each request.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from resmon.store import models

from ._queries import CandidateQuery, TargetStatus, latest_run_id

__all__ = ["CandidateIndex", "IndexedHost", "target_generations"]

_H = models.Host.__table__
_INV = models.Inventory.__table__
_TRAITS = models.HostTrait.__table__
_SI = models.SupportedInstance.__table__
_T = models.Target.__table__

_Key = tuple[str, tuple[str, str, str] | None]
#: Reloads of a target in one request before the rows read last are used as they are.
_RELOAD_ATTEMPTS = 3


def target_generations(session: Session) -> dict[int, int | None]:
    """``{target id: id of its latest collection run}`` (None before the first one)."""
    rows = session.execute(select(_T.c.id, latest_run_id()))
    return {target_id: run_id for target_id, run_id in rows}


@dataclass(frozen=True, eq=False, slots=True)
class IndexedHost:
    """An up compute host as a candidate query needs it.

    ``inventories`` are the API's records ordered by resource class (shared by every answer;
    never mutated); ``limits`` are ``(row id, free, min_unit, max_unit, step_size)`` per class.
    """

    pk: int
    target_id: int
    host_id: str
    hostname: str | None
    parent_id: str | None
    hv_type: str | None
    arch: str | None
    traits: frozenset[str]
    instances: frozenset[tuple[str, str, str]]
    inventories: dict[str, dict[str, Any]]
    limits: dict[str, tuple[int, int, int, int, int]]

    def fits(self, resources: Iterable[tuple[str, int]]) -> bool:
        """Placement's rules, as in the SQL: the host has every class, with ``amount`` free,
        within ``min_unit..max_unit`` and a multiple of ``step_size``."""
        for resource_class, amount in resources:
            limit = self.limits.get(resource_class)
            if limit is None:
                return False
            _row_id, free, min_unit, max_unit, step_size = limit
            if free < amount or not _fits(amount, min_unit, max_unit, step_size):
                return False
        return True


def _fits(amount: int, min_unit: int, max_unit: int, step_size: int) -> bool:
    # A step size of 0 never fits (SQL's ``amount % 0`` is NULL, not 0).
    return min_unit <= amount <= max_unit and step_size != 0 and amount % step_size == 0


#: ``(free, inventory row id, host pk)``: sorted ascending, the order of ``ORDER BY free, id``
#: in the SQL. Plain numbers, so that the garbage collector stops tracking them (with hosts in
#: them, the ~60,000 entries of a 10,000-host fleet made every full collection longer).
_Entry = tuple[int, int, int]
#: Per (resource class, instance type or None for any), the entries sorted ascending.
_Entries = dict[_Key, list[_Entry]]


@dataclass(frozen=True)
class _Target:
    """One target's up compute hosts by pk, and their entries."""

    hosts: dict[int, IndexedHost]
    entries: _Entries


@dataclass
class _Snapshot:
    """The index at one set of generations; replaced whole, never changed in place."""

    generations: dict[int, int | None] = field(default_factory=dict)
    targets: dict[int, _Target] = field(default_factory=dict)  # by target id
    entries: _Entries = field(default_factory=dict)  # every target's, merged
    hosts: dict[int, IndexedHost] = field(default_factory=dict)  # every target's, by pk


class CandidateIndex:
    """Candidate search over an in-memory copy of the up compute hosts, per API process.

    Thread-safe: readers use the snapshot current when they start; one reload runs at a time.
    """

    def __init__(self) -> None:
        self._snapshot = _Snapshot()
        self._lock = threading.Lock()

    def search(
        self, session: Session, query: CandidateQuery, targets: Collection[TargetStatus]
    ) -> list[IndexedHost]:
        """The hosts that fit ``query``, best first, at most ``query.limit``.

        ``targets`` are every target as just read (:func:`target_statuses`): their staleness
        and generations. Hosts of stale targets fit only with ``query.include_stale``.
        """
        snapshot = self._current(session, {t.id: t.last_run_id for t in targets})
        fresh_target_ids = None if query.include_stale else {t.id for t in targets if not t.stale}
        resource_class, amount = query.resources[0]
        # Walk the hosts by the first class's free amount, as the SQL's index scan does, in
        # the list of the instance type asked for (if any), from the first entry that has
        # ``amount`` free; stop at ``limit`` fits.
        entries = snapshot.entries.get((resource_class, query.instance), [])
        start = bisect.bisect_left(entries, amount, key=_free)
        if query.order == "most_free":
            walk: Iterable[_Entry] = reversed(entries[start:])
        else:
            walk = entries[start:]
        required, forbidden, rest = query.required, query.forbidden, query.resources[1:]
        hosts = snapshot.hosts
        found: list[IndexedHost] = []
        for _, _, pk in walk:
            host = hosts[pk]
            if fresh_target_ids is not None and host.target_id not in fresh_target_ids:
                continue
            if not required <= host.traits or not forbidden.isdisjoint(host.traits):
                continue
            _, _, min_unit, max_unit, step_size = host.limits[resource_class]
            if not _fits(amount, min_unit, max_unit, step_size):
                continue
            if rest and not host.fits(rest):
                continue
            found.append(host)
            if len(found) == query.limit:
                break
        return found

    def _current(self, session: Session, generations: dict[int, int | None]) -> _Snapshot:
        snapshot = self._snapshot
        if generations == snapshot.generations:
            return snapshot
        with self._lock:  # one reload at a time; the others wait and then find it done
            snapshot = self._snapshot
            generations = target_generations(session)
            for _ in range(_RELOAD_ATTEMPTS):
                old = snapshot.generations
                changed = [t for t, g in generations.items() if t not in old or old[t] != g]
                if not changed and old.keys() == generations.keys():
                    break
                targets = {t: e for t, e in snapshot.targets.items() if t in generations}
                targets.update(_load(session, changed))
                # Tagged with the generations read before loading: a collection stored while
                # loading moves a generation, and the next round (or request) loads it again.
                snapshot = _merge(generations, targets)
                generations = target_generations(session)
            self._snapshot = snapshot
            return snapshot


def _free(entry: _Entry) -> int:
    return entry[0]


def _merge(generations: dict[int, int | None], targets: dict[int, _Target]) -> _Snapshot:
    """The snapshot of ``targets``: their sorted entries merged (sort finds the sorted runs)."""
    merged: _Entries = {}
    hosts: dict[int, IndexedHost] = {}
    for target in targets.values():
        hosts.update(target.hosts)
        for key, entries in target.entries.items():
            merged.setdefault(key, []).extend(entries)
    for entries in merged.values():
        entries.sort()
    return _Snapshot(generations=generations, targets=targets, entries=merged, hosts=hosts)


def _target(hosts: Iterable[IndexedHost]) -> _Target:
    by_pk: dict[int, IndexedHost] = {}
    entries: _Entries = {}
    for host in hosts:
        by_pk[host.pk] = host
        for resource_class, (row_id, free, *_rest) in host.limits.items():
            entry = (free, row_id, host.pk)
            entries.setdefault((resource_class, None), []).append(entry)
            for instance in host.instances:
                entries.setdefault((resource_class, instance), []).append(entry)
    for sorted_entries in entries.values():
        sorted_entries.sort()
    return _Target(hosts=by_pk, entries=entries)


def _load(session: Session, target_ids: list[int]) -> dict[int, _Target]:
    """The up compute hosts of ``target_ids`` with their inventories, traits and instances."""
    if not target_ids:
        return {}
    out: dict[int, list[IndexedHost]] = {t: [] for t in target_ids}
    hosts = session.execute(
        select(
            _H.c.id, _H.c.target_id, _H.c.host_id, _H.c.hostname, _H.c.parent_id, _H.c.hv_type,
            _H.c.arch,
        )
        .where(
            _H.c.target_id.in_(target_ids),
            _H.c.provider_kind == "compute_host",
            _H.c.state == "up",
        )
        .order_by(_H.c.id)
    ).all()  # fmt: skip
    pks = select(_H.c.id).where(
        _H.c.target_id.in_(target_ids), _H.c.provider_kind == "compute_host", _H.c.state == "up"
    )
    inventories: dict[int, dict[str, dict[str, Any]]] = {}
    limits: dict[int, dict[str, tuple[int, int, int, int, int]]] = {}
    for (host_pk, rc, row_id, total, reserved, min_unit, max_unit, step_size, ratio, used,
         capacity, free) in session.execute(
        select(
            _INV.c.host_pk, _INV.c.resource_class, _INV.c.id, _INV.c.total, _INV.c.reserved,
            _INV.c.min_unit, _INV.c.max_unit, _INV.c.step_size, _INV.c.allocation_ratio,
            _INV.c.used, _INV.c.capacity, _INV.c.free,
        )
        .where(_INV.c.host_pk.in_(pks))
        .order_by(_INV.c.host_pk, _INV.c.resource_class)
    ).all():  # fmt: skip
        inventories.setdefault(host_pk, {})[rc] = {
            "total": total, "reserved": reserved, "min_unit": min_unit, "max_unit": max_unit,
            "step_size": step_size, "allocation_ratio": ratio, "used": used,
            "capacity": capacity, "free": free,
        }  # fmt: skip
        limits.setdefault(host_pk, {})[rc] = (row_id, free, min_unit, max_unit, step_size)
    traits: dict[int, set[str]] = {}
    for host_pk, trait in session.execute(
        select(_TRAITS.c.host_pk, _TRAITS.c.trait).where(_TRAITS.c.host_pk.in_(pks))
    ).all():
        traits.setdefault(host_pk, set()).add(trait)
    instances: dict[int, set[tuple[str, str, str]]] = {}
    for host_pk, arch, hv_type, vm_mode in session.execute(
        select(_SI.c.host_pk, _SI.c.arch, _SI.c.hv_type, _SI.c.vm_mode).where(
            _SI.c.host_pk.in_(pks)
        )
    ).all():
        instances.setdefault(host_pk, set()).add((arch, hv_type, vm_mode))
    for pk, target_id, host_id, hostname, parent_id, hv_type, arch in hosts:
        out[target_id].append(
            IndexedHost(
                pk=pk, target_id=target_id, host_id=host_id, hostname=hostname,
                parent_id=parent_id, hv_type=hv_type, arch=arch,
                traits=frozenset(traits.get(pk, ())), instances=frozenset(instances.get(pk, ())),
                inventories=inventories.get(pk, {}), limits=limits.get(pk, {}),
            )
        )  # fmt: skip
    return {target_id: _target(target_hosts) for target_id, target_hosts in out.items()}
