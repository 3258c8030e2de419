"""The contract boundary: which errors cross, what the core does with everything else."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from resmon.contract import (
    Collector,
    HostReport,
    IncompatibleContract,
    Target,
)
from resmon.contract.testing import FakeCollector, fake_report
from resmon.registry import (
    CollectorNotFound,
    available_collectors,
    check_contract_version,
    load_collector,
    register,
    unregister,
)
from resmon.runner import collect_target


@pytest.fixture(autouse=True)
def fake_registered() -> Iterator[None]:
    register(FakeCollector)
    yield
    unregister("fake")


def target(**options: Any) -> Target:
    return Target(name="t1", collector="fake", url="fake://3", options=options)


def test_success_returns_validated_reports() -> None:
    outcome, instance = collect_target(FakeCollector, target())
    assert outcome.ok and instance is not None
    assert [r.identity.host_id for r in outcome.reports] == ["host-0", "host-1", "host-2"]
    assert outcome.duration_s >= 0


@pytest.mark.parametrize("kind", ["unreachable", "timeout", "invalid_native_data", "unsupported"])
def test_contract_errors_keep_their_kind(kind: str) -> None:
    outcome, instance = collect_target(FakeCollector, target(fail=kind))
    assert not outcome.ok and instance is None
    assert outcome.error_kind == kind
    assert outcome.reports == []


def test_any_other_exception_becomes_contract_violation(caplog: pytest.LogCaptureFixture) -> None:
    outcome, _ = collect_target(FakeCollector, target(crash=True))
    assert outcome.error_kind == "contract_violation"
    assert "collector 'fake'" in (outcome.error_message or "")
    assert "KeyError" in (outcome.error_message or "")
    assert any(getattr(r, "collector", None) == "fake" for r in caplog.records)


def test_report_breaking_the_schema_is_rejected_with_reason() -> None:
    bad = fake_report("h").model_dump(mode="json")
    bad["memory"]["total_bytes"] = -1
    outcome, _ = collect_target(FakeCollector, target(reports=[bad]))
    # The fake builds HostReport itself, so pydantic refuses inside collect().
    assert outcome.error_kind == "invalid_report"
    assert "memory.total_bytes" in (outcome.error_message or "")


class _Liar(FakeCollector):
    name = "liar"
    returned: ClassVar[object] = None

    def collect(self) -> list[HostReport]:
        return self.returned  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        ({"not": "a list"}, "not a list of HostReport"),
        ([{"identity": {}}], "dict among its reports"),
    ],
)
def test_wrong_return_types_are_contract_violations(returned: object, expected: str) -> None:
    _Liar.returned = returned
    outcome, _ = collect_target(_Liar, target())
    assert outcome.error_kind == "contract_violation"
    assert expected in (outcome.error_message or "")


def test_report_naming_another_target_is_a_violation() -> None:
    _Liar.returned = [fake_report("h", target="someone-else")]
    outcome, _ = collect_target(_Liar, target())
    assert outcome.error_kind == "contract_violation"


def test_report_bypassing_validation_is_caught() -> None:
    sneaky = fake_report("h", target="t1")
    sneaky.memory.total_bytes = -5  # type: ignore[union-attr]  (no validate_assignment)
    _Liar.returned = [sneaky]
    outcome, _ = collect_target(_Liar, target())
    assert outcome.error_kind == "invalid_report"


def test_duplicate_providers_are_rejected() -> None:
    _Liar.returned = [fake_report("h", target="t1"), fake_report("h", target="t1")]
    outcome, _ = collect_target(_Liar, target())
    assert outcome.error_kind == "invalid_report"
    assert "'h' reported twice" in (outcome.error_message or "")


def test_soft_invariants_become_anomalies_not_failures() -> None:
    over = fake_report("h", target="t1", vcpus=2, used_vcpus=100, arch="weird64")
    _Liar.returned = [over]
    outcome, _ = collect_target(_Liar, target())
    assert outcome.ok
    codes = {a.code for a in outcome.anomalies[("t1", "h")]}
    assert {"inventory.used_exceeds_capacity", "vocabulary.arch"} <= codes


class _Future(FakeCollector):
    name = "future"
    contract_version = "2.0"


class _Minor(FakeCollector):
    name = "minor"
    contract_version = "1.7"


def test_contract_major_2_is_refused_naming_both_versions() -> None:
    with pytest.raises(IncompatibleContract) as info:
        check_contract_version(_Future)
    message = str(info.value)
    assert "'future'" in message and "2.0" in message and "1.x" in message


def test_contract_newer_minor_is_accepted() -> None:
    check_contract_version(_Minor)


def test_in_tree_collectors_are_entry_points() -> None:
    assert {"libvirt", "vmware", "hyperv"} <= set(available_collectors())


def test_unknown_collector_is_named() -> None:
    with pytest.raises(CollectorNotFound, match="'nope'"):
        load_collector("nope")


def test_registry_refuses_non_collectors() -> None:
    assert issubclass(load_collector("fake"), Collector)
