"""A mixed fleet produced by the real collectors, stored in resmon, for the Placement oracle.

- libvirt: the built-in test driver (https://libvirt.org/drvtest.html), ``test:///default`` and
  three ``test:///path/node.xml`` hosts written here. The driver's CPU map and capabilities are
  fixed (3 online CPUs of an i686 host, so VCPU total 3); node memory, guests and pools come from
  the XML, and the driver gives every pool 100 GiB of capacity. A ``netfs`` pool is shared
  storage (its own provider, shared with the host), a ``dir`` pool is local DISK_GB. One host
  runs guests with 6 vCPUs in all on its 3 CPUs (overcommitted, as a ratio of 4 allows).
- vSphere: two vCenter simulators (tests/vmware/vcsim), one with the simulator's own small hosts
  and one shaped as 32-thread AVX2 hosts with 128 GiB; clusters, standalone hosts, and datastores
  mounted by every host of their datacenter (sharing providers); one host in maintenance mode
  and one not responding (through the simulator's test hook).
- Hyper-V: every host profile of tests/hyperv/fixtures/hosts through the collector's normaliser,
  one target each (two of them are not responding: reserved = total).

Every report goes through Nova's default policy (ratios 4/1/1), as ``resmon.runner`` applies it.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

from collectors.hyperv import HypervCollector
from collectors.libvirt import LibvirtCollector
from collectors.vmware import VmwareCollector
from resmon.contract import Target
from resmon.policy import TargetPolicy, apply_policy
from resmon.runner import CollectionOutcome, collect_target
from resmon.store import Store, TargetSpec
from tests.hyperv.conftest import HOSTS
from tests.vmware import vcsim
from tests.vmware.test_vmware_vcsim import target_for

_GUEST = """  <domain type='test'>
    <name>{name}</name>
    <uuid>{uuid}</uuid>
    <memory unit='KiB'>{memory_kib}</memory>
    <currentMemory unit='KiB'>{memory_kib}</currentMemory>
    <vcpu placement='static'>{vcpus}</vcpu>
    <os><type arch='i686'>hvm</type></os>
  </domain>
"""
_NETFS = """  <pool type='netfs'>
    <name>{name}</name><uuid>{uuid}</uuid>
    <source><host name='{server}'/><dir path='/export/{name}'/><format type='nfs'/></source>
    <target><path>/var/lib/nova/instances</path></target>
  </pool>
"""
_DIR = """  <pool type='dir'>
    <name>local</name><uuid>{uuid}</uuid>
    <target><path>/var/lib/libvirt/images</path></target>
  </pool>
"""


def _node_xml(memory_kib: int, guests: list[tuple[int, int]], netfs: str | None,
              local: bool, seed: int) -> str:  # fmt: skip
    """A test-driver node: ``guests`` as (vcpus, memory MiB), an NFS pool named ``netfs``
    (shared storage) and/or a local dir pool."""
    parts = [
        "<node>\n",
        "  <cpu><mhz>2600</mhz><model>i686</model><active>3</active><nodes>1</nodes>"
        "<sockets>1</sockets><cores>3</cores><threads>1</threads></cpu>\n",
        f"  <memory>{memory_kib}</memory>\n",
    ]
    for n, (vcpus, memory_mib) in enumerate(guests):
        parts.append(_GUEST.format(
            name=f"guest-{n}", uuid=f"6f2c3b1e-0a4d-4c8e-9b7f-{seed:04d}{n:08d}",
            memory_kib=memory_mib * 1024, vcpus=vcpus,
        ))  # fmt: skip
    if netfs:
        uuid = f"7e3d2c1b-5a4f-4e9d-8c7b-{seed:04d}00000001"
        parts.append(_NETFS.format(name=netfs, uuid=uuid, server=f"{netfs}.example"))
    if local:
        parts.append(_DIR.format(uuid=f"8d4e3f2a-6b5c-4fa0-9d8c-{seed:04d}00000002"))
    parts.append("</node>\n")
    return "".join(parts)


#: (target, memory KiB, guests as (vcpus, MiB), NFS pool, local dir pool)
LIBVIRT_NODES = [
    ("lv-nfs-a", 16 * 1024 * 1024, [(2, 2048), (2, 2048), (2, 1024)], "nfs-a", True),
    ("lv-nfs-b", 64 * 1024 * 1024, [(1, 4096)], "nfs-b", False),
    ("lv-local", 8 * 1024 * 1024, [], None, True),
]

#: The second vCenter's hosts: 2 packages, 16 cores, 32 threads, 128 GiB, AVX2 and AES.
SHAPED_VCENTER = [
    "-host-cpu-model=Intel(R) Xeon(R) Gold 6130 CPU @ 2.10GHz",
    "-host-cpu-packages=2",
    "-host-cpu-cores=16",
    "-host-cpu-threads=32",
    "-host-cpu-mhz=2100",
    "-host-memory-mb=131072",
    "-host-cpuid=intel,sse3,ssse3,sse41,sse42,avx,avx2,aes,popcnt",
]


def _record(store: Store, outcome: CollectionOutcome, collector: str, url: str) -> None:
    assert outcome.ok, f"{outcome.target}: {outcome.error_kind}: {outcome.error_message}"
    store.record(TargetSpec(outcome.target, collector, url, 3600.0), outcome)


def _libvirt(store: Store, workdir: Path) -> None:
    urls = {"lv-default": "test:///default"}
    for seed, (name, memory, guests, netfs, local) in enumerate(LIBVIRT_NODES, 1):
        node = workdir / f"{name}.xml"
        node.write_text(_node_xml(memory, guests, netfs, local, seed))
        urls[name] = f"test://{node}"
    for name, url in urls.items():
        target = Target(name=name, collector="libvirt", url=url, timeout_s=30)
        outcome, _ = collect_target(LibvirtCollector, target)
        _record(store, outcome, "libvirt", url)


def _vcenters(store: Store, stack: ExitStack) -> None:
    small = vcsim.start(dc=1, cluster=1, host=2, standalone=1, vm=2, ds=1,
                        username="resmon", password="s3cret")  # fmt: skip
    stack.callback(small.stop)
    shaped = vcsim.start(dc=1, cluster=2, host=2, standalone=1, vm=2, ds=2,
                         username="resmon", password="s3cret", extra=SHAPED_VCENTER)  # fmt: skip
    stack.callback(shaped.stop)
    # Hosts that are not schedulable: reserved = total, COMPUTE_STATUS_DISABLED.
    shaped.set_host_state("DC0_C1_H1", connection="notResponding")
    small.set_host_state("DC0_C0_H1", power="standBy")
    for name, sim in (("vc-small", small), ("vc-shaped", shaped)):
        outcome, _ = collect_target(VmwareCollector, target_for(sim, name=name, timeout_s=30.0))
        _record(store, outcome, "vmware", sim.url)


def _hyperv(store: Store) -> None:
    for path in sorted(HOSTS.glob("*.json")):
        target = f"hv-{path.stem}"
        facts = HypervCollector.normalise_offline({"json": [path]}, target=target)
        reports, _ = apply_policy(facts, TargetPolicy.defaults())
        outcome = CollectionOutcome(
            target=target, collector="hyperv", started_at=datetime.now(UTC), duration_s=1.0,
            reports=reports,
        )  # fmt: skip
        _record(store, outcome, "hyperv", f"https://{path.stem}:5986/wsman")


def populate_mixed(store: Store, workdir: Path) -> None:
    """Collect the fleet of this module's docstring into ``store`` (simulators stopped after)."""
    _libvirt(store, workdir)
    with ExitStack() as stack:
        _vcenters(store, stack)
    _hyperv(store)
