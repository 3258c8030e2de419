"""The result of one collection of one target: what the runner produces and the store records.

Its own module so that the store, below the runner in the core's layers, need not import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from resmon.contract import Anomaly, HostReport

__all__ = ["CollectionOutcome"]


@dataclass
class CollectionOutcome:
    """The result of one collection of one target, successful or not."""

    target: str
    collector: str
    started_at: datetime
    duration_s: float
    reports: list[HostReport] = field(default_factory=list)
    anomalies: dict[tuple[str, str], list[Anomaly]] = field(default_factory=dict)
    error_kind: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_kind is None
