"""The query API's in-memory candidate index answers exactly as the candidates SQL does.

A varied fleet (unit limits, step sizes, states, kinds, traits, instance types, a stale target)
is searched with a few hundred seeded random queries, through the index and through
:func:`exporters._queries.candidates`, on SQLite and PostgreSQL; the index must also follow
collections stored after it was built.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from exporters._candidates import CandidateIndex, target_generations
from exporters._queries import CandidateQuery, candidates, target_statuses
from resmon.contract import HostReport, HostState, Inventory, ProviderKind
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
        from_index = [c.host.pk for c in index.search(session, query, targets)]
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


# -- sharing providers -------------------------------------------------------------------------


def shared_storage(
    rng: random.Random, host_id: str, target: str, shared_with: list[str]
) -> HostReport:
    """A datastore or shared pool as the collectors report one (see collectors/vmware
    ``_datastore_report`` and collectors/libvirt ``_pool_report``): DISK_GB only, the
    ``MISC_SHARES_VIA_AGGREGATE`` trait, the hosts that mount it in ``shared_with``."""
    total = rng.choice((100, 500, 2000))
    report = fake_report(host_id, target=target, traits=("MISC_SHARES_VIA_AGGREGATE",))
    report.provider_kind = ProviderKind.SHARED_STORAGE
    report.hypervisor = report.cpu = report.memory = None
    report.supported_instances = []
    report.inventories = [
        Inventory(resource_class="DISK_GB", total=total, used=rng.randrange(total),
                  max_unit=rng.choice((total, 120)), step_size=rng.choice((1, 1, 5)))
    ]  # fmt: skip
    if rng.random() < 0.3:
        report.traits.append("CUSTOM_VMWARE_DATASTORE_NFS")
    if rng.random() < 0.15:
        report.traits.append("COMPUTE_STATUS_DISABLED")
    if rng.random() < 0.1:
        report.state = HostState.MAINTENANCE
    report.shared_with = sorted(shared_with)
    return report


def populate_shared(store: Store, rng: random.Random) -> None:
    """Targets whose hosts often lack DISK_GB and mount zero, one or two shared stores."""
    for t in range(4):
        name = f"s{t}"
        hosts = [varied_host(rng, f"{name}-h{i}", name) for i in range(30)]
        for host in hosts:
            if rng.random() < 0.6:
                host.inventories = [i for i in host.inventories if i.resource_class != "DISK_GB"]
        stores = [
            shared_storage(rng, f"{name}-ds{d}", name,
                           [h.identity.host_id for h in rng.sample(hosts, rng.randint(1, 12))])
            for d in range(5)
        ]  # fmt: skip
        record(store, name, hosts + stores)
    record(store, "s3", [], error_kind="unreachable", error_message="gone")  # stale


def reference(store: Store) -> Any:
    """Placement's rules for sharing providers, by brute force over every provider row: a
    function of a query giving ``[(host pk, supplier pk per requested class)]`` in the API's
    order."""
    with store.session() as session:
        targets = {t.id: t for t in target_statuses(session)}
        providers = {
            row.id: row
            for row in session.execute(
                text("SELECT id, target_id, host_id, provider_kind, state, report FROM hosts")
            )
        }
        inventories = {
            (row.host_pk, row.resource_class): row
            for row in session.execute(text("SELECT * FROM inventories"))
        }
        traits: dict[int, set[str]] = {}
        for pk, trait in session.execute(text("SELECT host_pk, trait FROM host_traits")):
            traits.setdefault(pk, set()).add(trait)
        instances: dict[int, set[tuple[str, str, str]]] = {}
        for pk, *key in session.execute(
            text("SELECT host_pk, arch, hv_type, vm_mode FROM supported_instances")
        ):
            instances.setdefault(pk, set()).add(tuple(key))  # type: ignore[arg-type]

    def supplies(pk: int, resource_class: str, amount: int) -> bool:
        inv = inventories.get((pk, resource_class))
        return (
            inv is not None and inv.free >= amount and inv.min_unit <= amount <= inv.max_unit
            and amount % inv.step_size == 0
        )  # fmt: skip

    def answer(query: CandidateQuery) -> list[tuple[int, tuple[int, ...]]]:
        return search(query, targets, providers, inventories, traits, instances, supplies)

    return answer


def search(query: CandidateQuery, targets: Any, providers: Any, inventories: Any, traits: Any,
           instances: Any, supplies: Any) -> list[tuple[int, tuple[int, ...]]]:  # fmt: skip
    answers: list[tuple[tuple[int, int, int], tuple[int, tuple[int, ...]]]] = []
    for pk, host in sorted(providers.items()):
        if host.provider_kind != "compute_host" or host.state != "up":
            continue
        if not query.include_stale and targets[host.target_id].stale:
            continue
        if query.instance is not None and query.instance not in instances.get(pk, set()):
            continue
        attached = sorted(
            spk for spk, s in providers.items()
            if s.provider_kind == "shared_storage" and s.state == "up"
            and s.target_id == host.target_id
            and host.host_id in _report(s.report).get("shared_with", [])
        )  # fmt: skip
        options = [
            [p for p in (pk, *attached) if supplies(p, rc, amount)]
            for rc, amount in query.resources
        ]
        for sources in itertools.product(*options):
            union = set(traits.get(pk, set())).union(*(traits.get(s, set()) for s in sources))
            if not query.required <= union or not query.forbidden.isdisjoint(union):
                continue
            first = inventories[(sources[0], query.resources[0][0])]
            answers.append(((first.free, first.id, pk), (pk, sources)))
    answers.sort(key=lambda a: a[0], reverse=query.order == "most_free")
    return [answer for _, answer in answers[: query.limit]]


def _report(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else json.loads(value)  # type: ignore[no-any-return]


@pytest.fixture
def shared_fleet(database_url: str) -> Iterator[Store]:
    s = Store(database_url)
    s.upgrade()
    populate_shared(s, random.Random(3))
    try:
        yield s
    finally:
        s.close()


def test_index_answers_with_sharing_providers_as_placement_would(shared_fleet: Store) -> None:
    index = CandidateIndex()
    rng = random.Random(2)
    expected = reference(shared_fleet)
    with_shared = both_kinds = 0
    for _ in range(300):
        query = random_query(rng)
        with shared_fleet.session() as session:
            found = index.search(session, query, target_statuses(session))
        got = [(c.host.pk, tuple(s.pk for s in c.sources)) for c in found]
        assert got == expected(query), query
        shared_hosts = {pk for pk, sources in got if any(s != pk for s in sources)}
        local_hosts = {pk for pk, sources in got if all(s == pk for s in sources)}
        with_shared += bool(shared_hosts)
        both_kinds += bool(shared_hosts & local_hosts)
    # The sample really exercises sharing, and hosts answered both locally and shared.
    assert with_shared > 50 and both_kinds > 10


def test_a_host_without_disk_is_a_candidate_through_its_datastore(database_url: str) -> None:
    store = Store(database_url)
    store.upgrade()
    rng = random.Random(0)
    diskless = fake_report("esx-0", target="vc", vcpus=16, memory_mib=65536)
    diskless.inventories = [i for i in diskless.inventories if i.resource_class != "DISK_GB"]
    local = fake_report("kvm-0", target="vc", vcpus=16, memory_mib=65536, disk_gib=100)
    datastore = shared_storage(rng, "datastore-1", "vc", ["esx-0", "kvm-0"])
    datastore.traits = ["MISC_SHARES_VIA_AGGREGATE"]
    datastore.state = HostState.UP
    datastore.inventories = [Inventory(resource_class="DISK_GB", total=1000, used=100)]
    record(store, "vc", [diskless, local, datastore])
    query = CandidateQuery(resources=(("VCPU", 4), ("MEMORY_MB", 8192), ("DISK_GB", 40)))
    with store.session() as session:
        found = CandidateIndex().search(session, query, target_statuses(session))
    answers = sorted((c.host.host_id, [s.host_id for s in c.sources]) for c in found)
    assert answers == [
        ("esx-0", ["esx-0", "esx-0", "datastore-1"]),
        ("kvm-0", ["kvm-0", "kvm-0", "datastore-1"]),
        ("kvm-0", ["kvm-0", "kvm-0", "kvm-0"]),
    ]
    store.close()
