"""The collector interface (contract v1).

A collector is built from a :class:`Target` and returns :class:`HostReport` objects from
``collect()``. It may raise only :class:`CollectorError` subclasses; the core turns anything else
into a :class:`ContractViolation`. Collectors are found through the ``resmon.collectors`` entry
point group; the in-tree ones are registered the same way.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from ._errors import UnsupportedTarget
from ._schema import HostReport

__all__ = [
    "CONTRACT_VERSION",
    "ENTRY_POINT_GROUP",
    "AnyOptions",
    "Capability",
    "Collector",
    "Logger",
    "OfflineInput",
    "Target",
    "save_native_dump",
    "warn_tls_unverified",
]

#: The logger a collector receives: bound to its collector and target names.
Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]

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


class AnyOptions(BaseModel):
    """The options model of a collector that declares none (contract 1.0): anything passes and
    the collector checks its options itself."""

    model_config = ConfigDict(extra="allow", frozen=True)


def _option_error(exc: ValidationError, model: type[BaseModel]) -> str:
    err = exc.errors()[0]
    name = ".".join(str(p) for p in err["loc"]) or "options"
    if err["type"] == "extra_forbidden":
        known = ", ".join(sorted(model.model_fields)) or "none"
        return f"unknown option {name!r} (known: {known})"
    return f"option {name!r}: {err['msg']} (got {str(err.get('input'))[:100]!r})"


def warn_tls_unverified(logger: Logger, url: str) -> None:
    """The one warning every collector logs when a target turns TLS verification off."""
    logger.warning(
        "TLS certificate verification is OFF for %s (verify_tls=false): the connection can be "
        "intercepted; give ca_bundle instead",
        url,
    )


def save_native_dump(
    target: Target,
    collector: str,
    what: str,
    data: str | bytes,
    *,
    logger: Logger,
    at: datetime | None = None,
) -> Path | None:
    """Save raw native data under ``target.dump_native_dir`` (nothing when it is unset) as
    ``<collector>-<target>-<UTC time>-<what>``, the one naming every collector uses. A dump is a
    debugging aid: a failure to write it is logged, never raised. Returns the path written."""
    directory = target.dump_native_dir
    if directory is None:
        return None
    stamp = (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    safe = [re.sub(r"[^A-Za-z0-9_.-]", "_", part) for part in (collector, target.name, what)]
    path = directory / f"{safe[0]}-{safe[1]}-{stamp}-{safe[2]}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data, encoding="utf-8")
    except OSError as exc:
        logger.warning("cannot save native data to %s: %s", path, exc.strerror or exc)
        return None
    logger.debug("native data saved to %s", path)
    return path


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
    #: The model of ``[targets.options]`` (contract 1.1), validated by the core before
    #: :meth:`from_target`: forbid extra fields so that an unknown option is named.
    options_model: ClassVar[type[BaseModel]] = AnyOptions

    @classmethod
    def parse_options(cls, target: Target) -> BaseModel:
        """``target.options`` as :attr:`options_model`; an unknown or ill-typed option is an
        :class:`UnsupportedTarget` naming it. The core calls it before :meth:`from_target`."""
        try:
            return cls.options_model.model_validate(dict(target.options))
        except ValidationError as exc:
            raise UnsupportedTarget(
                f"{cls.name}: {_option_error(exc, cls.options_model)}", target=target.name
            ) from None

    @classmethod
    @abstractmethod
    def from_target(cls, target: Target, *, logger: Logger) -> Self:
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
