"""The lock (requirements/constraints.txt) pins every dependency pyproject.toml declares, at a
version inside its range, so `.ci/install` installs exactly what was tested."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
_PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;]+)")


def _pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines():
        match = _PIN.match(line)
        if match:
            pins[canonicalize_name(match.group(1))] = Version(match.group(2))
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = [Requirement(spec) for spec in project["dependencies"]]
    for specs in project["optional-dependencies"].values():
        declared += [Requirement(spec) for spec in specs]
    return [req for req in declared if canonicalize_name(req.name) != "resmon"]


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    pins = _pins()
    problems = []
    for req in _declared():
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None:
            problems.append(f"{req.name} is not in the lock")
        elif not req.specifier.contains(pinned, prereleases=True):
            problems.append(f"{req.name}=={pinned} is outside {req.specifier}")
    assert not problems, "run requirements/refresh: " + "; ".join(problems)


def test_known_bad_combination_is_excluded() -> None:
    # pytest 9.2 breaks pytest-alembic 0.13.1's collector (TestCollector has no _nodeid).
    assert _pins()["pytest"] < Version("9.2")
