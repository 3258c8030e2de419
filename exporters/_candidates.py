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

Sharing providers follow Placement's rules. An up ``shared_storage`` provider serves the up
compute hosts its report lists in ``shared_with`` (same target). A candidate is an allocation
request: one host, and per requested class the provider that supplies it, the host itself or one
of its sharing providers, within that provider's free amount and unit limits. Every combination
is an answer (a host with local DISK_GB and a shared datastore gives two). Required traits are
looked for on the host and the providers of the answer together, forbidden ones on none of them.

Answers are produced lazily (:meth:`CandidateIndex.answers`), so that a caller filtering them
further (the ``/placement`` API) stops at its limit instead of computing every answer. The body
of ``/v1/candidates`` is written from JSON fragments each provider keeps for its lifetime (its ids
and inventories never change while it is in the index): encoding them for every answer cost more
than the search itself.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import json
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ._params import encode_host_ref
from ._queries import CandidateQuery, TargetStatus, latest_run_id
from ._tables import HOSTS as _H
from ._tables import INVENTORIES as _INV
from ._tables import SUPPORTED_INSTANCES as _SI
from ._tables import TARGETS as _T
from ._tables import TRAITS as _TRAITS

__all__ = [
    "CandidateIndex",
    "IndexedCandidate",
    "IndexedHost",
    "candidates_body",
    "target_generations",
]


_Key = tuple[str, tuple[str, str, str] | None]
#: Reloads of a target in one request before the rows read last are used as they are.
_RELOAD_ATTEMPTS = 3


def target_generations(session: Session) -> dict[int, int | None]:
    """``{target id: id of its latest collection run}`` (None before the first one)."""
    rows = session.execute(select(_T.c.id, latest_run_id()))
    return {target_id: run_id for target_id, run_id in rows}


@dataclass(frozen=True, eq=False, slots=True)
class IndexedHost:
    """An up compute host or sharing provider as a candidate query needs it.

    ``inventories`` are the API's records ordered by resource class (shared by every answer;
    never mutated); ``limits`` are ``(row id, free, min_unit, max_unit, step_size)`` per class.
    ``sharers`` are the pks of the up sharing providers a compute host is attached to (sorted).
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
    provider_kind: str = "compute_host"
    sharers: tuple[int, ...] = ()
    #: Per class, Placement's provider summary: ``{"capacity": ..., "used": ...}``.
    usage: dict[str, dict[str, int]] = field(default_factory=dict)
    #: This provider's parts of a ``/v1/candidates`` body already encoded, by target name
    #: (a host object lives as long as its target's rows are unchanged, so they never go stale).
    fragments: dict[str, tuple[str, str, str, str]] = field(
        default_factory=dict, compare=False, repr=False
    )
    #: Its ``/placement`` provider summaries, encoded, by microversion tier (placement_api).
    summary_fragments: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def supplies(self, resource_class: str, amount: int) -> bool:
        limit = self.limits.get(resource_class)
        if limit is None:
            return False
        _row_id, free, min_unit, max_unit, step_size = limit
        return free >= amount and _fits(amount, min_unit, max_unit, step_size)

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


@dataclass(frozen=True, eq=False, slots=True)
class IndexedCandidate:
    """An allocation request: ``host`` and, per requested class in the query's order, the
    provider that supplies it (the host itself or one of its sharing providers)."""

    host: IndexedHost
    sources: tuple[IndexedHost, ...]


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
    sharers: dict[int, IndexedHost] = field(default_factory=dict)
    #: Per resource class, ``(free, inventory row id, sharer pk)`` sorted ascending.
    sharer_entries: dict[str, list[_Entry]] = field(default_factory=dict)


@dataclass
class _Snapshot:
    """The index at one set of generations; replaced whole, never changed in place."""

    generations: dict[int, int | None] = field(default_factory=dict)
    targets: dict[int, _Target] = field(default_factory=dict)  # by target id
    entries: _Entries = field(default_factory=dict)  # every target's, merged
    hosts: dict[int, IndexedHost] = field(default_factory=dict)  # every target's, by pk
    sharers: dict[int, IndexedHost] = field(default_factory=dict)  # every target's, by pk
    sharer_entries: dict[str, list[_Entry]] = field(default_factory=dict)  # merged
    #: For each sharing provider pk, the pks of the hosts it serves (sorted).
    served: dict[int, tuple[int, ...]] = field(default_factory=dict)


class CandidateIndex:
    """Candidate search over an in-memory copy of the up compute hosts, per API process.

    Thread-safe: readers use the snapshot current when they start; one reload runs at a time.
    """

    def __init__(self) -> None:
        self._snapshot = _Snapshot()
        self._lock = threading.Lock()

    def search(
        self, session: Session, query: CandidateQuery, targets: Collection[TargetStatus]
    ) -> list[IndexedCandidate]:
        """The allocation requests that fit ``query``, best first, at most ``query.limit``.

        ``targets`` are every target as just read (:func:`target_statuses`): their staleness
        and generations. Hosts of stale targets fit only with ``query.include_stale``.

        Ordered by the free amount of the first class at the provider that supplies it, then
        that inventory row, then the host (the order of the SQL when no sharing provider takes
        part); the answers of one host and supplier of the first class in a stable order.
        """
        return list(itertools.islice(self.answers(session, query, targets), query.limit))

    def answers(
        self,
        session: Session,
        query: CandidateQuery,
        targets: Collection[TargetStatus],
        *,
        host_supplies: bool = False,
    ) -> Iterator[IndexedCandidate]:
        """Every answer of :meth:`search` in its order, found as they are taken (``limit`` is
        not applied): a caller that drops some takes more without searching twice.

        ``host_supplies``: only answers in which the host supplies some class (Placement lists
        an answer made of sharing providers alone once, on its own; see placement_api)."""
        snapshot = self._current(session, {t.id: t.last_run_id for t in targets})
        fresh_target_ids = None if query.include_stale else {t.id for t in targets if not t.stale}
        resource_class, amount = query.resources[0]
        # Walk the hosts by the first class's free amount, as the SQL's index scan does, in
        # the list of the instance type asked for (if any), from the first entry that has
        # ``amount`` free; stop at ``limit`` fits. Answers whose first class comes from a
        # sharing provider are walked the same way over the sharers' entries and merged in.
        most_free = query.order == "most_free"
        entries = snapshot.entries.get((resource_class, query.instance), [])
        local = self._walk(entries, amount, most_free)
        streams: list[Iterator[tuple[_Entry, IndexedCandidate]]] = [
            self._local_answers(snapshot, query, local, fresh_target_ids)
        ]
        shared_entries = snapshot.sharer_entries.get(resource_class)
        if shared_entries and not (host_supplies and len(query.resources) == 1):
            walk = self._walk(shared_entries, amount, most_free)
            streams.append(
                self._shared_answers(snapshot, query, walk, fresh_target_ids, host_supplies)
            )
        answers = (
            streams[0]
            if len(streams) == 1
            else heapq.merge(*streams, key=_entry_key, reverse=most_free)
        )
        return (candidate for _, candidate in answers)

    def sharing_providers(
        self, session: Session, targets: Collection[TargetStatus]
    ) -> list[IndexedHost]:
        """The up sharing providers (by pk) as of the targets just read."""
        snapshot = self._current(session, {t.id: t.last_run_id for t in targets})
        return [snapshot.sharers[pk] for pk in sorted(snapshot.sharers)]

    @staticmethod
    def _walk(entries: list[_Entry], amount: int, most_free: bool) -> Iterable[_Entry]:
        start = bisect.bisect_left(entries, amount, key=_free)
        if most_free:
            return reversed(entries[start:])
        return itertools.islice(entries, start, None)

    @staticmethod
    def _local_answers(
        snapshot: _Snapshot,
        query: CandidateQuery,
        walk: Iterable[_Entry],
        fresh_target_ids: set[int] | None,
    ) -> Iterator[tuple[_Entry, IndexedCandidate]]:
        """Answers in which the host supplies the first class itself."""
        resource_class, amount = query.resources[0]
        required, forbidden, rest = query.required, query.forbidden, query.resources[1:]
        hosts, sharers = snapshot.hosts, snapshot.sharers
        shared_classes = snapshot.sharer_entries.keys()
        shares_rest = any(rc in shared_classes for rc, _ in rest)
        for entry in walk:
            host = hosts[entry[2]]
            if fresh_target_ids is not None and host.target_id not in fresh_target_ids:
                continue
            _, _, min_unit, max_unit, step_size = host.limits[resource_class]
            if not _fits(amount, min_unit, max_unit, step_size):
                continue
            if not (host.sharers and shares_rest):
                # The host alone: the common case, and the only one without sharers.
                if not required <= host.traits or not forbidden.isdisjoint(host.traits):
                    continue
                if rest and not host.fits(rest):
                    continue
                yield entry, IndexedCandidate(host, (host,) * len(query.resources))
                continue
            attached = [sharers[pk] for pk in host.sharers]
            for sources in _combinations(host, (host,), attached, rest):
                if _traits_fit(host, sources, required, forbidden):
                    yield entry, IndexedCandidate(host, sources)

    @staticmethod
    def _shared_answers(
        snapshot: _Snapshot,
        query: CandidateQuery,
        walk: Iterable[_Entry],
        fresh_target_ids: set[int] | None,
        host_supplies: bool = False,
    ) -> Iterator[tuple[_Entry, IndexedCandidate]]:
        """Answers in which a sharing provider supplies the first class (and the host some
        other one, with ``host_supplies``)."""
        required, forbidden, rest = query.required, query.forbidden, query.resources[1:]
        hosts, sharers = snapshot.hosts, snapshot.sharers
        descending = query.order == "most_free"
        for free, row_id, sharer_pk in walk:
            sharer = sharers[sharer_pk]
            if fresh_target_ids is not None and sharer.target_id not in fresh_target_ids:
                continue
            if not sharer.supplies(*query.resources[0]):
                continue
            served = snapshot.served.get(sharer_pk, ())
            for host_pk in reversed(served) if descending else served:
                host = hosts[host_pk]
                if query.instance is not None and query.instance not in host.instances:
                    continue
                attached = [sharers[pk] for pk in host.sharers]
                for sources in _combinations(host, (sharer,), attached, rest):
                    if host_supplies and not any(s is host for s in sources):
                        continue
                    if _traits_fit(host, sources, required, forbidden):
                        yield (free, row_id, host_pk), IndexedCandidate(host, sources)

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


def _entry_key(item: tuple[_Entry, IndexedCandidate]) -> _Entry:
    return item[0]


def _combinations(
    host: IndexedHost,
    first: tuple[IndexedHost, ...],
    attached: list[IndexedHost],
    rest: tuple[tuple[str, int], ...],
) -> Iterator[tuple[IndexedHost, ...]]:
    """Every choice of supplier for the classes of ``rest`` (the host first, then its sharing
    providers by pk), after the supplier(s) already chosen in ``first``."""
    options = []
    for resource_class, amount in rest:
        choice = [p for p in (host, *attached) if p.supplies(resource_class, amount)]
        if not choice:
            return
        options.append(choice)
    for chosen in itertools.product(*options):
        yield first + chosen


def _traits_fit(
    host: IndexedHost,
    sources: tuple[IndexedHost, ...],
    required: frozenset[str],
    forbidden: frozenset[str],
) -> bool:
    """Placement's rule for one request group: required traits on the providers of the answer
    taken together, forbidden traits on none of them. The host always counts, even when its
    sharing providers supply every class: a candidate is a place to run on."""
    if not required and not forbidden:
        return True
    traits = set(host.traits)
    for provider in sources:
        traits |= provider.traits
    return required <= traits and forbidden.isdisjoint(traits)


def _merge(generations: dict[int, int | None], targets: dict[int, _Target]) -> _Snapshot:
    """The snapshot of ``targets``: their sorted entries merged (sort finds the sorted runs)."""
    merged: _Entries = {}
    hosts: dict[int, IndexedHost] = {}
    sharers: dict[int, IndexedHost] = {}
    sharer_entries: dict[str, list[_Entry]] = {}
    for target in targets.values():
        hosts.update(target.hosts)
        sharers.update(target.sharers)
        for key, entries in target.entries.items():
            merged.setdefault(key, []).extend(entries)
        for resource_class, entries in target.sharer_entries.items():
            sharer_entries.setdefault(resource_class, []).extend(entries)
    for entries in itertools.chain(merged.values(), sharer_entries.values()):
        entries.sort()
    served: dict[int, list[int]] = {}
    for host in hosts.values():
        for sharer_pk in host.sharers:
            served.setdefault(sharer_pk, []).append(host.pk)
    return _Snapshot(
        generations=generations, targets=targets, entries=merged, hosts=hosts, sharers=sharers,
        sharer_entries=sharer_entries,
        served={pk: tuple(sorted(pks)) for pk, pks in served.items()},
    )  # fmt: skip


def _target(hosts: Iterable[IndexedHost], sharers: Iterable[IndexedHost]) -> _Target:
    by_pk: dict[int, IndexedHost] = {}
    entries: _Entries = {}
    for host in hosts:
        by_pk[host.pk] = host
        for resource_class, (row_id, free, *_rest) in host.limits.items():
            entry = (free, row_id, host.pk)
            entries.setdefault((resource_class, None), []).append(entry)
            for instance in host.instances:
                entries.setdefault((resource_class, instance), []).append(entry)
    sharers_by_pk: dict[int, IndexedHost] = {}
    sharer_entries: dict[str, list[_Entry]] = {}
    for sharer in sharers:
        sharers_by_pk[sharer.pk] = sharer
        for resource_class, (row_id, free, *_rest) in sharer.limits.items():
            sharer_entries.setdefault(resource_class, []).append((free, row_id, sharer.pk))
    for sorted_entries in itertools.chain(entries.values(), sharer_entries.values()):
        sorted_entries.sort()
    return _Target(
        hosts=by_pk, entries=entries, sharers=sharers_by_pk, sharer_entries=sharer_entries
    )


def _load(session: Session, target_ids: list[int]) -> dict[int, _Target]:
    """The up compute hosts and sharing providers of ``target_ids`` with their inventories,
    traits, instances and (for hosts) the sharing providers they are attached to."""
    if not target_ids:
        return {}
    kinds = ("compute_host", "shared_storage")
    rows = session.execute(
        select(
            _H.c.id, _H.c.target_id, _H.c.host_id, _H.c.hostname, _H.c.parent_id, _H.c.hv_type,
            _H.c.arch, _H.c.provider_kind,
        )
        .where(
            _H.c.target_id.in_(target_ids),
            _H.c.provider_kind.in_(kinds),
            _H.c.state == "up",
        )
        .order_by(_H.c.id)
    ).all()  # fmt: skip
    pks = select(_H.c.id).where(
        _H.c.target_id.in_(target_ids), _H.c.provider_kind.in_(kinds), _H.c.state == "up"
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
    # Which hosts each sharing provider serves is in its report only (a handful of rows).
    sharer_pks = [r.id for r in rows if r.provider_kind == "shared_storage"]
    attached: dict[tuple[int, str], list[int]] = {}
    if sharer_pks:
        for pk, target_id, report in session.execute(
            select(_H.c.id, _H.c.target_id, _H.c.report).where(_H.c.id.in_(sharer_pks))
        ):
            for host_id in report.get("shared_with") or ():
                attached.setdefault((target_id, host_id), []).append(pk)
    hosts: dict[int, list[IndexedHost]] = {t: [] for t in target_ids}
    sharers: dict[int, list[IndexedHost]] = {t: [] for t in target_ids}
    for pk, target_id, host_id, hostname, parent_id, hv_type, arch, kind in rows:
        provider = IndexedHost(
            pk=pk, target_id=target_id, host_id=host_id, hostname=hostname,
            parent_id=parent_id, hv_type=hv_type, arch=arch,
            traits=frozenset(traits.get(pk, ())), instances=frozenset(instances.get(pk, ())),
            inventories=inventories.get(pk, {}), limits=limits.get(pk, {}), provider_kind=kind,
            sharers=tuple(sorted(attached.get((target_id, host_id), ()))),
            usage={rc: {"capacity": r["capacity"], "used": r["used"]}
                   for rc, r in inventories.get(pk, {}).items()},
        )  # fmt: skip
        (sharers if kind == "shared_storage" else hosts)[target_id].append(provider)
    return {t: _target(hosts[t], sharers[t]) for t in target_ids}


def candidates_body(
    found: Iterable[IndexedCandidate],
    resources: tuple[tuple[str, int], ...],
    targets: Mapping[int, TargetStatus],
) -> bytes:
    """The ``/v1/candidates`` body (``CandidateList``), as Starlette's JSONResponse encodes
    it. Each provider's unchanging parts (its ids, names and inventories) are encoded once and
    kept with it: encoding them again for every answer cost more than the search."""
    parts = []
    for candidate in found:
        target = targets[candidate.host.target_id]
        parts.append(_candidate_text(candidate, resources, target.name, target.stale))
    return ('{"candidates":[' + ",".join(parts) + "]}").encode()


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _fragments(provider: IndexedHost, target: str) -> tuple[str, str, str, str]:
    """``(id, ids, inventories, as_sharer)``: the provider's API id, its id fields encoded
    (without braces), its inventories encoded, and the id fields it has as a sharing provider
    of an answer (without braces)."""
    cached = provider.fragments.get(target)
    if cached is None:
        ref = encode_host_ref(target, provider.host_id)
        ids = _dumps({
            "id": ref, "target": target, "host_id": provider.host_id,
            "hostname": provider.hostname, "parent_id": provider.parent_id,
            "hv_type": provider.hv_type, "arch": provider.arch,
        })[1:-1]  # fmt: skip
        as_sharer = _dumps({"id": ref, "host_id": provider.host_id, "hostname": provider.hostname})[
            1:-1
        ]
        cached = (ref, ids, _dumps(provider.inventories), as_sharer)
        provider.fragments[target] = cached
    return cached


def _candidate_text(
    candidate: IndexedCandidate, resources: tuple[tuple[str, int], ...], target: str, stale: bool
) -> str:
    # Resource class names (os-resource-classes or CUSTOM_[A-Z0-9_]+, checked when parsed),
    # API ids (base64url) and integers need no escaping: written as they are.
    host = candidate.host
    requested = []
    shared: dict[int, tuple[IndexedHost, list[str]]] = {}
    for (resource_class, amount), source in zip(resources, candidate.sources, strict=True):
        free = source.inventories[resource_class]["free"]
        requested.append(
            f'"{resource_class}":{{"requested":{amount},"free":{free},'
            f'"free_after":{free - amount},"provider":"{_fragments(source, target)[0]}"}}'
        )
        if source is not host:
            shared.setdefault(source.pk, (source, []))[1].append(f'"{resource_class}":{amount}')
    _, ids, inventories, _ = _fragments(host, target)
    sharing = []
    for source, amounts in shared.values():
        _, _, source_inventories, as_sharer = _fragments(source, target)
        sharing.append(
            "{" + as_sharer + ',"resources":{' + ",".join(amounts) + '},"inventories":'
            + source_inventories + "}"
        )  # fmt: skip
    return (
        "{" + ids + ',"stale":' + ("true" if stale else "false") + ',"resources":{'
        + ",".join(requested) + '},"inventories":' + inventories + ',"sharing_providers":['
        + ",".join(sharing) + "]}"
    )  # fmt: skip
