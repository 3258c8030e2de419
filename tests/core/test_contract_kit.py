"""The equivalence part of the contract kit: the table parser and the comparison."""

from __future__ import annotations

import pytest

from resmon.contract.testing import (
    GOLDEN_HOST,
    equivalence_problems,
    golden_view,
    parse_declared_differences,
)

TABLE = """
Prose around the table is ignored.

| field | collector | variant | value | why |
|---|---|---|---|---|
| `hypervisor.hv_type` | mine | * | `"mine"` | it is not KVM |
| `(variant)` | mine | maintenance | `"not expressible"` | no maintenance mode |
"""


def test_rows_are_parsed_with_json_values() -> None:
    rows = parse_declared_differences(TABLE)
    assert [(r.field, r.collector, r.variant, r.value) for r in rows] == [
        ("hypervisor.hv_type", "mine", "*", "mine"),
        ("(variant)", "mine", "maintenance", "not expressible"),
    ]


@pytest.mark.parametrize(
    ("row", "error"),
    [
        ("| `cpu.arch` | mine | running | `x86_64` | unquoted |", "not JSON"),
        ('| `cpu.arch` | mine | sometimes | `"x"` | bad variant |', "variant"),
    ],
)
def test_a_bad_row_is_an_error_not_a_silent_skip(row: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_declared_differences(row)


def test_a_row_declared_twice_is_an_error() -> None:
    row = '| `cpu.arch` | mine | running | `"x"` | why |\n'
    with pytest.raises(ValueError, match="more than once"):
        parse_declared_differences(row * 2)


def test_the_golden_view_matches_itself() -> None:
    view = golden_view("running")
    assert equivalence_problems(view, collector="other", variant="running", declared=[]) == []
    assert view["cpu.total_cpus"] == GOLDEN_HOST.cpus == 32
    assert view["inventories.MEMORY_MB.total"] == 131072


def test_undeclared_wrong_and_stale_differences_are_reported() -> None:
    rows = parse_declared_differences(TABLE)
    view = golden_view("running") | {"hypervisor.hv_type": "mine", "cpu.sockets": 1}
    assert equivalence_problems(view, collector="mine", variant="running", declared=rows) == [
        "mine/running: cpu.sockets is 1, the golden host's is 2 (not a declared difference)"
    ]
    wrong = view | {"hypervisor.hv_type": "kvm2", "cpu.sockets": 2}
    assert (
        "the table declares"
        in equivalence_problems(wrong, collector="mine", variant="running", declared=rows)[0]
    )
    # A declared difference that does not occur is reported too.
    stale = golden_view("running")
    problems = equivalence_problems(stale, collector="mine", variant="running", declared=rows)
    assert problems == [
        'mine/running: hypervisor.hv_type equals the golden host\'s "kvm", but the table '
        'declares "mine"'
    ]


def test_a_missing_inventory_is_one_difference() -> None:
    view = {k: v for k, v in golden_view("running").items() if ".DISK_GB." not in k}
    view["inventories"] = ["MEMORY_MB", "VCPU"]
    problems = equivalence_problems(view, collector="x", variant="running", declared=[])
    assert len(problems) == 1 and problems[0].startswith("x/running: inventories is")


def test_a_variant_without_report_must_be_declared_not_expressible() -> None:
    rows = parse_declared_differences(TABLE)
    assert equivalence_problems(None, collector="mine", variant="maintenance", declared=rows) == []
    assert equivalence_problems(None, collector="other", variant="maintenance", declared=rows)
