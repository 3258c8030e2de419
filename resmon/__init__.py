"""resmon: what every hypervisor in a fleet has and can run, in one schema."""

from __future__ import annotations

__version__ = "0.1.0"
