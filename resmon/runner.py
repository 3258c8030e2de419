"""Runs one collection of one target and enforces the contract's error rules.

Only :class:`CollectorError` subclasses may cross the boundary; anything else is turned into a
:class:`ContractViolation` for that collector: logged with the collector's name, counted, and the
target marked failed. The daemon goes on.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from pydantic import ValidationError

from resmon.contract import (
    Collector,
    CollectorError,
    ContractViolation,
    HostReport,
    IncompatibleContract,
    Target,
    UnsupportedTarget,
)
from resmon.outcome import CollectionOutcome
from resmon.policy import TargetPolicy, apply_policy, moved_option_message
from resmon.validation import DuplicateProvider, check_batch

__all__ = ["CollectionOutcome", "collect_target", "target_logger"]

log = logging.getLogger("resmon.runner")


def target_logger(collector: str, target: str) -> logging.LoggerAdapter[logging.Logger]:
    """A logger bound to its collector and target: every line carries both names."""
    return logging.LoggerAdapter(
        logging.getLogger(f"resmon.collector.{collector}"),
        {"collector": collector, "target": target},
    )


def _schema_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}")
    more = f" (+{exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    return f"report breaks schema v1: {'; '.join(parts)}{more}"


def _accept(reports: object, collector: type[Collector], target: Target) -> list[HostReport]:
    """Re-validate what ``collect()`` returned; the core trusts nothing across the boundary."""
    if not isinstance(reports, list):
        raise ContractViolation(
            f"collect() returned {type(reports).__name__}, not a list of HostReport",
            collector=collector.name,
            target=target.name,
        )
    accepted = []
    for item in reports:
        if not isinstance(item, HostReport):
            raise ContractViolation(
                f"collect() returned a {type(item).__name__} among its reports",
                collector=collector.name,
                target=target.name,
            )
        checked = HostReport.model_validate(item.model_dump())
        if checked.identity.target != target.name:
            raise ContractViolation(
                f"report {checked.identity.host_id!r} names target "
                f"{checked.identity.target!r}, expected {target.name!r}",
                collector=collector.name,
                target=target.name,
            )
        accepted.append(checked)
    return accepted


def collect_target(
    collector_cls: type[Collector],
    target: Target,
    *,
    instance: Collector | None = None,
    policy: TargetPolicy | None = None,
) -> tuple[CollectionOutcome, Collector | None]:
    """Collect ``target`` once. Never raises for anything the collector does.

    ``instance`` is a collector built earlier for this target (sessions are reused across
    cycles); the returned collector is the one to reuse next time, or None after a failure that
    may have broken its session. ``policy`` (Nova's defaults when None) is applied to every
    report before validation, so that what is checked and stored is the final figure.
    """
    logger = target_logger(collector_cls.name, target.name)
    started_at = datetime.now(UTC)
    start = time.perf_counter()
    outcome = CollectionOutcome(
        target=target.name, collector=collector_cls.name, started_at=started_at, duration_s=0.0
    )
    collector = instance
    try:
        if collector is None:
            moved = moved_option_message(target.options)
            if moved is not None:
                raise UnsupportedTarget(moved, target=target.name)
            collector_cls.parse_options(target)  # the core checks options, for every collector
            collector = collector_cls.from_target(target, logger=logger)
        raw = collector.collect()
        accepted = _accept(raw, collector_cls, target)
        outcome.reports, policy_anomalies = apply_policy(
            accepted, policy if policy is not None else TargetPolicy.defaults()
        )
        outcome.anomalies = check_batch(outcome.reports)
        for key, found in policy_anomalies.items():
            outcome.anomalies.setdefault(key, []).extend(found)
    except CollectorError as exc:
        outcome.error_kind, outcome.error_message = exc.kind, str(exc.message)
    except (ContractViolation, IncompatibleContract) as exc:
        outcome.error_kind, outcome.error_message = exc.kind, str(exc)
    except ValidationError as exc:
        outcome.error_kind, outcome.error_message = "invalid_report", _schema_message(exc)
    except DuplicateProvider as exc:
        outcome.error_kind, outcome.error_message = "invalid_report", str(exc)
    except Exception as exc:  # the contract boundary: anything else is the collector's bug
        violation = ContractViolation(
            f"{type(exc).__name__}: {exc}", collector=collector_cls.name, target=target.name
        )
        logger.error("%s", violation, exc_info=True)
        outcome.error_kind, outcome.error_message = violation.kind, str(violation)
    outcome.duration_s = time.perf_counter() - start
    if outcome.ok:
        logger.debug("collected %d providers in %.3fs", len(outcome.reports), outcome.duration_s)
        return outcome, collector
    outcome.reports = []
    outcome.anomalies = {}
    logger.debug("collection failed (%s): %s", outcome.error_kind, outcome.error_message)
    if collector is not None:
        _close_quietly(collector, logger)
    return outcome, None


def _close_quietly(collector: Collector, logger: logging.LoggerAdapter[logging.Logger]) -> None:
    try:
        collector.close()
    except Exception:  # close() must not raise; if it does, the run's error already stands
        logger.debug("close() raised after a failed collection", exc_info=True)
