"""An example out-of-tree resmon collector: the Linux machine it runs on.

It reads /proc and /sys (see proc(5) and the kernel's Documentation/ABI/stable/
sysfs-devices-system-cpu and sysfs-devices-node) and reports one compute host. It imports only
``resmon.contract`` and implements contract 1.0. Start here before reading the libvirt collector.
"""

from ._collector import LocalhostCollector

__all__ = ["LocalhostCollector"]
