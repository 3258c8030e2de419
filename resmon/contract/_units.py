"""Unit conversions: the only place where KiB, MiB, GiB and bytes meet.

Everything in the schema is an integer in a base unit (bytes, MHz). Hypervisors speak KiB
(libvirt, Windows WMI), MiB (vSphere memoryMB, Placement MEMORY_MB) and bytes; convert here.
"""

from __future__ import annotations

__all__ = [
    "KIB",
    "MIB",
    "GIB",
    "MAX_BYTES",
    "MAX_COUNT",
    "PLACEMENT_MAX_INT",
    "bytes_to_gib_floor",
    "bytes_to_mib_floor",
    "gib_to_bytes",
    "kib_to_bytes",
    "mib_to_bytes",
]

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

#: Anything larger is not a real machine: 2**60 bytes is one exbibyte.
MAX_BYTES = 2**60
#: Upper bound for counts (CPUs, pages, instances) that still fits a signed 32-bit column.
MAX_COUNT = 2**31 - 1
#: Placement's bound for inventory fields (placement/db/constants.py MAX_INT).
PLACEMENT_MAX_INT = 2**31 - 1


def kib_to_bytes(kib: int) -> int:
    return int(kib) * KIB


def mib_to_bytes(mib: int) -> int:
    return int(mib) * MIB


def gib_to_bytes(gib: int) -> int:
    return int(gib) * GIB


def bytes_to_mib_floor(value: int) -> int:
    """MEMORY_MB inventories count whole MiB; a partial MiB cannot be allocated."""
    return int(value) // MIB


def bytes_to_gib_floor(value: int) -> int:
    """DISK_GB inventories count whole GiB; a partial GiB cannot be allocated."""
    return int(value) // GIB
