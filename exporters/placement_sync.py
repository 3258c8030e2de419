"""Make a real OpenStack Placement hold what resmon knows (``resmon placement sync``).

What is written, per provider of the ``/placement`` read API's model (compute hosts and
shared-storage providers, each its own root; see :mod:`exporters.placement_api` for why clusters
are not parents): the provider (same uuid and name), its inventories, its traits (custom ones
created first) plus ``CUSTOM_RESMON_MANAGED``, and its aggregates (a sharing provider and the
hosts it serves share one). Only providers carrying ``CUSTOM_RESMON_MANAGED`` are ever removed,
and only with ``remove_missing``.

Modes: ``nova`` writes inventories and traits only (Nova owns allocations); with
``fold_used_into_reserved`` the use resmon sees is added to ``reserved`` (for instances Nova
does not know). ``standalone`` also writes consumers holding each provider's ``used`` (uuid5
of the provider, numbered), so a Placement without Nova sees the fleet's use. Placement refuses
an allocation above an inventory's ``max_unit`` (``InvalidAllocationConstraintsViolated``), and
an overcommitted host commonly uses more VCPU than its ``max_unit`` (its physical CPUs), so the
use is split over as many consumers as that takes, each holding at most ``max_unit`` (in
multiples of ``step_size``, at least ``min_unit``: a remainder that is not is rounded down).

Every write is preceded by a read and skipped when Placement already holds the value, so a
sync with nothing changed makes no writes. A 409 (the provider's generation moved under us)
is retried after reading the provider again, up to ``CONFLICT_RETRIES`` times.

A sync may be bounded (``deadline``, on ``time.monotonic()``: each request gets at most the time
left, and none starts after it) and cancelled (``cancel``, looked at before every request).
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from keystoneauth1 import adapter, exceptions
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from resmon.store import Store

from ._queries import inventories_of, target_statuses
from ._sync_status import ERROR_KINDS
from ._tables import HOSTS as _H
from ._tables import TRAITS as _TRAITS
from .placement_api import NAMESPACE, aggregate_uuid, provider_uuid
from .placement_auth import NOAUTH_TOKEN, Connection, adapter_for

__all__ = [
    "ERROR_KINDS",
    "MANAGED_TRAIT",
    "PlacementSyncError",
    "SyncOptions",
    "SyncResult",
    "desired_state",
    "placement_adapter",
    "sync",
]

MANAGED_TRAIT = "CUSTOM_RESMON_MANAGED"
CONFLICT_RETRIES = 5
#: The consumer type (microversion 1.38) of the standalone consumers holding each provider's use.
CONSUMER_TYPE = "RESMON_USED"
_INVENTORY_FIELDS = ("total", "reserved", "min_unit", "max_unit", "step_size", "allocation_ratio")


class PlacementSyncError(Exception):
    """The sync stopped; ``kind`` is one of :data:`ERROR_KINDS`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class SyncOptions:
    mode: Literal["nova", "standalone"] = "nova"
    fold_used_into_reserved: bool = False
    remove_missing: bool = False
    #: Project and user the standalone consumers belong to.
    project_id: str = "00000000-0000-0000-0000-000000000000"
    user_id: str = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True)
class Desired:
    uuid: str
    name: str
    inventories: dict[str, dict[str, Any]]
    used: dict[str, int]
    traits: frozenset[str]
    aggregates: frozenset[str]


@dataclass
class SyncResult:
    providers: int = 0
    writes: int = 0
    created: int = 0
    removed: int = 0
    conflicts_retried: int = 0
    write_log: list[str] = field(default_factory=list)


def consumer_uuid(rp_uuid: str, part: int = 0) -> str:
    """The standalone consumer holding (part ``part`` of) a provider's use."""
    if part == 0:
        return str(uuid.uuid5(NAMESPACE, f"consumer\x00{rp_uuid}"))
    return str(uuid.uuid5(NAMESPACE, f"consumer\x00{rp_uuid}\x00{part}"))


def consumer_parts(used: Mapping[str, int], inventories: Mapping[str, Mapping[str, Any]]
                   ) -> list[dict[str, int]]:  # fmt: skip
    """``used`` as allocations Placement accepts: each amount at most ``max_unit``, a multiple
    of ``step_size`` and at least ``min_unit`` (see the module docstring)."""
    parts: list[dict[str, int]] = []
    for rc, amount in sorted(used.items()):
        inventory = inventories[rc]
        step, min_unit = inventory["step_size"], inventory["min_unit"]
        largest = inventory["max_unit"] - inventory["max_unit"] % step
        n = 0
        while amount > 0 and largest >= min_unit:
            piece = min(amount, largest)
            piece -= piece % step
            if piece < min_unit:
                break
            if n == len(parts):
                parts.append({})
            parts[n][rc] = piece
            amount -= piece
            n += 1
    return parts


def desired_state(store: Store, options: SyncOptions) -> dict[str, Desired]:
    """The providers resmon wants Placement to hold, by uuid."""
    with store.session() as session:
        targets = {t.id: t for t in target_statuses(session)}
        rows = session.execute(
            select(_H.c.id, _H.c.target_id, _H.c.host_id, _H.c.provider_kind, _H.c.report)
            .where(_H.c.provider_kind.in_(("compute_host", "shared_storage")))
            .order_by(_H.c.id)
        ).all()
        inventories = inventories_of(session, [r.id for r in rows])
        traits: dict[int, set[str]] = {}
        for pk, trait in session.execute(select(_TRAITS.c.host_pk, _TRAITS.c.trait)):
            traits.setdefault(pk, set()).add(trait)
    aggregates: dict[tuple[int, str], set[str]] = {}
    for r in rows:
        if r.provider_kind == "shared_storage":
            aggregate = aggregate_uuid(targets[r.target_id].name, r.host_id)
            aggregates.setdefault((r.target_id, r.host_id), set()).add(aggregate)
            for host_id in r.report.get("shared_with") or ():
                aggregates.setdefault((r.target_id, host_id), set()).add(aggregate)
    out: dict[str, Desired] = {}
    for r in rows:
        target = targets[r.target_id].name
        rp_uuid = provider_uuid(target, r.host_id)
        records: dict[str, dict[str, Any]] = {}
        used: dict[str, int] = {}
        for rc, record in inventories[r.id].items():
            if record["total"] < 1:
                continue  # Placement refuses an inventory of nothing
            inventory = {f: record[f] for f in _INVENTORY_FIELDS}
            if options.mode == "nova" and options.fold_used_into_reserved and record["used"]:
                held = math.ceil(record["used"] / record["allocation_ratio"])
                inventory["reserved"] = min(inventory["total"], inventory["reserved"] + held)
            records[rc] = inventory
            if record["used"]:
                used[rc] = min(record["used"], record["capacity"])
        out[rp_uuid] = Desired(
            uuid=rp_uuid, name=f"{target}:{r.host_id}", inventories=records, used=used,
            traits=frozenset(traits.get(r.id, set()) | {MANAGED_TRAIT}),
            aggregates=frozenset(aggregates.get((r.target_id, r.host_id), set())),
        )  # fmt: skip
    return out


def placement_adapter(
    endpoint: str | None,
    *,
    auth_type: Literal["noauth", "password", "application_credential"] = "noauth",
    auth: Mapping[str, str] | None = None,
    verify: bool | str = True,
    timeout: float = 30.0,
) -> adapter.Adapter:
    """A keystoneauth1 adapter for Placement. ``noauth`` is for Placement's ``noauth2``
    strategy (tests); the others authenticate against Keystone v3 (``auth`` holds auth_url,
    username/password/project or application credential id/secret, user and project domain).
    :mod:`exporters.placement_auth` builds one from ``[placement]`` or ``clouds.yaml``."""
    options = dict(auth or {})
    if auth_type == "noauth":
        connection = Connection("admin_token", {"token": NOAUTH_TOKEN, "endpoint": endpoint or ""})
    elif auth_type == "password":
        options.setdefault("user_domain_name", "Default")
        options.setdefault("project_domain_name", "Default")
        connection = Connection("v3password", options)
    else:
        connection = Connection("v3applicationcredential", options)
    connection.endpoint, connection.verify = endpoint, verify
    return adapter_for(connection, timeout_s=timeout)


class _Placement:
    """The few calls the sync makes, errors mapped to :class:`PlacementSyncError`."""

    def __init__(
        self,
        api: adapter.Adapter,
        result: SyncResult,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.api = api
        self.result = result
        self.deadline = deadline
        self.cancel = cancel

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = ()) -> Any:
        extra: dict[str, Any] = {}
        if self.cancel is not None and self.cancel.is_set():
            raise PlacementSyncError("cancelled", "the daemon is stopping")
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise PlacementSyncError(
                    "timeout", f"the sync did not finish in time (stopped before {method} {path})"
                )
            timeout = self.api.session.timeout
            extra["timeout"] = min(left, timeout) if timeout else left
        try:
            response = self.api.request(path, method, json=body, **extra)
        except exceptions.ConnectTimeout as exc:
            raise PlacementSyncError("timeout", f"Placement did not answer: {exc}") from None
        except exceptions.ConnectFailure as exc:
            raise PlacementSyncError("unreachable", f"Placement is unreachable: {exc}") from None
        except exceptions.Unauthorized as exc:  # Keystone refused the credentials
            raise PlacementSyncError("auth", f"authentication failed: {exc}") from None
        except exceptions.ClientException as exc:
            raise PlacementSyncError("unreachable", f"Placement request failed: {exc}") from None
        status = response.status_code
        if method != "GET" and status < 400:
            self.result.writes += 1
            self.result.write_log.append(f"{method} {path}")
        if status in ok or status < 400:
            return response.json() if response.content else None
        detail = _detail(response)
        if status in (401, 403):
            raise PlacementSyncError("auth", f"{method} {path}: {status} {detail}")
        if status >= 500:
            raise PlacementSyncError("server_error", f"{method} {path}: {status} {detail}")
        if status == 409:
            raise _Conflict(detail)
        raise PlacementSyncError("rejected", f"{method} {path}: {status} {detail}")


class _Conflict(Exception):
    pass


def _detail(response: Any) -> str:
    try:
        errors = response.json().get("errors") or []
        detail = " ".join(str(errors[0].get("detail", "")).split()) if errors else ""
        return detail[:300]
    except ValueError:
        return str(response.text[:200])


def sync(
    store: Store,
    api: adapter.Adapter,
    options: SyncOptions | None = None,
    *,
    deadline: float | None = None,
    cancel: threading.Event | None = None,
) -> SyncResult:
    """Bring Placement in line with the store; see the module docstring."""
    options = options or SyncOptions()
    result = SyncResult()
    placement = _Placement(api, result, deadline, cancel)
    try:
        desired = desired_state(store, options)
    except SQLAlchemyError as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())[:300]
        raise PlacementSyncError(
            "store_error", f"reading resmon's database failed: {reason}"
        ) from None
    result.providers = len(desired)
    existing = {
        rp["uuid"]: rp for rp in placement.call("GET", "/resource_providers")["resource_providers"]
    }
    _ensure_traits(placement, {t for d in desired.values() for t in d.traits})
    for want in desired.values():
        created = None
        if want.uuid not in existing:
            body = {"uuid": want.uuid, "name": want.name}
            created = placement.call("POST", "/resource_providers", body)["generation"]
            result.created += 1
        _retrying(placement, result, lambda retry, w=want, g=created: _sync_provider(
            placement, w, None if retry else g))  # fmt: skip
        if options.mode == "standalone":
            _sync_consumer(placement, want, options, created is not None)
    if options.remove_missing:
        managed = placement.call("GET", f"/resource_providers?required={MANAGED_TRAIT}")
        for rp in managed["resource_providers"]:
            if rp["uuid"] not in desired:
                for consumer in _our_consumers(placement, rp["uuid"]):
                    placement.call("DELETE", f"/allocations/{consumer}", ok=(404,))
                placement.call("DELETE", f"/resource_providers/{rp['uuid']}")
                result.removed += 1
    return result


def _retrying(placement: _Placement, result: SyncResult, step: Any) -> None:
    """``step(retry)`` until it does not conflict (``retry``: a conflict happened before)."""
    for attempt in range(CONFLICT_RETRIES + 1):
        try:
            step(attempt > 0)
            return
        except _Conflict as exc:
            if attempt == CONFLICT_RETRIES:
                raise PlacementSyncError(
                    "conflict", f"still conflicting after {CONFLICT_RETRIES} retries: {exc}"
                ) from None
            result.conflicts_retried += 1


def _ensure_traits(placement: _Placement, traits: set[str]) -> None:
    custom = sorted(t for t in traits if t.startswith("CUSTOM_"))
    if not custom:
        return
    known = set(placement.call("GET", f"/traits?name=in:{','.join(custom)}")["traits"])
    for trait in custom:
        if trait not in known:
            placement.call("PUT", f"/traits/{trait}")


def _sync_provider(placement: _Placement, want: Desired, created: int | None = None) -> None:
    """One provider's inventories, traits and aggregates; each read fresh, written if different
    (a 409 from any write restarts the provider from its reads). ``created``: the generation of
    a provider just created, known to hold nothing, so nothing is read (half the requests of a
    first sync); each write answers with the generation the next one needs."""
    base = f"/resource_providers/{want.uuid}"

    def read(what: str, empty: Any, generation: int | None) -> dict[str, Any]:
        if generation is None:
            return dict(placement.call("GET", f"{base}/{what}"))
        return {what: empty, "resource_provider_generation": generation}

    current = read("inventories", {}, created)
    generation = current["resource_provider_generation"]
    if current["inventories"] != want.inventories:
        generation = placement.call("PUT", f"{base}/inventories", {
            "resource_provider_generation": generation, "inventories": want.inventories,
        })["resource_provider_generation"]  # fmt: skip
    traits = read("traits", [], None if created is None else generation)
    generation = traits["resource_provider_generation"]
    if set(traits["traits"]) != want.traits:
        generation = placement.call("PUT", f"{base}/traits", {
            "resource_provider_generation": generation, "traits": sorted(want.traits),
        })["resource_provider_generation"]  # fmt: skip
    aggregates = read("aggregates", [], None if created is None else generation)
    if set(aggregates["aggregates"]) != want.aggregates:
        placement.call("PUT", f"{base}/aggregates", {
            "resource_provider_generation": aggregates["resource_provider_generation"],
            "aggregates": sorted(want.aggregates),
        })  # fmt: skip


def _our_consumers(placement: _Placement, rp_uuid: str) -> dict[str, dict[str, int]]:
    """The standalone consumers holding use on the provider, with what they hold."""
    held = placement.call("GET", f"/resource_providers/{rp_uuid}/allocations")["allocations"]
    ours = {consumer_uuid(rp_uuid, n) for n in range(len(held))}
    return {c: a.get("resources", {}) for c, a in held.items() if c in ours}


def _sync_consumer(
    placement: _Placement, want: Desired, options: SyncOptions, created: bool = False
) -> None:
    """The consumers holding the provider's use; for a provider just ``created`` none exist
    yet (new consumers have no generation), so nothing is read unless a write conflicts."""
    used = {rc: n for rc, n in want.used.items() if rc in want.inventories}
    parts = consumer_parts(used, want.inventories)

    def step(retry: bool) -> None:
        known = created and not retry
        held = {} if known else _our_consumers(placement, want.uuid)
        wanted = {consumer_uuid(want.uuid, n): part for n, part in enumerate(parts)}
        for consumer in sorted(set(held) - set(wanted)):
            placement.call("DELETE", f"/allocations/{consumer}", ok=(404,))
        for consumer, part in wanted.items():
            if held.get(consumer) == part:
                continue
            current = {} if known else placement.call("GET", f"/allocations/{consumer}")
            placement.call("PUT", f"/allocations/{consumer}", {
                "allocations": {want.uuid: {"resources": part}},
                "consumer_generation": current.get("consumer_generation"),
                "project_id": options.project_id, "user_id": options.user_id,
                "consumer_type": CONSUMER_TYPE,
            })  # fmt: skip

    _retrying(placement, placement.result, step)
