"""Checks of the configured targets that need more than the file itself.

Run when a configuration is loaded for use (``resmon run``, ``resmon targets``), so a target that
can never be collected is reported then, not at its first collection: its collector must be
installed, accept its options, and its password reference must resolve. Nothing is contacted
(collectors connect lazily).
"""

from __future__ import annotations

import logging
import stat
from dataclasses import dataclass, field

from resmon.config import ConfigError, ResmonConfig, TargetConfig
from resmon.contract import CollectorError, IncompatibleContract
from resmon.logs import add_secret
from resmon.registry import CollectorNotFound, load_collector

__all__ = ["TargetProblems", "check_targets"]

log = logging.getLogger("resmon.config")


@dataclass
class TargetProblems:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def check_targets(config: ResmonConfig) -> TargetProblems:
    """Every problem of every target, each naming the target and the setting."""
    problems = TargetProblems()
    for target_config in config.targets:
        _check_target(target_config, problems)
    return problems


def _check_target(target_config: TargetConfig, problems: TargetProblems) -> None:
    name = target_config.name
    if target_config.password_file is not None:
        try:
            mode = target_config.password_file.stat().st_mode
        except OSError:
            mode = 0  # reported below, by resolve()
        if mode & (stat.S_IROTH | stat.S_IWOTH):
            problems.warnings.append(
                f"target {name!r}: password_file {str(target_config.password_file)!r} is "
                f"readable by every user (mode {stat.S_IMODE(mode):04o}): chmod 600 it"
            )
    try:
        collector_cls = load_collector(target_config.collector)
    except (CollectorNotFound, IncompatibleContract) as exc:
        problems.errors.append(f"target {name!r}: collector: {exc}")
        collector_cls = None
    try:
        target = target_config.resolve()
    except ConfigError as exc:
        problems.errors.append(str(exc))
        return
    if target.password is not None:
        add_secret(target.password.get_secret_value())
    if collector_cls is None:
        return
    try:
        collector = collector_cls.from_target(target, logger=logging.getLogger("resmon.config"))
    except CollectorError as exc:
        problems.errors.append(f"target {name!r}: {exc.kind}: {exc.message}")
        return
    except Exception as exc:  # a collector's bug: report it here rather than at every run
        problems.errors.append(f"target {name!r}: the collector refused the target: {exc!r}")
        return
    try:
        collector.close()
    except Exception:  # close() must not raise; nothing was opened
        log.debug("close() of an unused %s collector raised", target_config.collector)
