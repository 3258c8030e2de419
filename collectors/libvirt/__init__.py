"""The libvirt collector (``resmon[libvirt]``).

``LibvirtCollector`` needs libvirt-python and is imported on first use, so that the pure
parsers (``collectors.libvirt._parse``, ``_build``) work without libvirt's C library: loading the
``libvirt`` entry point without libvirt-python raises ImportError, as a missing driver should.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._collector import LibvirtCollector

__all__ = ["LibvirtCollector"]


def __getattr__(name: str) -> Any:
    if name == "LibvirtCollector":
        from ._collector import LibvirtCollector

        return LibvirtCollector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
