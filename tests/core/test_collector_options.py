"""Collector options: declared as a model by each collector, validated by the core, documented."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from resmon.contract import Collector, Target
from resmon.registry import load_collector
from resmon.runner import collect_target

README = Path(__file__).resolve().parents[2] / "README.md"
IN_TREE = ("libvirt", "vmware", "hyperv")


def readme_options() -> dict[str, set[str]]:
    """The README's collector-option table: collector → option names."""
    text = README.read_text()
    section = text[text.index("### Collector options") :]
    table: dict[str, set[str]] = {}
    for row in re.findall(r"^\| `(\w+)` \| (.*) \|$", section, re.MULTILINE):
        collector, cell = row
        table[collector] = set(re.findall(r"`(\w+)` \(", cell))
    return table


def in_tree(name: str) -> type[Collector]:
    try:
        return load_collector(name)
    except Exception as exc:  # a driver library missing from this environment
        pytest.skip(f"collector {name} cannot be loaded here: {exc}")


@pytest.mark.parametrize("name", IN_TREE)
def test_readme_lists_exactly_the_options_of_the_model(name: str) -> None:
    model = in_tree(name).options_model
    assert model.model_config.get("extra") == "forbid", "unknown options must be refused"
    assert readme_options()[name] == set(model.model_fields)


@pytest.mark.parametrize(
    ("name", "url", "options", "expected"),
    [
        ("libvirt", "test:///default", {"keepalive_count": "many"}, "option 'keepalive_count'"),
        ("libvirt", "test:///default", {"colour": 1}, "unknown option 'colour' (known: "),
        ("vmware", "https://vc/sdk", {"page_size": 0}, "option 'page_size'"),
        ("vmware", "https://vc/sdk", {"page_size": True}, "option 'page_size'"),
        ("hyperv", "https://hv:5986/wsman", {"transport": "credssp"}, "option 'transport'"),
        ("hyperv", "https://hv:5986/wsman", {"colour": 1}, "unknown option 'colour'"),
    ],
)
def test_the_core_refuses_bad_options_naming_them(
    name: str, url: str, options: dict[str, object], expected: str
) -> None:
    target = Target(name="t", collector=name, url=url, options=options)
    outcome, instance = collect_target(in_tree(name), target)
    assert instance is None and outcome.error_kind == "unsupported"
    assert expected in (outcome.error_message or "")


def test_libvirt_tls_off_warns_and_tells_libvirt(caplog: pytest.LogCaptureFixture) -> None:
    cls = in_tree("libvirt")
    target = Target(
        name="t", collector="libvirt", url="qemu+tls://kvm.example/system", verify_tls=False
    )
    with caplog.at_level(logging.WARNING):
        collector = cls.from_target(target, logger=logging.getLogger("t"))
    assert collector.target.url == "qemu+tls://kvm.example/system?no_verify=1"  # type: ignore[attr-defined]
    assert "TLS certificate verification is OFF" in caplog.text
