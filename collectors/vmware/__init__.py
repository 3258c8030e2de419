"""VMware vSphere collector (vCenter and ESXi) over pyVmomi."""

from __future__ import annotations

from ._collector import VmwareCollector

__all__ = ["VmwareCollector"]
