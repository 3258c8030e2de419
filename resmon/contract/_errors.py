"""Errors that may cross the collector contract.

The tree::

    CollectorError                 base of everything a collector may raise
    ├── TargetUnreachable          connection refused, reset, DNS failure, daemon gone
    ├── TargetTimeout              the target did not answer within the timeout
    ├── AuthenticationFailed       credentials refused or missing
    ├── UnsupportedTarget          the target is not something this collector can read
    └── InvalidNativeData          the target answered, but the answer cannot be normalised

    ContractViolation              raised by the core, never by a collector: anything else that
                                   escaped ``collect()``; kept outside the tree so that
                                   ``except CollectorError`` never hides a bug
    IncompatibleContract           raised by the core when a collector implements another major
                                   version of the contract

Every error carries a stable ``kind`` string; the store and the exporters use the kind, never the
class name.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "CollectorError",
    "ContractViolation",
    "IncompatibleContract",
    "InvalidNativeData",
    "TargetTimeout",
    "TargetUnreachable",
    "UnsupportedTarget",
    "ERROR_KINDS",
]


class CollectorError(Exception):
    """Base of the errors a collector may raise out of ``collect()`` or its constructor."""

    kind = "collector_error"

    def __init__(self, message: str, *, target: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.target = target

    def __str__(self) -> str:
        if self.target:
            return f"{self.target}: {self.message}"
        return self.message


class TargetUnreachable(CollectorError):
    """The target could not be reached (refused, reset, name not resolved, daemon gone)."""

    kind = "unreachable"


class TargetTimeout(CollectorError):
    """The target did not answer within the configured timeout."""

    kind = "timeout"


class AuthenticationFailed(CollectorError):
    """The target refused the credentials, or none were given where some are required."""

    kind = "auth_failed"


class UnsupportedTarget(CollectorError):
    """The target is not something this collector can read (wrong product, role missing)."""

    kind = "unsupported"


class InvalidNativeData(CollectorError):
    """The target answered with data that cannot be normalised (malformed, absurd, hostile)."""

    kind = "invalid_native_data"


class ContractViolation(Exception):
    """Raised by the core when a collector breaks the contract (any other exception escaped)."""

    kind = "contract_violation"

    def __init__(self, message: str, *, collector: str, target: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.collector = collector
        self.target = target

    def __str__(self) -> str:
        where = f"collector {self.collector!r}"
        if self.target:
            where += f" on target {self.target!r}"
        return f"{where} broke the contract: {self.message}"


class IncompatibleContract(Exception):
    """Raised by the core when a collector implements a contract major version it cannot use."""

    kind = "incompatible_contract"


#: Every error kind that can be recorded for a collection run, with the reason a report
#: may be rejected by the core after ``collect()`` returned (``invalid_report``).
ERROR_KINDS: tuple[str, ...] = (
    TargetUnreachable.kind,
    TargetTimeout.kind,
    AuthenticationFailed.kind,
    UnsupportedTarget.kind,
    InvalidNativeData.kind,
    ContractViolation.kind,
    IncompatibleContract.kind,
    "invalid_report",
)
