"""What the simulator cannot show: result paging and objects deleted mid-collection.

govmomi 0.24's simulator ignores ``maxObjects`` (everything comes in one page) and never reports
``missingSet`` faults, so these paths run against a scripted PropertyCollector that returns real
pyVmomi objects.
"""

from __future__ import annotations

import logging
from typing import Any

from pyVmomi import vim, vmodl

from collectors.vmware._collector import VmwareCollector, _Session
from resmon.contract import Target

PC = vmodl.query.PropertyCollector


def content(moref: str, name: str, missing_fault: Any = None) -> Any:
    missing = [PC.MissingProperty(path="name", fault=missing_fault)] if missing_fault else []
    return PC.ObjectContent(
        obj=vim.HostSystem(moref),
        propSet=[vmodl.DynamicProperty(name="name", val=name)],
        missingSet=missing,
    )


class ScriptedCollector:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def RetrievePropertiesEx(self, specSet: Any, options: Any) -> Any:  # noqa: N802
        self.calls.append(f"first maxObjects={options.maxObjects}")
        return PC.RetrieveResult(token="page-2", objects=[content("host-1", "a")])

    def ContinueRetrievePropertiesEx(self, token: str) -> Any:  # noqa: N802
        self.calls.append(f"continue {token}")
        if token == "page-2":
            gone = vmodl.fault.ManagedObjectNotFound(obj=vim.HostSystem("host-2"))
            return PC.RetrieveResult(
                token="page-3", objects=[content("host-2", "b", gone), content("host-3", "c")]
            )
        return PC.RetrieveResult(token=None, objects=[content("host-4", "d")])


class ScriptedContent:
    def __init__(self) -> None:
        self.propertyCollector = ScriptedCollector()
        self.about = vim.AboutInfo(apiType="VirtualCenter", apiVersion="8.0", fullName="scripted")


def test_pages_are_followed_and_deleted_objects_skipped() -> None:
    target = Target(
        name="vc",
        collector="vmware",
        url="https://127.0.0.1/sdk",
        username="u",
        password="p",
        options={"page_size": 1},
    )
    collector = VmwareCollector.from_target(target, logger=logging.getLogger("test"))
    session = _Session(stub=None, content=ScriptedContent(), view=vim.view.ContainerView("view-1"))
    inventory = collector._read(session)
    assert [o.moref for o in inventory.objects] == ["host-1", "host-3", "host-4"]
    assert [o.props["name"] for o in inventory.objects] == ["a", "c", "d"]
    assert session.content.propertyCollector.calls == [
        "first maxObjects=1",
        "continue page-2",
        "continue page-3",
    ]
