"""Collector discovery through the ``resmon.collectors`` entry points, and version negotiation."""

from __future__ import annotations

from importlib.metadata import entry_points

from resmon.contract import (
    CONTRACT_VERSION,
    ENTRY_POINT_GROUP,
    Collector,
    IncompatibleContract,
)

__all__ = ["CollectorNotFound", "available_collectors", "check_contract_version", "load_collector"]

_extra: dict[str, type[Collector]] = {}


class CollectorNotFound(LookupError):
    """No collector of that name is installed."""


def _major_minor(version: str) -> tuple[int, int]:
    major, _, minor = version.partition(".")
    return int(major), int(minor or 0)


def check_contract_version(collector: type[Collector]) -> None:
    """Accept any 1.x collector; refuse another major, naming the collector and both versions."""
    name = getattr(collector, "name", collector.__name__)
    theirs = str(getattr(collector, "contract_version", ""))
    try:
        their_major, _ = _major_minor(theirs)
    except ValueError:
        raise IncompatibleContract(
            f"collector {name!r} declares contract version {theirs!r}, which is not "
            f"'major.minor'; resmon implements contract {CONTRACT_VERSION}"
        ) from None
    our_major, _ = _major_minor(CONTRACT_VERSION)
    if their_major != our_major:
        raise IncompatibleContract(
            f"collector {name!r} implements contract {theirs}, resmon accepts "
            f"{our_major}.x (it implements {CONTRACT_VERSION})"
        )


def register(collector: type[Collector]) -> None:
    """Register a collector class without an entry point (tests, embedding)."""
    _extra[collector.name] = collector


def unregister(name: str) -> None:
    _extra.pop(name, None)


def available_collectors() -> list[str]:
    names = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} | set(_extra)
    return sorted(names)


def load_collector(name: str) -> type[Collector]:
    """The collector class registered as ``name``, checked against the contract version."""
    if name in _extra:
        cls = _extra[name]
    else:
        matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not matches:
            raise CollectorNotFound(
                f"no collector named {name!r} is installed (installed: "
                f"{', '.join(available_collectors()) or 'none'})"
            )
        try:
            cls = matches[0].load()
        except ImportError as exc:
            raise CollectorNotFound(
                f"collector {name!r} is registered but cannot be imported ({exc}); "
                f"install its driver with: pip install 'resmon[{name}]'"
            ) from exc
        except Exception as exc:  # a broken plugin must not take the daemon down
            raise CollectorNotFound(
                f"collector {name!r} failed to load: {type(exc).__name__}: {exc}"
            ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Collector)):
        raise IncompatibleContract(f"entry point {name!r} does not name a Collector subclass")
    check_contract_version(cls)
    return cls
