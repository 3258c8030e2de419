"""A read-only, OpenStack Placement-compatible view of the store, mounted under ``/placement``.

Point a Placement client's endpoint at ``<resmon>/placement`` (osc-placement, openstacksdk, a
scheduler) and it reads resmon's providers and allocation candidates as it would Placement's.

Microversions 1.0 to 1.39 are accepted in ``OpenStack-API-Version: placement 1.x`` (``latest``
is 1.39; no header is 1.0), with the response shapes of the version asked for: allocation
requests as a list before 1.12 and keyed by provider after; ``traits`` in provider summaries
from 1.17; parent and root providers from 1.14 (providers) and 1.29 (summaries); ``mappings``
from 1.34; ``resource_provider_generation`` in aggregates from 1.19. A parameter is accepted
from the version that introduced it (``limit`` 1.16, ``required`` 1.17 providers 1.18,
forbidden traits 1.22, ``member_of`` 1.3 providers 1.21 candidates, ``in_tree`` 1.14). Other
versions get Placement's 406 and a malformed header its 400. Numbered request groups
(``resources1``…), ``root_required``, ``same_subtree`` and ``in:`` trait lists are refused
with a 400 naming them: resmon's providers are single-provider trees.

The model, and why:

- Providers are the compute hosts and the shared-storage providers. Their UUIDs are stable:
  uuid5 of the target and the host id. Every host is the root of its own tree: a vCenter
  cluster is not its hosts' parent here, because a cluster's totals would double count its
  hosts, and a sharing provider serves a whole tree, so a datastore mounted by one host of a
  cluster would be offered to all of them. Clusters are left out.
- A sharing provider has ``MISC_SHARES_VIA_AGGREGATE`` and one aggregate (uuid5 of its
  target and id), which the hosts of its ``shared_with`` are members of too.
- ``generation`` is the id of the collection run that stored the provider's target.
- Allocation candidates come from the candidate index (up hosts of fresh targets), with
  Placement's rules for sharing providers; an answer made only of a sharing provider's
  resources is listed once, with that provider's traits alone deciding (as Placement does;
  resmon's own ``/v1/candidates`` always counts the host's traits, a candidate being a host).
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import os_resource_classes
import os_traits
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from resmon.store import Store, models

from ._answer_cache import AnswerCache
from ._candidates import CandidateIndex, IndexedCandidate, IndexedHost
from ._params import parse_required, parse_resources
from ._queries import CandidateQuery, TargetStatus, inventories_of
from ._tables import HOSTS as _H
from ._tables import TRAITS as _TRAITS
from .errors import ApiError

__all__ = [
    "MAX_MICROVERSION",
    "MIN_MICROVERSION",
    "aggregate_uuid",
    "placement_router",
    "provider_uuid",
]

MIN_MICROVERSION = (1, 0)
MAX_MICROVERSION = (1, 39)
#: Namespace of resmon's provider and aggregate UUIDs (uuid5 of a fixed name, never changed).
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "resmon:placement")
_HEADER = "openstack-api-version"
_VERSION = re.compile(r"^([1-9][0-9]*)\.([0-9]+)$")
_CODE = "placement.undefined_code"
_KINDS = ("compute_host", "shared_storage")

#: os-traits' standard traits (listing them walks the package: once, not per request).
_STANDARD_TRAITS = frozenset(os_traits.get_traits())
#: Largest number of allocation requests computed when the query sets no limit.
_ALL = 100_000


@functools.lru_cache(maxsize=1 << 16)
def provider_uuid(target: str, host_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"provider\x00{target}\x00{host_id}"))


def aggregate_uuid(target: str, sharer_host_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"aggregate\x00{target}\x00{sharer_host_id}"))


class PlacementError(Exception):
    """An error answered in Placement's shape."""

    def __init__(self, status: int, title: str, detail: str, *, version_error: bool = False):
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.version_error = version_error


def _bad(detail: str) -> PlacementError:
    return PlacementError(400, "Bad Request", detail)


def _error_body(exc: PlacementError, request_id: str) -> dict[str, Any]:
    error: dict[str, Any] = {"status": exc.status, "title": exc.title, "detail": exc.detail,
                             "request_id": request_id}  # fmt: skip
    if exc.version_error:
        # As Placement's microversion middleware answers: no code; a 406 names the range.
        if exc.status == 406:
            error["max_version"] = "{}.{}".format(*MAX_MICROVERSION)
            error["min_version"] = "{}.{}".format(*MIN_MICROVERSION)
    else:
        error["code"] = _CODE
    return {"errors": [error]}


def _microversion(request: Request) -> tuple[int, int]:
    """The version asked for, Placement's way: none is the minimum, ``latest`` the maximum."""
    header = request.headers.get(_HEADER)
    if header is None:
        return MIN_MICROVERSION
    value = None
    for part in header.split(","):
        service, _, version = part.strip().partition(" ")
        if service.lower() == "placement":
            value = version.strip()
    if value is None:
        return MIN_MICROVERSION
    if value == "latest":
        return MAX_MICROVERSION
    match = _VERSION.match(value)
    if match is None:
        raise PlacementError(
            400,
            "Bad Request",
            f"Invalid microversion: invalid version string: {value}",
            version_error=True,
        )
    asked = (int(match.group(1)), int(match.group(2)))
    if not MIN_MICROVERSION <= asked <= MAX_MICROVERSION:
        raise PlacementError(
            406,
            "Not Acceptable",
            f"Invalid microversion: Unacceptable version header: {value}",
            version_error=True,
        )
    return asked


@dataclass(frozen=True)
class _Provider:
    pk: int
    target: str
    host_id: str
    name: str
    kind: str
    generation: int
    uuid: str


@dataclass
class _Fleet:
    """Providers and aggregates as Placement shows them, read for one request."""

    providers: dict[str, _Provider]  # by uuid
    by_pk: dict[int, _Provider]
    aggregates: dict[int, list[str]]  # provider pk -> aggregate uuids


def _fleet(session: Session, targets: dict[int, TargetStatus]) -> _Fleet:
    rows = session.execute(
        select(_H.c.id, _H.c.target_id, _H.c.host_id, _H.c.hostname, _H.c.provider_kind)
        .where(_H.c.provider_kind.in_(_KINDS))
        .order_by(_H.c.id)
    ).all()
    providers: dict[str, _Provider] = {}
    by_pk: dict[int, _Provider] = {}
    key_to_pk: dict[tuple[int, str], int] = {}
    for pk, target_id, host_id, _hostname, kind in rows:
        target = targets[target_id]
        provider = _Provider(
            pk=pk, target=target.name, host_id=host_id,
            # Placement names are unique: a hostname is not, the target and host id are.
            name=f"{target.name}:{host_id}",
            kind=kind, generation=target.last_run_id or 0,
            uuid=provider_uuid(target.name, host_id),
        )  # fmt: skip
        providers[provider.uuid] = by_pk[pk] = provider
        key_to_pk[(target_id, host_id)] = pk
    aggregates: dict[int, list[str]] = {}
    sharers = [pk for pk, p in by_pk.items() if p.kind == "shared_storage"]
    if sharers:
        for pk, target_id, report in session.execute(
            select(_H.c.id, _H.c.target_id, _H.c.report).where(_H.c.id.in_(sharers))
        ):
            aggregate = aggregate_uuid(targets[target_id].name, by_pk[pk].host_id)
            aggregates.setdefault(pk, []).append(aggregate)
            for host_id in report.get("shared_with") or ():
                host_pk = key_to_pk.get((target_id, host_id))
                if host_pk is not None:
                    aggregates.setdefault(host_pk, []).append(aggregate)
    return _Fleet(providers=providers, by_pk=by_pk, aggregates=aggregates)


def _traits_of(session: Session, pks: Iterable[int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {pk: [] for pk in pks}
    if out:
        for pk, trait in session.execute(
            select(_TRAITS.c.host_pk, _TRAITS.c.trait)
            .where(_TRAITS.c.host_pk.in_(list(out)))
            .order_by(_TRAITS.c.host_pk, _TRAITS.c.trait)
        ):
            out[pk].append(trait)
    return out


_INVENTORY_FIELDS = ("total", "reserved", "min_unit", "max_unit", "step_size", "allocation_ratio")


def _provider_json(provider: _Provider, version: tuple[int, int], base: str) -> dict[str, Any]:
    link = f"{base}/resource_providers/{provider.uuid}"
    links = [{"rel": "self", "href": link}, {"rel": "inventories", "href": f"{link}/inventories"},
             {"rel": "usages", "href": f"{link}/usages"}]  # fmt: skip
    if version >= (1, 1):
        links.append({"rel": "aggregates", "href": f"{link}/aggregates"})
    if version >= (1, 6):
        links.append({"rel": "traits", "href": f"{link}/traits"})
    if version >= (1, 11):
        links.append({"rel": "allocations", "href": f"{link}/allocations"})
    body: dict[str, Any] = {
        "uuid": provider.uuid, "name": provider.name, "generation": provider.generation,
        "links": links,
    }  # fmt: skip
    if version >= (1, 14):
        body["parent_provider_uuid"] = None
        body["root_provider_uuid"] = provider.uuid
    return body


def _require(version: tuple[int, int], since: tuple[int, int], name: str) -> None:
    if version < since:
        raise _bad(
            f"Invalid query string parameters: {name!r} needs microversion "
            f"{since[0]}.{since[1]} or later"
        )


def _parse_traits(values: Sequence[str], version: tuple[int, int]) -> tuple[frozenset[str], ...]:
    for value in values:
        if value.startswith("in:") or ",in:" in value:
            raise _bad("required: 'in:' lists of traits are not supported by resmon")
        if "!" in value:
            _require(version, (1, 22), "forbidden traits (!TRAIT)")
    try:
        return parse_required(values)
    except ApiError as exc:
        raise _bad(exc.detail) from None


def _parse_member_of(
    values: Sequence[str], version: tuple[int, int]
) -> list[tuple[bool, set[str]]]:
    """Each ``member_of``: (forbidden, aggregate uuids); all must hold (several from 1.24)."""
    if len(values) > 1:
        _require(version, (1, 24), "member_of given more than once")
    out = []
    for value in values:
        if "," in value and not value.startswith(("in:", "!in:")):
            raise _bad(f"Multiple values for 'member_of' must be prefixed with the 'in:' or "
                       f"'!in:' keyword using the valid microversion. Got: {value}")  # fmt: skip
        forbidden = value.startswith("!")
        if forbidden:
            _require(version, (1, 32), "forbidden aggregates (member_of=!)")
            value = value[1:]
        value = value.removeprefix("in:")
        uuids = {part.strip() for part in value.split(",") if part.strip()}
        for item in uuids:
            try:
                uuid.UUID(item)
            except ValueError:
                raise _bad(f"Invalid query string parameters: Expected 'member_of' parameter "
                           f"to contain valid UUID(s). Got: {item}") from None  # fmt: skip
        out.append((forbidden, uuids))
    return out


def _member(aggregates: Iterable[str], member_of: list[tuple[bool, set[str]]]) -> bool:
    mine = set(aggregates)
    for forbidden, uuids in member_of:
        if forbidden == bool(mine & uuids):
            return False
    return True


def _parse_resources(value: str) -> tuple[tuple[str, int], ...]:
    try:
        return parse_resources(value)
    except ApiError as exc:
        raise _bad(f"Invalid resources query string parameter: {exc.detail}") from None


_ALLOWED_CANDIDATE_PARAMS = {
    "resources", "required", "member_of", "in_tree", "limit", "group_policy",
}  # fmt: skip
_ALLOWED_PROVIDER_PARAMS = {"name", "uuid", "member_of", "resources", "in_tree", "required"}


def _check_params(request: Request, allowed: set[str]) -> None:
    for name in request.query_params:
        if name not in allowed:
            raise _bad(
                f"Invalid query string parameters: {name!r} is not supported"
                + (" (numbered request groups are not supported by resmon)"
                   if re.match(r"^(resources|required|member_of)[0-9_a-zA-Z-]+$", name) else "")
            )  # fmt: skip


def placement_router(
    store: Store,
    candidate_index: CandidateIndex,
    statuses: Callable[[Session], dict[int, TargetStatus]],
    answer_cache: AnswerCache,
) -> APIRouter:
    """The routes of this module's docstring, to be mounted under ``/placement``."""
    router = APIRouter(include_in_schema=False)

    def answer(request: Request, build: Callable[[tuple[int, int]], Any], status: int = 200) -> Any:
        request_id = f"req-{uuid.uuid4()}"
        headers = {"x-openstack-request-id": request_id, "vary": _HEADER}
        try:
            version = _microversion(request)
            headers[_HEADER] = f"placement {version[0]}.{version[1]}"
            body = build(version)
        except PlacementError as exc:
            return JSONResponse(_error_body(exc, request_id), exc.status, headers=headers)
        if isinstance(body, bytes):  # already encoded
            return Response(body, status, headers=headers, media_type="application/json")
        return JSONResponse(body, status, headers=headers)

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/") + "/placement"

    def one_provider(session: Session, rp_uuid: str) -> tuple[_Fleet, _Provider]:
        fleet = _fleet(session, statuses(session))
        provider = fleet.providers.get(rp_uuid)
        if provider is None:
            raise PlacementError(
                404, "Not Found", f"No resource provider with uuid {rp_uuid} found"
            )
        return fleet, provider

    @router.get("/")
    def root(request: Request) -> Any:
        def build(_version: tuple[int, int]) -> Any:
            return {
                "versions": [{
                    "id": "v1.0", "status": "CURRENT",
                    "min_version": "{}.{}".format(*MIN_MICROVERSION),
                    "max_version": "{}.{}".format(*MAX_MICROVERSION),
                    "links": [{"rel": "self", "href": ""}],
                }]
            }  # fmt: skip

        return answer(request, build)

    @router.get("/resource_providers")
    def list_providers(request: Request) -> Any:
        def build(version: tuple[int, int]) -> Any:
            _check_params(request, _ALLOWED_PROVIDER_PARAMS)
            params = request.query_params
            member_of: list[tuple[bool, set[str]]] = []
            if "member_of" in params:
                _require(version, (1, 3), "member_of")
                member_of = _parse_member_of(params.getlist("member_of"), version)
            resources: tuple[tuple[str, int], ...] = ()
            if "resources" in params:
                _require(version, (1, 4), "resources")
                resources = _parse_resources(params["resources"])
            required = forbidden = frozenset[str]()
            if "required" in params:
                _require(version, (1, 18), "required")
                required, forbidden = _parse_traits(params.getlist("required"), version)
            if "in_tree" in params:
                _require(version, (1, 14), "in_tree")
            with store.session() as session:
                fleet = _fleet(session, statuses(session))
                providers = list(fleet.providers.values())
                if "name" in params:
                    providers = [p for p in providers if p.name == params["name"]]
                if "uuid" in params:
                    providers = [p for p in providers if p.uuid == params["uuid"]]
                if "in_tree" in params:
                    # Every provider is its own tree's root.
                    providers = [p for p in providers if p.uuid == params["in_tree"]]
                if member_of:
                    providers = [
                        p for p in providers if _member(fleet.aggregates.get(p.pk, ()), member_of)
                    ]
                if resources:
                    inventories = inventories_of(session, [p.pk for p in providers])
                    providers = [p for p in providers if _has(inventories[p.pk], resources)]
                if required or forbidden:
                    traits = _traits_of(session, [p.pk for p in providers])
                    providers = [
                        p for p in providers
                        if required <= set(traits[p.pk]) and forbidden.isdisjoint(traits[p.pk])
                    ]  # fmt: skip
            return {"resource_providers": [_provider_json(p, version, base(request))
                                           for p in providers]}  # fmt: skip

        return answer(request, build)

    @router.get("/resource_providers/{rp_uuid}")
    def show_provider(request: Request, rp_uuid: str) -> Any:
        def build(version: tuple[int, int]) -> Any:
            with store.session() as session:
                _, provider = one_provider(session, rp_uuid)
            return _provider_json(provider, version, base(request))

        return answer(request, build)

    @router.get("/resource_providers/{rp_uuid}/inventories")
    def provider_inventories(request: Request, rp_uuid: str) -> Any:
        def build(_version: tuple[int, int]) -> Any:
            with store.session() as session:
                _, provider = one_provider(session, rp_uuid)
                records = inventories_of(session, [provider.pk])[provider.pk]
            return {
                "resource_provider_generation": provider.generation,
                "inventories": {
                    rc: {field: record[field] for field in _INVENTORY_FIELDS}
                    for rc, record in records.items()
                },
            }

        return answer(request, build)

    @router.get("/resource_providers/{rp_uuid}/usages")
    def provider_usages(request: Request, rp_uuid: str) -> Any:
        def build(_version: tuple[int, int]) -> Any:
            with store.session() as session:
                _, provider = one_provider(session, rp_uuid)
                records = inventories_of(session, [provider.pk])[provider.pk]
            return {
                "resource_provider_generation": provider.generation,
                "usages": {rc: record["used"] for rc, record in records.items()},
            }

        return answer(request, build)

    @router.get("/resource_providers/{rp_uuid}/traits")
    def provider_traits(request: Request, rp_uuid: str) -> Any:
        def build(version: tuple[int, int]) -> Any:
            _require_route(version, (1, 6))
            with store.session() as session:
                _, provider = one_provider(session, rp_uuid)
                traits = _traits_of(session, [provider.pk])[provider.pk]
            return {"resource_provider_generation": provider.generation, "traits": traits}

        return answer(request, build)

    @router.get("/resource_providers/{rp_uuid}/aggregates")
    def provider_aggregates(request: Request, rp_uuid: str) -> Any:
        def build(version: tuple[int, int]) -> Any:
            _require_route(version, (1, 1))
            with store.session() as session:
                fleet, provider = one_provider(session, rp_uuid)
            body: dict[str, Any] = {"aggregates": sorted(fleet.aggregates.get(provider.pk, []))}
            if version >= (1, 19):
                body["resource_provider_generation"] = provider.generation
            return body

        return answer(request, build)

    @router.get("/traits")
    def list_traits(request: Request) -> Any:
        def build(version: tuple[int, int]) -> Any:
            _require_route(version, (1, 6))
            _check_params(request, {"name", "associated"})
            params = request.query_params
            with store.session() as session:
                associated = {t for (t,) in session.execute(select(_TRAITS.c.trait).distinct())}
            names = associated | _STANDARD_TRAITS
            if "associated" in params:
                flag = params["associated"].lower()
                if flag not in ("true", "false"):
                    raise _bad("The query parameter 'associated' only accepts 'true' or 'false'")
                names = associated if flag == "true" else names - associated
            name = params.get("name")
            if name is not None:
                if name.startswith("in:"):
                    names &= {n.strip() for n in name[3:].split(",")}
                elif name.startswith("startswith:"):
                    names = {n for n in names if n.startswith(name[len("startswith:") :])}
                else:
                    raise _bad(f"Badly formatted name parameter. Expected name query string "
                               f"parameter in form: ?name=[in|startswith]:[name1,name2|prefix]. "
                               f"Got: \"{name}\"")  # fmt: skip
            return {"traits": sorted(names)}

        return answer(request, build)

    @router.get("/resource_classes")
    def list_resource_classes(request: Request) -> Any:
        def build(version: tuple[int, int]) -> Any:
            _require_route(version, (1, 2))
            with store.session() as session:
                used = {
                    rc
                    for (rc,) in session.execute(select(models.Inventory.resource_class).distinct())
                }
            names = list(os_resource_classes.STANDARDS) + sorted(
                used - set(os_resource_classes.STANDARDS)
            )
            return {
                "resource_classes": [
                    {"name": name, "links": [{"rel": "self",
                     "href": f"{base(request)}/resource_classes/{name}"}]}
                    for name in names
                ]
            }  # fmt: skip

        return answer(request, build)

    @router.get("/allocation_candidates")
    def allocation_candidates(request: Request) -> Any:
        def build(version: tuple[int, int]) -> Any:
            _require_route(version, (1, 10))
            _check_params(request, _ALLOWED_CANDIDATE_PARAMS)
            params = request.query_params
            if "resources" not in params:
                raise _bad("Invalid query string parameters: 'resources' is a required property")
            resources = _parse_resources(params["resources"])
            limit = _ALL
            if "limit" in params:
                _require(version, (1, 16), "limit")
                if not params["limit"].isdigit() or int(params["limit"]) < 1:
                    raise _bad("Invalid query string parameters: 'limit' must be a positive "
                               "integer")  # fmt: skip
                limit = min(int(params["limit"]), _ALL)
            required = forbidden = frozenset[str]()
            if "required" in params:
                _require(version, (1, 17), "required")
                required, forbidden = _parse_traits(params.getlist("required"), version)
            member_of: list[tuple[bool, set[str]]] = []
            if "member_of" in params:
                _require(version, (1, 21), "member_of")
                member_of = _parse_member_of(params.getlist("member_of"), version)
            in_tree = None
            if "in_tree" in params:
                _require(version, (1, 31), "in_tree")
                in_tree = _parse_uuid("in_tree", params["in_tree"])
            if "group_policy" in params:
                _require(version, (1, 25), "group_policy")
            with store.session() as session:
                targets = statuses(session)

                def compute() -> bytes:
                    fleet = _fleet(session, targets) if member_of or in_tree else None
                    if required or forbidden:
                        _check_traits_exist(session, required | forbidden, fleet, member_of)
                    sharers = candidate_index.sharing_providers(session, targets.values())
                    query = CandidateQuery(
                        resources=resources, required=required, forbidden=forbidden, limit=limit
                    )
                    # Answers are taken from the index as they are found, until ``limit`` of
                    # them pass the filters; answers made only of a sharing provider's
                    # resources are listed on their own, after.
                    found = _placement_answers(
                        candidate_index.answers(
                            session, query, targets.values(), host_supplies=True
                        ),
                        sharers, query, targets,
                    )  # fmt: skip
                    requests = list(itertools.islice(
                        _allocation_requests(found, fleet, member_of, in_tree), limit
                    ))  # fmt: skip
                    return _candidates_body(requests, resources, targets, version)

                return answer_cache.answer(
                    targets.values(), ("placement", version, request.url.query), compute
                )

        return answer(request, build)

    return router


def _placement_answers(
    found: Iterable[IndexedCandidate],
    sharers: list[IndexedHost],
    query: CandidateQuery,
    targets: dict[int, TargetStatus],
) -> Iterator[IndexedCandidate]:
    """The index's answers in which the host supplies some class (``host_supplies``), then
    those made only of a sharing provider's resources, as Placement gives them: each stands on
    its own (its traits alone count, whichever hosts mount it), after the others."""
    yield from found
    for sharer in sharers:
        if targets[sharer.target_id].stale:
            continue
        if not all(sharer.supplies(rc, amount) for rc, amount in query.resources):
            continue
        if query.required <= sharer.traits and query.forbidden.isdisjoint(sharer.traits):
            yield IndexedCandidate(sharer, (sharer,) * len(query.resources))


def _parse_uuid(name: str, value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise _bad(f"Invalid query string parameters: Expected {name!r} parameter to be a "
                   f"format of uuid. Got: {value}") from None  # fmt: skip


def _check_traits_exist(
    session: Session,
    traits: frozenset[str],
    fleet: _Fleet | None,
    member_of: list[tuple[bool, set[str]]],
) -> None:
    """Placement answers a trait it does not know with a 400 (``TraitNotFound``), after it has
    found no provider in the ``member_of`` aggregates (then the answer is empty). It knows the
    standard traits and the custom ones created, here those some provider has."""
    unknown = set(traits) - _STANDARD_TRAITS
    if unknown:
        unknown -= {t for (t,) in session.execute(
            select(_TRAITS.c.trait).where(_TRAITS.c.trait.in_(sorted(unknown))).distinct()
        )}  # fmt: skip
    if not unknown:
        return
    wanted = [uuids for forbidden, uuids in member_of if not forbidden]
    if wanted and fleet is not None:
        if not any(
            all(set(aggs) & uuids for uuids in wanted) for aggs in fleet.aggregates.values()
        ):
            return
    raise _bad(f"No such trait(s): {', '.join(sorted(unknown))}.")


def _require_route(version: tuple[int, int], since: tuple[int, int]) -> None:
    if version < since:
        # Placement answers a route that does not exist at the version asked for with a 404.
        raise PlacementError(404, "Not Found", "The resource could not be found.")


def _has(records: dict[str, Any], resources: tuple[tuple[str, int], ...]) -> bool:
    """Placement's ``resources`` filter on providers: capacity left for each amount."""
    for resource_class, amount in resources:
        record = records.get(resource_class)
        if record is None or record["free"] < amount:
            return False
        if not record["min_unit"] <= amount <= record["max_unit"]:
            return False
        if amount % record["step_size"]:
            return False
    return True


def _allocation_requests(
    found: Iterable[IndexedCandidate],
    fleet: _Fleet | None,
    member_of: list[tuple[bool, set[str]]],
    in_tree: str | None = None,
) -> Iterator[IndexedCandidate]:
    """The answers without repeats (the same provider for every class), within ``member_of``
    and ``in_tree``: only answers made of that provider's tree, here the provider alone
    (Placement looks for sharing providers only without ``in_tree``)."""
    seen: set[tuple[int, ...]] = set()
    for candidate in found:
        # The classes and amounts are the query's: the suppliers' pks tell answers apart.
        key = tuple([source.pk for source in candidate.sources])
        if key in seen:
            continue
        if fleet is not None:
            providers = {candidate.host.pk: candidate.host}
            providers.update((source.pk, source) for source in candidate.sources)
            if not all(_member(fleet.aggregates.get(pk, ()), member_of) for pk in providers):
                continue
            if in_tree is not None and any(fleet.by_pk[pk].uuid != in_tree for pk in providers):
                continue
        seen.add(key)
        yield candidate


def _candidates_body(
    requests: list[IndexedCandidate],
    resources: tuple[tuple[str, int], ...],
    targets: dict[int, TargetStatus],
    version: tuple[int, int],
) -> bytes:
    """The ``/allocation_candidates`` body of ``version``, encoded as Starlette's JSONResponse
    would. Written as text: provider UUIDs, resource class names (os-resource-classes or
    CUSTOM_[A-Z0-9_]+, checked when parsed) and integers need no escaping, each provider's
    summary is encoded once and kept with it, and an answer in which the host
    supplies every class (the common case) is one template. Building and encoding dicts for a
    thousand answers cost more than finding them."""
    keyed, mapped = version >= (1, 12), version >= (1, 34)
    tier = f"summary:{version >= (1, 17):d}{version >= (1, 29):d}"
    all_resources = ",".join(f'"{rc}":{amount}' for rc, amount in resources)
    allocation_requests = []
    involved: dict[int, IndexedHost] = {}
    for candidate in requests:
        host, sources = candidate.host, candidate.sources
        involved[host.pk] = host
        if sources.count(host) == len(sources):
            u = _uuid(host, targets)
            per_provider = {u: all_resources}
        else:
            per_provider_parts: dict[str, list[str]] = {}
            for (resource_class, amount), source in zip(resources, sources, strict=True):
                involved[source.pk] = source
                per_provider_parts.setdefault(_uuid(source, targets), []).append(
                    f'"{resource_class}":{amount}'
                )
            per_provider = {u: ",".join(r) for u, r in per_provider_parts.items()}
        if keyed:
            allocations = "{" + ",".join(
                f'"{u}":{{"resources":{{{r}}}}}' for u, r in per_provider.items()
            ) + "}"  # fmt: skip
        else:
            allocations = "[" + ",".join(
                f'{{"resource_provider":{{"uuid":"{u}"}},"resources":{{{r}}}}}'
                for u, r in per_provider.items()
            ) + "]"  # fmt: skip
        text = '{"allocations":' + allocations
        if mapped:
            text += ',"mappings":{"":[' + ",".join(f'"{u}"' for u in sorted(per_provider)) + "]}"
        allocation_requests.append(text + "}")
    summaries = [_summary(provider, targets, version, tier) for provider in involved.values()]
    return (
        '{"allocation_requests":[' + ",".join(allocation_requests)
        + '],"provider_summaries":{' + ",".join(summaries) + "}}"
    ).encode()  # fmt: skip


def _uuid(provider: IndexedHost, targets: dict[int, TargetStatus]) -> str:
    return provider_uuid(targets[provider.target_id].name, provider.host_id)


def _summary(
    provider: IndexedHost, targets: dict[int, TargetStatus], version: tuple[int, int], tier: str
) -> str:
    """The provider's entry in ``provider_summaries`` at ``version`` (kept per ``tier``, the
    versions that change it)."""
    cached = provider.summary_fragments.get(tier)
    if cached is None:
        u = _uuid(provider, targets)
        cached = f'"{u}":{{"resources":' + json.dumps(provider.usage, separators=(",", ":"))
        if version >= (1, 17):
            cached += ',"traits":' + json.dumps(
                sorted(provider.traits), ensure_ascii=False, separators=(",", ":")
            )
        if version >= (1, 29):
            cached += f',"parent_provider_uuid":null,"root_provider_uuid":"{u}"'
        cached += "}"
        provider.summary_fragments[tier] = cached
    return cached
