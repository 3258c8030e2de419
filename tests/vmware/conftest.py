"""Fixtures for the vmware tests: the simulator, built once per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from . import vcsim


@pytest.fixture(scope="session")
def vcsim_binary() -> Path:
    try:
        return vcsim.build()
    except vcsim.SimulatorUnavailable as exc:
        pytest.fail(f"cannot build the vCenter simulator: {exc}")


@pytest.fixture(scope="module")
def vpx(vcsim_binary: Path) -> Iterator[vcsim.Simulator]:
    """A vCenter with 2 datacenters × (2 clusters × 3 hosts + 1 standalone host), 2 datastores."""
    sim = vcsim.start(
        dc=2, cluster=2, host=3, standalone=1, vm=2, ds=2, username="resmon", password="s3cret"
    )
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def fresh_vpx(vcsim_binary: Path) -> Iterator[vcsim.Simulator]:
    """A small vCenter for one test that changes or kills it."""
    sim = vcsim.start(cluster=1, host=3, standalone=1, vm=2, username="resmon", password="s3cret")
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture(scope="module")
def esx(vcsim_binary: Path) -> Iterator[vcsim.Simulator]:
    """A standalone ESXi host."""
    sim = vcsim.start(esx=True, vm=3, username="root", password="s3cret")
    try:
        yield sim
    finally:
        sim.stop()
