"""The query API's in-memory candidate index answers exactly as the candidates SQL does.

A varied fleet (unit limits, step sizes, states, kinds, traits, instance types, a stale target)
is searched with a few hundred seeded random queries, through the index and through
:func:`exporters._queries.candidates`, on SQLite and PostgreSQL; the index must also follow
collections stored after it was built.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from exporters._candidates import CandidateIndex, target_generations
from exporters._queries import CandidateQuery, candidates, target_statuses
from resmon.contract import HostReport, HostState, ProviderKind
from resmon.contract.testing import fake_report
from resmon.store import Store

from .conftest import record

TRAITS = ("HW_CPU_X86_AVX2", "HW_CPU_X86_AVX512F", "COMPUTE_STATUS_DISABLED")
CLASSES = ("VCPU", "MEMORY_MB", "DISK_GB")


def varied_host(rng: random.Random, host_id: str, target: str) -> HostReport:
    hv_type, arch = rng.choice((("kvm", "x86_64"), ("qemu", "x86_64"), ("qemu", "aarch64")))
    vcpus = rng.choice((2, 4, 8, 16, 32))
    report = fake_report(
        host_id, target=target, vcpus=vcpus, memory_mib=rng.choice((4096, 8192, 16384)),
        disk_gib=rng.choice((50, 100, 200)), hv_type=hv_type, arch=arch,
        traits=tuple(t for t in TRAITS if rng.random() < 0.5),
        used_vcpus=rng.randrange(vcpus * 4), used_memory_mib=rng.randrange(4096),
    )  # fmt: skip
    for inv in report.inventories:
        # Ties on free are common (same sizes), so the row-id tie break is exercised too.
        inv.min_unit = rng.choice((1, 1, 2))
        inv.max_unit = rng.choice((inv.total, 64, 1 << 20))
        inv.step_size = rng.choice((1, 1, 2, 4))
    if rng.random() < 0.1:
        report.state = rng.choice(list(HostState))
    if rng.random() < 0.05:
        report.provider_kind = ProviderKind.CLUSTER
    return report


def populate(store: Store, rng: random.Random) -> None:
    for t in range(5):
        name = f"t{t}"
        record(store, name, [varied_host(rng, f"{name}-h{i}", name) for i in range(40)])
    record(store, "t4", [], error_kind="unreachable", error_message="gone")  # stale


def random_query(rng: random.Random) -> CandidateQuery:
    classes = rng.sample(CLASSES, rng.randint(1, 3))
    amounts = {"VCPU": (1, 2, 3, 4, 8, 64), "MEMORY_MB": (512, 1024, 4096, 9000),
               "DISK_GB": (1, 10, 40, 100, 150)}  # fmt: skip
    traits = rng.sample(TRAITS, rng.randint(0, 2))
    split = rng.randint(0, len(traits))
    instance = rng.choice(
        (None, ("x86_64", "kvm", "hvm"), ("x86_64", "qemu", "hvm"), ("aarch64", "qemu", "hvm"))
    )
    return CandidateQuery(
        resources=tuple((rc, rng.choice(amounts[rc])) for rc in classes),
        required=frozenset(traits[:split]), forbidden=frozenset(traits[split:]),
        instance=instance, limit=rng.choice((1, 5, 50, 1000)),
        order=rng.choice(("most_free", "least_free")), include_stale=rng.random() < 0.3,
    )  # fmt: skip


@pytest.fixture
def fleet(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    s.upgrade()
    populate(s, random.Random(5))
    try:
        yield s
    finally:
        s.close()


def both(store: Store, index: CandidateIndex, query: CandidateQuery) -> tuple[list[int], list[int]]:
    """(pks from the index, pks from the SQL), with the staleness the API would apply."""
    with store.session() as session:
        targets = target_statuses(session)
        fresh = None if query.include_stale else [t.id for t in targets if not t.stale]
        from_index = [h.pk for h in index.search(session, query, targets)]
        from_sql = [c.host_pk for c in candidates(session, query, fresh)]
    return from_index, from_sql


def test_index_answers_as_the_sql_does(fleet: Store) -> None:
    index = CandidateIndex()
    rng = random.Random(1)
    nonempty = 0
    for _ in range(300):
        query = random_query(rng)
        from_index, from_sql = both(fleet, index, query)
        assert from_index == from_sql, query
        nonempty += bool(from_sql)
    assert nonempty > 100  # the queries really select hosts


def test_index_follows_stored_collections(fleet: Store) -> None:
    index = CandidateIndex()
    fresh_only = CandidateQuery(resources=(("VCPU", 1),), limit=1000)
    with_stale = CandidateQuery(resources=(("VCPU", 1),), limit=1000, include_stale=True)
    before = {query: both(fleet, index, query)[0] for query in (fresh_only, with_stale)}
    assert all(before.values())

    # t0 collected again with other hosts: the index must drop and add accordingly.
    rng = random.Random(7)
    record(fleet, "t0", [varied_host(rng, f"t0-new{i}", "t0") for i in range(10)])
    # t1 fails: its hosts are stale now, so they drop out unless include_stale.
    record(fleet, "t1", [], error_kind="timeout", error_message="slow")
    for query in (fresh_only, with_stale):
        from_index, from_sql = both(fleet, index, query)
        assert from_index == from_sql
        assert from_index != before[query]
    with fleet.session() as session:
        assert len(target_generations(session)) == 5


def test_a_collection_stored_while_loading_is_loaded_again(
    fleet: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import exporters._candidates as module

    load = module._load
    stored: list[str] = []

    def load_then_collect(session: Any, target_ids: list[int]) -> Any:
        out = load(session, target_ids)
        if not stored:  # t0 is collected again right after its rows were read
            stored.append("t0")
            rng = random.Random(11)
            record(fleet, "t0", [varied_host(rng, f"t0-late{i}", "t0") for i in range(5)])
        return out

    monkeypatch.setattr(module, "_load", load_then_collect)
    index = CandidateIndex()
    query = CandidateQuery(resources=(("VCPU", 1),), limit=1000)
    from_index, from_sql = both(fleet, index, query)
    assert stored and from_index == from_sql
    with fleet.session() as session:
        late = {
            pk
            for (pk,) in session.execute(text("SELECT id FROM hosts WHERE host_id LIKE 't0-late%'"))
        }
    assert late and late & set(from_index) == late & set(from_sql)
