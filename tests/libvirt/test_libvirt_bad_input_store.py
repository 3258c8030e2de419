"""Hostile or broken answers from libvirt, end to end: collector → runner → store.

A clear ``invalid_native_data`` error, nothing stored for that run, earlier data intact; on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

pytest.importorskip("libvirt")

from collectors.libvirt import LibvirtCollector  # noqa: E402
from resmon.contract import Target  # noqa: E402
from resmon.runner import collect_target  # noqa: E402
from resmon.store import Store, TargetSpec  # noqa: E402

CELL = """<cells num='1'><cell id='0'><memory unit='KiB'>{memory}</memory>
<cpus num='1'><cpu id='0' socket_id='0' core_id='0' siblings='0'/></cpus></cell></cells>"""

BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<capabilities><host><uuid>&lol3;</uuid></host></capabilities>"""


class _HostileConnection:
    """The real connection, except that getCapabilities answers with ``caps``."""

    def __init__(self, conn: Any, caps: str) -> None:
        self._conn, self._caps = conn, caps

    def getCapabilities(self) -> str:  # noqa: N802 - libvirt's name
        return self._caps

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _HostileCollector(LibvirtCollector):
    hostile_caps: ClassVar[str | None] = None

    def _connect(self) -> None:
        super()._connect()
        if self.hostile_caps is not None:
            self._conn = _HostileConnection(self._conn, self.hostile_caps)


def _good_caps(url: str) -> str:
    import libvirt

    conn = libvirt.open(url)
    try:
        return str(conn.getCapabilities())
    finally:
        conn.close()


def _variants(good: str) -> dict[str, tuple[str, str]]:
    empty_cells = "<cells num='0'>\n      </cells>"
    assert empty_cells in good, "the test driver's capabilities changed shape"
    return {
        "malformed": (good[: len(good) // 2], "capabilities"),
        "xml-bomb": (BOMB, "capabilities"),
        "negative-memory": (good.replace(empty_cells, CELL.format(memory=-4096)), "memory"),
        "absurd-memory": (good.replace(empty_cells, CELL.format(memory=10**22)), "memory"),
    }


@pytest.mark.parametrize("variant", ["malformed", "xml-bomb", "negative-memory", "absurd-memory"])
def test_hostile_capabilities_store_nothing_and_keep_earlier_data(
    store: Store, corpus: Path, variant: str
) -> None:
    url = f"test://{corpus / 'libvirt/testdriver/testnode.xml'}"
    target = Target(name="node", collector="libvirt", url=url, timeout_s=10)
    spec = TargetSpec(name="node", collector="libvirt", url=url)

    _HostileCollector.hostile_caps = None
    good, _ = collect_target(_HostileCollector, target)
    assert good.ok, good.error_message
    store.record(spec, good)
    before = store.reports("node")
    assert len(before) == 1

    caps, named = _variants(_good_caps(url))[variant]
    _HostileCollector.hostile_caps = caps
    try:
        bad, instance = collect_target(_HostileCollector, target)
    finally:
        _HostileCollector.hostile_caps = None
    assert instance is None
    assert bad.error_kind == "invalid_native_data", bad.error_message
    assert named in (bad.error_message or "")
    store.record(spec, bad)

    assert store.reports("node") == before
    runs = store.runs("node")
    assert [r.status for r in runs] == ["success", "failed"]
    assert runs[-1].error_kind == "invalid_native_data"
    [row] = store.targets()
    assert row.last_status == "failed" and row.last_success_at is not None
