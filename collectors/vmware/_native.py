"""The native data the collector reads, as plain JSON-able values.

One PropertyCollector pass returns, for every object in the inventory, the leaf properties below
(never whole ``summary``/``runtime`` objects: a full ``summary.runtime`` drags every hardware
sensor along). The pass is turned into an :class:`Inventory`: plain dicts keyed by property path,
with managed-object references as their ids. The same structure is what ``--dump-native`` saves
and what the normaliser reads, so a dump replays exactly what was collected.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resmon.contract import InvalidNativeData

__all__ = [
    "DUMP_FORMAT",
    "PROPERTIES",
    "Inventory",
    "NativeObject",
    "load_dump",
    "to_plain",
]

DUMP_FORMAT = "resmon.vmware.native/1"

#: Managed-object type → the leaf property paths read for it (one pass, all types at once).
#: ``ComputeResource`` also matches its subtype ``ClusterComputeResource``.
PROPERTIES: dict[str, tuple[str, ...]] = {
    "HostSystem": (
        "name",
        "parent",
        "datastore",
        "summary.hardware.uuid",
        "summary.hardware.numCpuPkgs",
        "summary.hardware.numCpuCores",
        "summary.hardware.numCpuThreads",
        "summary.hardware.cpuMhz",
        "summary.hardware.memorySize",
        "summary.hardware.cpuModel",
        "summary.hardware.vendor",
        "hardware.numaInfo",
        "summary.quickStats.overallCpuUsage",
        "summary.quickStats.overallMemoryUsage",
        "config.product.name",
        "config.product.fullName",
        "config.product.version",
        "config.product.build",
        "config.product.osType",
        "config.featureCapability",
        "config.maskedFeatureCapability",
        "config.systemResources",
        "overallStatus",
        "runtime.bootTime",
        "runtime.connectionState",
        "runtime.inMaintenanceMode",
        "runtime.inQuarantineMode",
        "runtime.powerState",
    ),
    "ComputeResource": (
        "name",
        "parent",
        "environmentBrowser",
        "host",
        "summary.effectiveCpu",
        "summary.effectiveMemory",
    ),
    # Resource pools (and vApps, a kind of pool): their reservations hold capacity for their VMs.
    "ResourcePool": (
        "name",
        "parent",
        "config.cpuAllocation.reservation",
        "config.memoryAllocation.reservation",
    ),
    # Only to name the datacenter a host is in: folders link compute resources up to it.
    "Folder": ("parent",),
    "Datacenter": ("name",),
    "ClusterComputeResource": ("summary.currentEVCModeKey", "configuration.dasConfig"),
    "Datastore": (
        "summary.name",
        "summary.url",
        "summary.type",
        "summary.capacity",
        "summary.freeSpace",
        "summary.accessible",
        "summary.maintenanceMode",
        "summary.uncommitted",
        "overallStatus",
        "host",
    ),
    "VirtualMachine": (
        "name",
        "runtime.host",
        "runtime.powerState",
        "resourcePool",
        "summary.config.numCpu",
        "summary.config.memorySizeMB",
        "summary.config.instanceUuid",
        "summary.config.template",
    ),
}


@dataclass
class NativeObject:
    """One managed object: its type as the server named it, its id, its properties."""

    type: str
    moref: str
    props: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "moref": self.moref, "props": self.props}


@dataclass
class Inventory:
    """Everything one collection read from one target.

    ``descriptors`` maps a compute resource's id to the plain form of its EnvironmentBrowser's
    ``QueryConfigOptionDescriptor`` answer (the VM hardware versions it can create and run).
    """

    about: dict[str, Any]
    objects: list[NativeObject] = field(default_factory=list)
    descriptors: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: When the objects were read (ISO 8601, UTC); None for hand-made inventories.
    collected_at: str | None = None

    def of_type(self, *types: str) -> list[NativeObject]:
        return [o for o in self.objects if o.type in types]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": DUMP_FORMAT,
            "collected_at": self.collected_at,
            "about": self.about,
            "objects": [o.to_json() for o in self.objects],
            "descriptors": self.descriptors,
        }

    def save(self, directory: Path, name: str) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        path = directory / f"vmware-{name}-{stamp}.json"
        path.write_text(json.dumps(self.to_json(), indent=1, sort_keys=True))
        return path

    @classmethod
    def from_json(cls, data: object, *, source: str) -> Inventory:
        if not isinstance(data, Mapping) or data.get("format") != DUMP_FORMAT:
            raise InvalidNativeData(f"{source}: not a {DUMP_FORMAT} dump (no matching 'format')")
        about, objects, descriptors = (
            data.get("about"),
            data.get("objects"),
            data.get("descriptors"),
        )
        if not isinstance(about, dict) or not isinstance(objects, list):
            raise InvalidNativeData(f"{source}: 'about' must be an object, 'objects' a list")
        if not isinstance(descriptors, dict):
            raise InvalidNativeData(f"{source}: 'descriptors' must be an object")
        parsed = []
        for i, item in enumerate(objects):
            if not isinstance(item, Mapping):
                raise InvalidNativeData(f"{source}: objects[{i}] is not an object")
            kind, moref, props = item.get("type"), item.get("moref"), item.get("props")
            if not isinstance(kind, str) or not isinstance(moref, str) or not moref:
                raise InvalidNativeData(f"{source}: objects[{i}] needs string 'type' and 'moref'")
            if not isinstance(props, dict):
                raise InvalidNativeData(f"{source}: objects[{i}].props is not an object")
            parsed.append(NativeObject(kind, moref, props))
        for key, value in descriptors.items():
            if not isinstance(value, list) or not all(isinstance(d, dict) for d in value):
                raise InvalidNativeData(f"{source}: descriptors[{key!r}] is not a list of objects")
        collected_at = data.get("collected_at")
        if collected_at is not None and not isinstance(collected_at, str):
            raise InvalidNativeData(f"{source}: 'collected_at' must be a string")
        return cls(about=about, objects=parsed, descriptors=descriptors, collected_at=collected_at)


def load_dump(path: Path) -> Inventory:
    """Read a dump written by ``--dump-native``; bad files raise InvalidNativeData."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidNativeData(f"{path}: cannot read a JSON dump ({exc})") from exc
    return Inventory.from_json(data, source=str(path))


def to_plain(value: Any) -> Any:
    """A pyVmomi value as JSON: references become their ids, data objects dicts of set fields."""
    # Imported here so that the offline normaliser works without pyVmomi's import cost.
    from pyVmomi import VmomiSupport

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, VmomiSupport.ManagedObject):
        return value._moId
    if isinstance(value, VmomiSupport.DataObject):
        plain: dict[str, Any] = {}
        data: Any = value
        for prop in data._GetPropertyList():
            item = getattr(value, prop.name)
            if item is None or prop.name in ("dynamicType", "dynamicProperty"):
                continue
            plain[prop.name] = to_plain(item)
        return plain
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return str(value)
