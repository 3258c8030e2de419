"""The contract kit: the test suites every collector must pass, and a fake collector.

It is also a pytest plugin (entry point ``pytest11``: installing resmon is enough), which gives
any test the fixtures ``golden_host`` and ``equivalence_check`` and has pytest show the kit's
failed assertions in detail. Use it from a collector's tests, in tree or in its own repository::

    class TestMyContract(CollectorContractSuite):
        collector_cls = MyCollector

        def make_target(self) -> Target: ...              # a reachable target
        def make_unreachable_target(self) -> Target: ...  # nothing listens there

    class TestMyEquivalence(EquivalenceSuite):
        collector_cls = MyCollector
        declared_differences = DIFFERENCES  # a Markdown table, see parse_declared_differences

        def golden_reports(self, variant, directory):
            ...  # describe GOLDEN_HOST natively under directory, return the collector's reports

pytest collects the ``test_*`` methods below for each subclass.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Self

import pytest

from ._collector import CONTRACT_VERSION, ENTRY_POINT_GROUP, Capability, Collector, Target
from ._errors import (
    CollectorError,
    InvalidNativeData,
    TargetTimeout,
    TargetUnreachable,
    UnsupportedTarget,
)
from ._golden import (
    DEFAULT_POLICY,
    GOLDEN_HOST,
    NOT_EXPRESSIBLE,
    VARIANTS,
    DeclaredDifference,
    GoldenGuest,
    GoldenHost,
    Variant,
    equivalence_problems,
    golden_view,
    parse_declared_differences,
    report_view,
)
from ._schema import (
    CollectorInfo,
    Cpu,
    HostIdentity,
    HostReport,
    Hypervisor,
    Inventory,
    Memory,
    ProviderKind,
    SupportedInstance,
)

__all__ = [
    "DEFAULT_POLICY",
    "GOLDEN_HOST",
    "NOT_EXPRESSIBLE",
    "VARIANTS",
    "CollectorContractSuite",
    "DeclaredDifference",
    "EquivalenceSuite",
    "FakeCollector",
    "GoldenGuest",
    "GoldenHost",
    "Variant",
    "equivalence_check",
    "equivalence_problems",
    "fake_report",
    "golden_host",
    "golden_view",
    "parse_declared_differences",
    "report_view",
]

_LOGGER = logging.getLogger("resmon.contract.testing")


class CollectorContractSuite:
    """Shared contract tests. Subclasses set ``collector_cls`` and the target factories."""

    collector_cls: ClassVar[type[Collector]]
    #: Whether the collector is expected to be registered as an entry point.
    expect_entry_point: ClassVar[bool] = True

    def make_target(self) -> Target:
        raise NotImplementedError

    def make_unreachable_target(self) -> Target:
        raise NotImplementedError

    def _collect(self, target: Target) -> list[HostReport]:
        collector = self.collector_cls.from_target(target, logger=_LOGGER)
        try:
            return collector.collect()
        finally:
            collector.close()

    def test_declares_name_version_and_capabilities(self) -> None:
        cls = self.collector_cls
        assert isinstance(cls.name, str) and cls.name
        assert isinstance(cls.version, str) and cls.version
        assert all(isinstance(c, Capability) for c in cls.capabilities)

    def test_implements_contract_major_1(self) -> None:
        major = self.collector_cls.contract_version.split(".")[0]
        assert major == CONTRACT_VERSION.split(".")[0]

    def test_registered_as_entry_point(self) -> None:
        if not self.expect_entry_point:
            return
        names = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
        assert self.collector_cls.name in names, f"{self.collector_cls.name} has no entry point"
        module, _, attr = names[self.collector_cls.name].partition(":")
        assert attr == self.collector_cls.__name__

    def test_collect_returns_valid_reports(self) -> None:
        target = self.make_target()
        reports = self._collect(target)
        assert isinstance(reports, list) and reports, "a reachable target yields reports"
        for report in reports:
            assert isinstance(report, HostReport)
            again = HostReport.model_validate_json(report.model_dump_json())
            assert again == report, "reports survive a JSON round trip unchanged"
            assert report.identity.target == target.name
            assert report.collector.name == self.collector_cls.name
            assert report.collector.version == self.collector_cls.version
            assert report.collected_at.tzinfo is not None

    def test_report_keys_are_unique_and_parents_resolve(self) -> None:
        reports = self._collect(self.make_target())
        ids = [r.identity.host_id for r in reports]
        assert len(ids) == len(set(ids))
        for report in reports:
            if report.parent_id is not None:
                assert report.parent_id in ids
            for sharer in report.shared_with:
                assert sharer in ids

    def test_compute_hosts_fill_declared_capabilities(self) -> None:
        reports = self._collect(self.make_target())
        hosts = [r for r in reports if r.provider_kind is ProviderKind.COMPUTE_HOST]
        assert hosts, "a target has at least one compute host"
        caps = self.collector_cls.capabilities
        for host in hosts:
            assert host.hypervisor is not None and host.cpu is not None
            assert host.memory is not None and host.memory.total_bytes > 0
            assert {"VCPU", "MEMORY_MB"} <= {i.resource_class for i in host.inventories} or (
                host.state != "up"
            )
            if Capability.SUPPORTED_INSTANCES in caps:
                assert host.supported_instances, f"{host.identity.host_id}: no instances"
        if Capability.NUMA in caps:
            assert any(h.numa_cells for h in hosts), "NUMA declared but no host has cells"

    def test_collect_is_repeatable(self) -> None:
        target = self.make_target()
        collector = self.collector_cls.from_target(target, logger=_LOGGER)
        try:
            first = collector.collect()
            second = collector.collect()
        finally:
            collector.close()
        assert [r.identity.host_id for r in first] == [r.identity.host_id for r in second]

    def test_close_twice_is_harmless(self) -> None:
        collector = self.collector_cls.from_target(self.make_target(), logger=_LOGGER)
        collector.collect()
        collector.close()
        collector.close()

    def test_unreachable_target_raises_contract_error(self) -> None:
        target = self.make_unreachable_target()
        try:
            self._collect(target)
        except (TargetUnreachable, TargetTimeout) as exc:
            assert str(exc), "errors carry a message"
        else:
            raise AssertionError("an unreachable target must raise TargetUnreachable")

    def test_only_contract_errors_escape_bad_options(self) -> None:
        good = self.make_target()
        bad = good.model_copy(update={"options": {"no_such_option_resmon": 1}})
        try:
            self._collect(bad)
        except UnsupportedTarget as exc:
            assert "no_such_option_resmon" in str(exc)
        else:
            raise AssertionError("an unknown option must raise UnsupportedTarget naming it")


class EquivalenceSuite:
    """The golden host through one collector must read as :data:`GOLDEN_HOST` does.

    Subclasses set ``collector_cls`` and ``declared_differences`` (Markdown holding the table of
    differences that must exist, see :func:`parse_declared_differences`) and implement
    :meth:`golden_reports`. Override :meth:`apply_policy` to also compare the figures after the
    core's policy (resmon's own suite does).
    """

    collector_cls: ClassVar[type[Collector]]
    declared_differences: ClassVar[str] = ""

    def golden_reports(self, variant: Variant, directory: Path) -> list[HostReport] | None:
        """Write the golden host in ``variant`` natively under ``directory``, run the collector
        on it, and return its reports; None when the hypervisor cannot be in that state."""
        raise NotImplementedError

    def apply_policy(self, reports: list[HostReport]) -> list[HostReport] | None:
        """The reports after the core's default policy, or None to compare facts only."""
        return None

    def collect(self, target: Target) -> list[HostReport]:
        """Run the collector once on ``target`` (a helper for :meth:`golden_reports`)."""
        collector = self.collector_cls.from_target(target, logger=_LOGGER)
        try:
            return collector.collect()
        finally:
            collector.close()

    @pytest.mark.parametrize("variant", VARIANTS)
    def test_reads_as_the_golden_host(self, variant: Variant, tmp_path: Path) -> None:
        declared = parse_declared_differences(self.declared_differences)
        reports = self.golden_reports(variant, tmp_path)
        view = None
        after_policy = False
        if reports is not None:
            hosts = [r for r in reports if r.provider_kind is ProviderKind.COMPUTE_HOST]
            assert len(hosts) == 1, f"the golden host gives one compute host, not {len(hosts)}"
            settled = self.apply_policy(reports)
            after_policy = settled is not None
            if settled is not None:
                hosts = [r for r in settled if r.key == hosts[0].key]
            view = report_view(hosts[0], after_policy=after_policy)
        problems = equivalence_problems(
            view,
            collector=self.collector_cls.name,
            variant=variant,
            declared=declared,
            after_policy=after_policy,
        )
        assert not problems, "\n".join(problems)


@pytest.fixture(scope="session")
def golden_host() -> GoldenHost:
    """The golden host's facts, to describe it in a collector's native format."""
    return GOLDEN_HOST


@pytest.fixture
def equivalence_check() -> Any:
    """``equivalence_check(report, collector=, variant=, declared=)`` fails the test on any
    undeclared difference between ``report`` and the golden host."""

    def check(
        report: HostReport | None,
        *,
        collector: str,
        variant: Variant,
        declared: str | list[DeclaredDifference] = "",
        after_policy: bool = False,
    ) -> None:
        rows = parse_declared_differences(declared) if isinstance(declared, str) else declared
        view = None if report is None else report_view(report, after_policy=after_policy)
        problems = equivalence_problems(
            view, collector=collector, variant=variant, declared=rows, after_policy=after_policy
        )
        assert not problems, "\n".join(problems)

    return check


def fake_report(
    host_id: str,
    *,
    target: str = "fake",
    vcpus: int = 8,
    memory_mib: int = 16384,
    disk_gib: int = 100,
    arch: str = "x86_64",
    hv_type: str = "kvm",
    traits: tuple[str, ...] = ("HW_CPU_X86_AVX2",),
    parent_id: str | None = None,
    used_vcpus: int = 0,
    used_memory_mib: int = 0,
) -> HostReport:
    """A plausible compute-host report for core, store and exporter tests."""
    return HostReport(
        identity=HostIdentity(host_id=host_id, target=target, hostname=f"{host_id}.example"),
        parent_id=parent_id,
        hypervisor=Hypervisor(hv_type=hv_type, product="FakeHV", version="1.2.3"),
        cpu=Cpu(arch=arch, sockets=1, cores_per_socket=vcpus, threads_per_core=1,
                total_cpus=vcpus, online_cpus=vcpus, model="FakeCPU"),
        memory=Memory(total_bytes=memory_mib * 1024 * 1024),
        inventories=[
            Inventory(resource_class="VCPU", total=vcpus, allocation_ratio=4.0, used=used_vcpus),
            Inventory(resource_class="MEMORY_MB", total=memory_mib, reserved=512,
                      used=used_memory_mib),
            Inventory(resource_class="DISK_GB", total=disk_gib),
        ],
        traits=list(traits),
        supported_instances=[SupportedInstance(arch=arch, hv_type=hv_type, vm_mode="hvm")],
        collected_at=datetime.now(UTC),
        collector=CollectorInfo(name="fake", version="1.0"),
    )  # fmt: skip


class FakeCollector(Collector):
    """A collector that needs no hypervisor: ``url`` is ``fake://<n>`` for n hosts.

    Options: ``fail`` (an error kind to raise), ``crash`` (raise a non-contract exception).
    """

    name = "fake"
    version = "1.0"
    capabilities = frozenset({Capability.SUPPORTED_INSTANCES})
    _errors: ClassVar[dict[str, type[CollectorError]]] = {
        "unreachable": TargetUnreachable,
        "timeout": TargetTimeout,
        "invalid_native_data": InvalidNativeData,
        "unsupported": UnsupportedTarget,
    }

    def __init__(self, target: Target, hosts: int, options: Mapping[str, Any]) -> None:
        self.target = target
        self.hosts = hosts
        self.options = options

    @classmethod
    def from_target(cls, target: Target, *, logger: Any) -> Self:
        if not target.url.startswith("fake://"):
            raise UnsupportedTarget(f"not a fake:// URL: {target.url!r}", target=target.name)
        unknown = set(target.options) - {"fail", "crash", "reports"}
        if unknown:
            raise UnsupportedTarget(f"unknown options: {sorted(unknown)}", target=target.name)
        try:
            hosts = int(target.url.removeprefix("fake://") or "1")
        except ValueError:
            raise UnsupportedTarget(f"bad host count in {target.url!r}") from None
        return cls(target, hosts, target.options)

    def collect(self) -> list[HostReport]:
        if "fail" in self.options:
            raise self._errors[str(self.options["fail"])]("told to fail", target=self.target.name)
        if self.options.get("crash"):
            raise KeyError("a bug in the collector")
        if "reports" in self.options:
            return [HostReport.model_validate(r) for r in self.options["reports"]]
        return [fake_report(f"host-{i}", target=self.target.name) for i in range(self.hosts)]

    def close(self) -> None:
        pass

    @classmethod
    def normalise_offline(
        cls, inputs: Mapping[str, list[Path]], *, target: str
    ) -> list[HostReport]:
        return [HostReport.model_validate(json.loads(p.read_text())) for p in inputs["json"]]
