"""Log output: plain text or one JSON object per line, with secrets masked.

Lines about a target carry its name: collectors log through :func:`resmon.runner.target_logger`,
whose records have ``target`` and ``collector`` attributes, printed by both formats.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Literal

__all__ = ["LogFormat", "add_secret", "configure_logging"]

LogFormat = Literal["text", "json"]

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_MASK = "***"

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def add_secret(value: str | None) -> None:
    """Never print ``value``: any log line containing it shows ``***`` instead."""
    if value and len(value) >= 4:  # shorter values would mask ordinary words
        with _secrets_lock:
            _secrets.add(value)


def _mask(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        target = getattr(record, "target", None)
        if target is not None:
            head, sep, message = text.partition(": ")
            text = f"{head}: target {target}: {message}" if sep else f"target {target}: {text}"
        return _mask(text)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("target", "collector"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _mask(json.dumps(entry, ensure_ascii=False))


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the line (it may be replaced)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


_handler: logging.Handler | None = None


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """(Re)configure resmon's handler on the root logger: ``level`` is a name (debug, info,
    warning, error); ``log_format`` text lines or one JSON object per line."""
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = _StderrHandler()
    _handler.setFormatter(
        _JsonFormatter() if log_format == "json" else _TextFormatter(_TEXT_FORMAT)
    )
    root.addHandler(_handler)
    root.setLevel(level.upper())
    # Alembic narrates every plugin it loads at info; its lines matter only when debugging.
    logging.getLogger("alembic").setLevel("DEBUG" if level.upper() == "DEBUG" else "WARNING")
