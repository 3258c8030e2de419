"""The live collector against libvirt's built-in test driver, the contract suite, error mapping
and timeouts."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

libvirt = pytest.importorskip("libvirt")

from collectors.libvirt import LibvirtCollector  # noqa: E402
from collectors.libvirt._build import normalise_saved  # noqa: E402
from collectors.libvirt._errors import (  # noqa: E402
    ERROR_CLASSES,
    NOT_EXPECTED,
    error_class,
    map_libvirt_errors,
)
from resmon.contract import (  # noqa: E402
    AuthenticationFailed,
    CollectorInfo,
    HostReport,
    InvalidNativeData,
    Target,
    TargetTimeout,
    TargetUnreachable,
    UnsupportedTarget,
)
from resmon.contract.testing import CollectorContractSuite  # noqa: E402

LOG = logging.getLogger("tests.libvirt")
MIB = 1024**2


def target(url: str, **changes: object) -> Target:
    return Target(name="lv", collector="libvirt", url=url, timeout_s=20).model_copy(update=changes)


def collect(t: Target) -> list:  # type: ignore[type-arg]
    with LibvirtCollector.from_target(t, logger=LOG) as collector:
        return collector.collect()


class TestLibvirtContract(CollectorContractSuite):
    collector_cls = LibvirtCollector

    def make_target(self) -> Target:
        return target("test:///default")

    def make_unreachable_target(self) -> Target:
        return target("qemu+tcp://127.0.0.1:1/system", timeout_s=10)


def test_unreachable_target_fails_fast() -> None:
    start = time.monotonic()
    with pytest.raises(TargetUnreachable, match="Connection refused"):
        collect(target("qemu+tcp://127.0.0.1:1/system", timeout_s=10))
    assert time.monotonic() - start < 5, "a refused connection must not wait for the timeout"


def test_test_driver_default() -> None:
    (host,) = collect(target("test:///default"))
    assert host.hypervisor.hv_type == "test"
    assert host.cpu.arch == "i686"
    assert {si.key for si in host.supported_instances} == {"i686/test/hvm", "i686/test/xen"}
    assert host.cpu.total_cpus == 16 and len(host.numa_cells) == 2
    assert host.cpu.online_cpus == libvirt.open("test:///default").getCPUMap()[2]
    # the test driver's one running guest, "test": 2 vCPUs and 8 GiB
    assert [(i.name, i.vcpus, i.memory_bytes) for i in host.running_instances.instances] == [
        ("test", 2, 8 * 1024 * MIB)
    ]
    assert host.inventory("VCPU").used == 2
    assert host.inventory("MEMORY_MB").used == 8192
    assert host.inventory("DISK_GB").total == 100  # default-pool, type dir: local


def test_test_driver_node_file(corpus: Path) -> None:
    node = corpus / "libvirt" / "testdriver" / "testnode.xml"
    (host,) = collect(target(f"test://{node}"))
    assert host.cpu.total_cpus == 50 and host.cpu.cpu_mhz == 6000
    assert host.memory.total_bytes == 8192000 * 1024
    assert host.inventory("MEMORY_MB").total == 8000
    instances = {i.name: i for i in host.running_instances.instances}
    assert set(instances) == {"fv0", "fc4"}
    assert (instances["fv0"].vcpus, instances["fv0"].memory_bytes) == (4, 524288 * 1024)
    assert (instances["fc4"].vcpus, instances["fc4"].memory_bytes) == (1, 261072 * 1024)
    assert instances["fc4"].instance_id == "ef861801-45b9-11cb-88e3-afbfe5370493"
    assert host.inventory("VCPU").used == 5
    assert host.inventory("DISK_GB").total == 100


def test_shared_pool_becomes_its_own_provider(tmp_path: Path) -> None:
    node = tmp_path / "node.xml"
    node.write_text(
        """<node>
  <pool type='netfs'>
    <name>nfs</name><uuid>5cf63c49-b6d3-4bd5-a9f2-c1aafc5d0ac4</uuid>
    <source><host name='nfs.example'/><dir path='/export'/><format type='nfs'/></source>
    <target><path>/var/lib/nova/instances</path></target>
  </pool>
  <pool type='dir'>
    <name>local</name><uuid>8c1d0a3e-7ba5-4b70-9a50-2b1f5c4e8d11</uuid>
    <target><path>/srv/images</path></target>
  </pool>
  <cpu><mhz>2000</mhz><model>i686</model><active>4</active><nodes>1</nodes>
    <sockets>1</sockets><cores>4</cores><threads>1</threads></cpu>
  <memory>4194304</memory>
</node>"""
    )
    host, pool = collect(target(f"test://{node}"))
    # the test driver gives every pool 100 GiB capacity, 0 allocated, whatever the file says
    assert host.inventory("DISK_GB").total == 100, "only the dir pool counts for the host"
    assert pool.provider_kind == "shared_storage"
    assert pool.identity.host_id == "pool-5cf63c49-b6d3-4bd5-a9f2-c1aafc5d0ac4"
    assert pool.shared_with == [host.identity.host_id]
    assert pool.traits == ["MISC_SHARES_VIA_AGGREGATE"]
    assert pool.identity.hostname == "nfs" and pool.inventory("DISK_GB").total == 100


def test_options_are_validated() -> None:
    with pytest.raises(UnsupportedTarget, match="keepalive_count"):
        LibvirtCollector.from_target(
            target("test:///default", options={"keepalive_count": 0}), logger=LOG
        )
    with pytest.raises(UnsupportedTarget, match="not a libvirt URI"):
        LibvirtCollector.from_target(target("/var/run/libvirt"), logger=LOG)


def test_policy_options_moved_to_the_core() -> None:
    """Ratios and reservations are policy: the collector reports facts and refuses them."""
    (host,) = collect(target("test:///default"))
    for inv in host.inventories:
        assert (inv.reserved, inv.hypervisor_reserved, inv.operator_reserved) == (0, 0, 0)
    with pytest.raises(UnsupportedTarget, match="cpu_allocation_ratio"):
        LibvirtCollector.from_target(
            target("test:///default", options={"cpu_allocation_ratio": 2.0}), logger=LOG
        )


@pytest.mark.parametrize(
    ("url", "error", "text"),
    [
        ("bogus:///nothing", UnsupportedTarget, "'bogus' is not a libvirt hypervisor driver"),
        ("test:///no/such/node.xml", InvalidNativeData, "no/such/node.xml"),
    ],
)
def test_bad_uris_map_to_contract_errors(url: str, error: type[Exception], text: str) -> None:
    with pytest.raises(error, match=text):
        collect(target(url))


def test_dumped_native_xml_replays_offline(tmp_path: Path) -> None:
    (live,) = collect(target("test:///default", dump_native_dir=tmp_path / "dump"))
    # Named as every collector names its dumps: <collector>-<target>-<UTC time>-<what>.
    (saved,) = (tmp_path / "dump").glob("libvirt-lv-*Z-capabilities.xml")
    (offline,) = normalise_saved(
        (str(saved), saved.read_bytes()),
        target="lv",
        collector=CollectorInfo(name="libvirt", version="x"),
        collected_at=live.collected_at,
    )
    assert offline.supported_instances == live.supported_instances
    assert offline.numa_cells[0].cpus == live.numa_cells[0].cpus
    assert offline.traits == live.traits


def test_offline_inputs_and_normalise_offline(corpus: Path) -> None:
    flags = {i.flag: i for i in LibvirtCollector.offline_inputs}
    assert flags["--capabilities"].required and flags["--domcapabilities"].multiple
    caps = corpus / "libvirt/capabilities/virt-manager/kvm-x86_64.xml"
    domcaps = corpus / "libvirt/domaincaps/virt-manager/kvm-x86_64-domcaps-latest.xml"
    (report,) = LibvirtCollector.normalise_offline(
        {"capabilities": [caps], "domcapabilities": [domcaps]}, target="bug-1234"
    )
    assert report.identity == report.identity.model_copy(
        update={"host_id": "c4271571-d892-4ec0-9034-ef2ebc38c943", "target": "bug-1234"}
    )
    with pytest.raises(InvalidNativeData, match="cannot read"):
        LibvirtCollector.normalise_offline(
            {"capabilities": [caps.with_suffix(".nope")]}, target="x"
        )


# -- error mapping -------------------------------------------------------------------------------


def test_every_libvirt_error_code_is_classified() -> None:
    """Fails when a libvirt release adds an error code nobody has mapped or set aside."""
    codes = {name for name in dir(libvirt) if name.startswith("VIR_ERR_")}
    unclassified = codes - set(ERROR_CLASSES) - NOT_EXPECTED
    assert not unclassified, f"map these in collectors/libvirt/_errors.py: {sorted(unclassified)}"
    assert not set(ERROR_CLASSES) & NOT_EXPECTED


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("VIR_ERR_SYSTEM_ERROR", TargetUnreachable),
        ("VIR_ERR_RPC", TargetUnreachable),
        ("VIR_ERR_INVALID_CONN", TargetUnreachable),
        ("VIR_ERR_AUTH_FAILED", AuthenticationFailed),
        ("VIR_ERR_AUTH_CANCELLED", AuthenticationFailed),
        ("VIR_ERR_NO_SUPPORT", UnsupportedTarget),
        ("VIR_ERR_INVALID_ARG", UnsupportedTarget),
        ("VIR_ERR_XML_ERROR", InvalidNativeData),
        ("VIR_ERR_OPERATION_TIMEOUT", TargetTimeout),
    ],
)
def test_error_codes_map_to_the_taxonomy(name: str, expected: type[Exception]) -> None:
    assert error_class(getattr(libvirt, name)) is expected


def test_mapping_reraises_from_the_libvirt_error() -> None:
    conn = libvirt.open("test:///default")
    with pytest.raises(UnsupportedTarget) as info:
        with map_libvirt_errors("domain capabilities", target="lv"):
            conn.getDomainCapabilities()
    assert isinstance(info.value.__cause__, libvirt.libvirtError)
    assert "domain capabilities" in str(info.value) and info.value.target == "lv"


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections and never answers (a hung libvirtd)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in accepted:
            conn.close()
        server.close()


def test_hung_daemon_times_out(silent_server: int) -> None:
    start = time.monotonic()
    with pytest.raises(TargetTimeout, match="no answer within 1s"):
        collect(target(f"qemu+tcp://127.0.0.1:{silent_server}/system", timeout_s=1))
    assert time.monotonic() - start < 10


def test_policy_changes_capacity_the_same_way(
    check_policy_applies_uniformly: Callable[[list[HostReport]], set[str]],
) -> None:
    facts = collect(target("test:///default"))
    assert {"VCPU", "MEMORY_MB", "DISK_GB"} <= check_policy_applies_uniformly(facts)


def test_observed_use_is_reported_apart_from_allocations() -> None:
    with LibvirtCollector.from_target(target("test:///default"), logger=LOG) as collector:
        (first,) = collector.collect()
        (second,) = collector.collect()
    for report in (first, second):
        assert report.observed is not None and report.memory is not None
        assert report.observed.memory_used_bytes == report.memory.used_bytes
    # The test driver's node CPU times never move: no interval, so no observed CPU figure.
    assert second.observed is not None and second.observed.cpu_used_mhz is None


@pytest.fixture
def silent_server_process() -> Iterator[int]:
    """Like ``silent_server``, in another process, so its sockets are not counted in this one."""
    import subprocess
    import sys

    script = (
        "import socket, sys\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(64)\n"
        "print(s.getsockname()[1], flush=True)\n"
        "held = []\n"
        "while True: held.append(s.accept()[0])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _threads_and_fds() -> tuple[int, int]:
    return threading.active_count(), len(os.listdir("/proc/self/fd"))


def test_attempts_against_a_hung_daemon_leave_nothing_behind(silent_server_process: int) -> None:
    """Each timed-out connection attempt ends its thread and closes its socket."""
    hung = target(f"qemu+tcp://127.0.0.1:{silent_server_process}/system", timeout_s=1)
    with pytest.raises(TargetTimeout):
        collect(hung)  # the first attempt starts libvirt's event loop thread, once per process
    time.sleep(0.5)
    before = _threads_and_fds()
    for _ in range(6):
        with pytest.raises(TargetTimeout, match="no answer within 1s"):
            collect(hung)
    # The same collector instance retrying (as the daemon does) leaks nothing either.
    with LibvirtCollector.from_target(hung, logger=LOG) as collector:
        for _ in range(3):
            with pytest.raises(TargetTimeout):
                collector.collect()
    deadline = time.monotonic() + 5
    while _threads_and_fds() != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _threads_and_fds() == before
