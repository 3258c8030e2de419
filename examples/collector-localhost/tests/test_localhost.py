"""The contract kit run against this collector, as any collector in its own repository would.

``resmon.contract.testing`` comes with resmon (and registers itself as a pytest plugin): the
contract suite on the machine running the tests, and the equivalence check on the golden host
described as a /proc and /sys tree (``golden_root.py``). The differences this collector must
have from the golden host are declared in the table in ../README.md.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from golden_root import write_golden_root

from resmon.contract import HostReport, InvalidNativeData, Target
from resmon.contract.testing import (
    GOLDEN_HOST,
    CollectorContractSuite,
    EquivalenceSuite,
    GoldenHost,
    Variant,
)
from resmon.policy import TargetPolicy, apply_policy
from resmon_localhost import LocalhostCollector

README = Path(__file__).resolve().parents[1] / "README.md"


class TestContract(CollectorContractSuite):
    collector_cls = LocalhostCollector

    def make_target(self) -> Target:
        return Target(name="this-machine", collector="localhost", url="localhost")

    def make_unreachable_target(self) -> Target:
        return self.make_target().model_copy(update={"options": {"root": "/nonexistent/root"}})


class TestEquivalence(EquivalenceSuite):
    collector_cls = LocalhostCollector
    declared_differences = README.read_text()

    def apply_policy(self, reports: list[HostReport]) -> list[HostReport]:
        # Compare what resmon stores too: the reports after the core's default policy.
        settled, _anomalies = apply_policy(reports, TargetPolicy.defaults())
        return settled

    def golden_reports(self, variant: Variant, directory: Path) -> list[HostReport] | None:
        if variant == "maintenance":
            return None  # Linux has no maintenance mode to describe
        root = write_golden_root(directory / "root", GOLDEN_HOST)
        options = {"root": str(root)}
        return self.collect(
            Target(name="golden", collector="localhost", url="localhost", options=options)
        )


def test_golden_host_fixture_is_the_kits(golden_host: GoldenHost) -> None:
    """The plugin's fixture (no import needed) hands out the same facts."""
    assert golden_host is GOLDEN_HOST


def test_a_malformed_file_is_invalid_native_data(tmp_path: Path) -> None:
    root = write_golden_root(tmp_path, GOLDEN_HOST)
    (root / "sys/devices/system/cpu/cpu3/topology/core_id").write_text("three\n")
    target = Target(name="bad", collector="localhost", url="localhost", options={"root": str(root)})
    collector = LocalhostCollector.from_target(target, logger=logging.getLogger(__name__))
    with pytest.raises(InvalidNativeData, match="three"):
        collector.collect()
