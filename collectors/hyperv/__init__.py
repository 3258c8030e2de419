"""Hyper-V collector: one PowerShell inventory script over WinRM, normalised to schema v1."""

from __future__ import annotations

from ._collector import HypervCollector
from ._normalise import normalise, parse_document
from ._script import SCRIPT

__all__ = ["SCRIPT", "HypervCollector", "normalise", "parse_document"]
