"""The collector interface (contract v1).

A collector is built from a :class:`Target` and returns :class:`HostReport` objects from
``collect()``. It may raise only :class:`CollectorError` subclasses; the core turns anything else
into a :class:`ContractViolation`. Collectors are found through the ``resmon.collectors`` entry
point group; the in-tree ones are registered the same way.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Annotated, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ._schema import HostReport

__all__ = [
    "CONTRACT_VERSION",
    "ENTRY_POINT_GROUP",
    "Capability",
    "Collector",
    "OfflineInput",
    "Target",
]

#: The contract version this package defines. Additive change = minor; anything else = major.
CONTRACT_VERSION = "1.1"
ENTRY_POINT_GROUP = "resmon.collectors"


class Capability(StrEnum):
    """Optional parts of a report a collector fills in, so the core knows what to expect."""

    NUMA = "numa"
    HUGE_PAGES = "huge_pages"
    CPU_FEATURES = "cpu_features"
    SUPPORTED_INSTANCES = "supported_instances"
    RUNNING_INSTANCES = "running_instances"
    STORAGE_POOLS = "storage_pools"
    CLUSTERS = "clusters"
    OBSERVED_USAGE = "observed_usage"


class Target(BaseModel):
    """What the core hands a collector: one configured target, secrets already resolved.

    ``options`` holds collector-specific settings from the config file, passed through as given;
    the collector validates them and raises ``UnsupportedTarget`` naming a bad one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=255)]
    collector: Annotated[str, Field(min_length=1, max_length=64)]
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    username: str | None = None
    password: SecretStr | None = None
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    verify_tls: bool = True
    ca_bundle: Path | None = None
    options: Mapping[str, object] = Field(default_factory=dict)
    dump_native_dir: Path | None = None


@dataclass(frozen=True)
class OfflineInput:
    """One saved native input a collector can normalise offline (``resmon normalise``).

    ``flag`` becomes the command-line option (``--capabilities``), ``key`` the name under which
    the paths reach :meth:`Collector.normalise_offline`.
    """

    flag: str
    key: str
    help: str
    required: bool = False
    multiple: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)


class Collector(ABC):
    """Base class of every collector.

    Subclasses set the class attributes, implement :meth:`from_target`, :meth:`collect` and
    :meth:`close`, and may implement :meth:`normalise_offline` for saved native data.
    """

    #: Entry-point name, e.g. ``"libvirt"``.
    name: ClassVar[str]
    #: The collector's own release.
    version: ClassVar[str]
    #: The contract version it implements (``major.minor``).
    contract_version: ClassVar[str] = CONTRACT_VERSION
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    #: Saved inputs ``resmon normalise <name>`` accepts.
    offline_inputs: ClassVar[Sequence[OfflineInput]] = ()

    @classmethod
    @abstractmethod
    def from_target(
        cls, target: Target, *, logger: logging.Logger | logging.LoggerAdapter[logging.Logger]
    ) -> Self:
        """Build a collector for ``target``; validate options here, connect lazily."""

    @abstractmethod
    def collect(self) -> list[HostReport]:
        """Read the target once and return one report per provider it holds."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; must not raise."""

    @classmethod
    def normalise_offline(
        cls, inputs: Mapping[str, list[Path]], *, target: str
    ) -> list[HostReport]:
        """Normalise saved native data (what a user attaches to a bug report)."""
        raise NotImplementedError(f"collector {cls.name!r} has no offline normaliser")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
