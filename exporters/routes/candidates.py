"""``/v1/candidates``: where an instance of the given size and kind could go."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from .._api_errors import ERRORS
from .._api_models import CandidateList
from .._candidates import candidates_body
from .._params import parse_instance, parse_required, parse_resources
from .._queries import CandidateQuery
from ._common import MAX_LIMIT, ApiContext, context

__all__ = ["router"]

router = APIRouter(tags=["v1"])


@router.get("/v1/candidates", response_model=CandidateList, responses=ERRORS)
def list_candidates(
    request: Request,
    ctx: Annotated[ApiContext, Depends(context)],
    resources: Annotated[
        str, Query(max_length=4096, description="Placement syntax: VCPU:4,MEMORY_MB:8192")
    ],
    required: Annotated[
        list[str] | None,
        Query(max_length=4096, description="Traits: HW_CPU_X86_AVX2,!COMPUTE_STATUS_DISABLED"),
    ] = None,
    instance: Annotated[
        str | None,
        Query(max_length=255, description="ARCH/HV_TYPE/VM_MODE, e.g. x86_64/kvm/hvm"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    order: Literal["most_free", "least_free"] = "most_free",
    include_stale: Annotated[
        bool, Query(description="Also hosts of stale or failed targets")
    ] = False,
) -> CandidateList:
    """Allocation requests that can take the resources, traits and instance type asked
    for: an up compute host, plus for classes it lacks (or as an alternative to its own) a
    sharing provider it is attached to, as Placement's sharing providers do.

    Ordered by the free amount of the first resource class at the provider that supplies
    it (``most_free`` spreads, ``least_free`` packs); ties in a stable order.
    """
    query = CandidateQuery(
        resources=parse_resources(resources),
        required=parse_required(required or [])[0],
        forbidden=parse_required(required or [])[1],
        instance=parse_instance(instance) if instance is not None else None,
        limit=limit, order=order, include_stale=include_stale,
    )  # fmt: skip
    with ctx.store.session() as session:
        targets = ctx.statuses(session)
        # Encoded straight to JSON: building models for hundreds of candidates would cost
        # more than the search; CandidateList documents the shape and the schemathesis test
        # checks the answers against it.
        body = ctx.answer_cache.answer(
            targets.values(), ("v1", request.url.query),
            lambda: candidates_body(
                ctx.candidate_index.search(session, query, targets.values()),
                query.resources, targets,
            ),
        )  # fmt: skip
    return Response(body, media_type="application/json")  # type: ignore[return-value]
