"""The vmware collector against the vCenter simulator (VPX and ESX modes)."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pyVmomi import SoapStubAdapter, vim

from collectors.vmware import VmwareCollector
from resmon.contract import (
    AuthenticationFailed,
    HostReport,
    HostState,
    ProviderKind,
    Target,
    TargetTimeout,
    TargetUnreachable,
    UnsupportedTarget,
)
from resmon.contract.testing import CollectorContractSuite
from resmon.policy import TargetPolicy, apply_policy
from resmon.validation import check_batch

from . import vcsim

pytestmark = pytest.mark.vcsim
LOG = logging.getLogger("tests.vmware")


def target_for(sim: vcsim.Simulator, **changes: Any) -> Target:
    fields: dict[str, Any] = {
        "name": "vc1",
        "collector": "vmware",
        "url": sim.url,
        "username": sim.args[-3 if sim.cert else -2].split("=", 1)[1],
        "password": sim.args[-2 if sim.cert else -1].split("=", 1)[1],
        "ca_bundle": sim.cert,
        "timeout_s": 10.0,
    }
    fields.update(changes)
    return Target(**fields)


def collect(target: Target) -> list[HostReport]:
    """What resmon keeps of one collection: the collector's facts with the default policy."""
    with VmwareCollector.from_target(target, logger=LOG) as collector:
        reports, _ = apply_policy(collector.collect(), TargetPolicy.defaults())
        return reports


def by_kind(reports: list[HostReport], kind: ProviderKind) -> list[HostReport]:
    return [r for r in reports if r.provider_kind is kind]


def by_name(reports: list[HostReport], name: str) -> HostReport:
    (found,) = [r for r in reports if r.identity.hostname == name]
    return found


class Admin:
    """A pyVmomi session of the test itself, to change the inventory through the API."""

    def __init__(self, sim: vcsim.Simulator) -> None:
        context = ssl.create_default_context(cafile=str(sim.cert)) if sim.cert else None
        stub = SoapStubAdapter(url=sim.url, version="vim.version.version11", sslContext=context)
        self.content = vim.ServiceInstance("ServiceInstance", stub).RetrieveContent()
        target = target_for(sim)
        self.content.sessionManager.Login(target.username, target.password.get_secret_value())

    def find(self, kind: Any, name: str) -> Any:
        view = self.content.viewManager.CreateContainerView(self.content.rootFolder, [kind], True)
        try:
            (found,) = [o for o in view.view if o.name == name]
            return found
        finally:
            view.DestroyView()

    @staticmethod
    def wait(task: Any) -> Any:
        for _ in range(200):
            if task.info.state in ("success", "error"):
                break
            time.sleep(0.05)
        assert task.info.state == "success", task.info.error
        return task.info.result


# -- the shared contract suite --------------------------------------------------------------


@pytest.fixture(scope="class")
def contract_sim(vcsim_binary: Path) -> Iterator[vcsim.Simulator]:
    sim = vcsim.start(username="resmon", password="s3cret")
    try:
        yield sim
    finally:
        sim.stop()


@pytest.mark.usefixtures("contract_sim")
class TestVmwareContract(CollectorContractSuite):
    collector_cls = VmwareCollector

    @pytest.fixture(autouse=True)
    def _sim(self, contract_sim: vcsim.Simulator) -> None:
        self.sim = contract_sim

    def make_target(self) -> Target:
        return target_for(self.sim)

    def make_unreachable_target(self) -> Target:
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        return target_for(self.sim, url=f"https://127.0.0.1:{port}/sdk")


# -- vCenter: clusters, standalone hosts, datastores ----------------------------------------


def test_vpx_reports_every_host_cluster_and_datastore(vpx: vcsim.Simulator) -> None:
    reports = collect(target_for(vpx))
    hosts = by_kind(reports, ProviderKind.COMPUTE_HOST)
    clusters = by_kind(reports, ProviderKind.CLUSTER)
    datastores = by_kind(reports, ProviderKind.SHARED_STORAGE)
    # 2 datacenters × (2 clusters × 3 hosts + 1 standalone host); 2 datastores per datacenter.
    assert len(hosts) == 14
    assert len(clusters) == 4
    assert len(datastores) == 4
    assert check_batch(reports) == {r.key: [] for r in reports}, "no anomalies on clean data"

    host = by_name(reports, "DC0_C0_H0")
    # The simulator's host template: 2 packages, 2 cores, 2 threads, 4294430720 bytes, 2294 MHz.
    assert host.state is HostState.UP
    assert host.cpu is not None and host.cpu.total_cpus == 2 and host.cpu.sockets == 2
    assert host.cpu.cpu_mhz == 2294 and host.cpu.arch == "x86_64"
    assert host.memory is not None and host.memory.total_bytes == 4294430720
    # quickStats.overallMemoryUsage = 1404 MiB observed.
    assert host.memory.used_bytes == 1404 * 1024 * 1024
    vcpu, mem = host.inventory("VCPU"), host.inventory("MEMORY_MB")
    assert vcpu is not None and vcpu.total == 2 and vcpu.max_unit == 2 and vcpu.reserved == 0
    assert mem is not None and mem.total == 4294430720 // 2**20 == 4095
    assert host.inventory("DISK_GB") is None, "disk lives on the datastore providers"
    # hardware.numaInfo: one node holding both logical CPUs and all the memory.
    assert [(c.cell_id, c.cpus, c.memory_bytes) for c in host.numa_cells] == [
        (0, [0, 1], 4294430720)
    ]
    assert host.hypervisor is not None and host.hypervisor.hv_type == "vmware"
    assert host.hypervisor.product == "VMware ESXi"
    assert host.hypervisor.version == "6.5.0 build-5969303"
    assert host.hypervisor.version_major == 6 and host.hypervisor.version_minor == 5
    assert "HW_ARCH_X86_64" in host.traits
    (instance,) = host.supported_instances
    assert (instance.arch, instance.hv_type, instance.vm_mode) == ("x86_64", "vmware", "hvm")
    # The simulator's EnvironmentBrowser offers exactly one VM hardware version.
    assert instance.details["vm_hardware_versions"] == "vmx-13"

    cluster = next(c for c in clusters if c.identity.hostname == "DC0_C0")
    members = [h for h in hosts if h.parent_id == cluster.identity.host_id]
    assert sorted(m.identity.hostname or "" for m in members) == [
        "DC0_C0_H0",
        "DC0_C0_H1",
        "DC0_C0_H2",
    ]
    cvcpu = cluster.inventory("VCPU")
    cmem = cluster.inventory("MEMORY_MB")
    assert cvcpu is not None and cvcpu.total == 6 and cvcpu.max_unit == 2
    assert cmem is not None and cmem.total == 3 * 4095 and cmem.max_unit == 4095
    assert cvcpu.used == sum(m.inventory("VCPU").used for m in members)  # type: ignore[union-attr]

    standalone = by_name(reports, "DC0_H0")
    assert standalone.parent_id is None, "a standalone host has no cluster provider"
    # Location by name, through the folders up to the datacenter.
    assert host.location is not None
    assert (host.location.datacenter, host.location.cluster) == ("DC0", "DC0_C0")
    assert standalone.location is not None
    assert (standalone.location.datacenter, standalone.location.cluster) == ("DC0", None)
    assert cluster.location is not None and cluster.location.datacenter == "DC0"
    assert host.boot_time is not None and host.health is not None
    for h in hosts:
        assert h.instance_states is not None
        assert h.instance_states.running == h.running_instances.count

    host_ids = {h.identity.host_id for h in hosts}
    for ds in datastores:
        disk = ds.inventory("DISK_GB")
        assert disk is not None and disk.total > 0 and disk.used <= disk.total
        assert "MISC_SHARES_VIA_AGGREGATE" in ds.traits
        # Every datastore of a datacenter is mounted on all 7 of its hosts.
        assert len(ds.shared_with) == 7 and set(ds.shared_with) <= host_ids
        assert ds.shared_with == sorted(ds.shared_with)


def test_vms_count_as_allocated_use(vpx: vcsim.Simulator) -> None:
    admin = Admin(vpx)
    vms = admin.content.viewManager.CreateContainerView(
        admin.content.rootFolder, [vim.VirtualMachine], True
    ).view
    on = [vm for vm in vms if vm.runtime.powerState == "poweredOn"]
    reports = collect(target_for(vpx))
    hosts = by_kind(reports, ProviderKind.COMPUTE_HOST)
    assert sum(h.running_instances.count for h in hosts) == len(on) > 0
    assert sum(h.running_instances.vcpus for h in hosts) == sum(
        vm.config.hardware.numCPU for vm in on
    )
    for h in hosts:
        vcpu = h.inventory("VCPU")
        assert vcpu is not None and vcpu.used == h.running_instances.vcpus
        mem = h.inventory("MEMORY_MB")
        assert mem is not None and mem.used * 2**20 == h.running_instances.memory_bytes


def assert_used_agrees_with_instances(host: HostReport) -> None:
    vcpu, memory = host.inventory("VCPU"), host.inventory("MEMORY_MB")
    assert vcpu is not None and vcpu.used == host.running_instances.vcpus
    assert memory is not None
    assert memory.used * 2**20 == host.running_instances.memory_bytes


def test_maintenance_mode_and_disconnected_hosts(fresh_vpx: vcsim.Simulator) -> None:
    admin = Admin(fresh_vpx)
    admin.wait(admin.find(vim.HostSystem, "DC0_C0_H1").EnterMaintenanceMode_Task(timeout=0))
    cluster = admin.find(vim.ClusterComputeResource, "DC0_C0")
    spec = vim.host.ConnectSpec(
        hostName="esx-new.example", userName="root", password="x", force=True
    )
    admin.wait(cluster.AddHost_Task(spec=spec, asConnected=False))

    reports = collect(target_for(fresh_vpx))
    maintenance = by_name(reports, "DC0_C0_H1")
    disconnected = by_name(reports, "esx-new.example")
    assert maintenance.state is HostState.MAINTENANCE
    assert disconnected.state is HostState.DISCONNECTED
    cluster_report = by_name(reports, "DC0_C0")
    for down in (maintenance, disconnected):
        assert "COMPUTE_STATUS_DISABLED" in down.traits
        assert down.parent_id == cluster_report.identity.host_id
        for inv in down.inventories:
            assert inv.reserved == inv.total and inv.capacity == 0
        assert down.cpu is not None and down.cpu.total_cpus == 2, "hardware still reported"
        assert_used_agrees_with_instances(down)
    # vCenter's view of a disconnected host's VMs is stale: none are reported.
    assert disconnected.running_instances.count == 0
    up = by_name(reports, "DC0_C0_H0")
    assert up.state is HostState.UP and "COMPUTE_STATUS_DISABLED" not in up.traits

    vcpu = cluster_report.inventory("VCPU")
    assert vcpu is not None
    assert vcpu.total == 4 * 2, "four hosts now, all counted in the total"
    assert vcpu.reserved == 2 * 2, "the two hosts that are down are reserved"
    assert vcpu.capacity == 2 * 2 * 4.0
    assert cluster_report.state is HostState.UP
    # vSphere's effective figures count the two running hosts, as resmon does.
    assert cluster_report.anomalies == []

    admin.wait(admin.find(vim.HostSystem, "DC0_C0_H1").ExitMaintenanceMode_Task(timeout=0))
    assert by_name(collect(target_for(fresh_vpx)), "DC0_C0_H1").state is HostState.UP


def test_not_responding_and_standby_hosts(fresh_vpx: vcsim.Simulator) -> None:
    for name in ("DC0_C0_H0", "DC0_C0_H1", "DC0_C0_H2"):
        fresh_vpx.set_host_state(name, connection="notResponding")
    fresh_vpx.set_host_state("DC0_H0", power="standBy")
    reports = collect(target_for(fresh_vpx))
    assert by_name(reports, "DC0_C0_H0").state is HostState.NOT_RESPONDING
    assert by_name(reports, "DC0_H0").state is HostState.STANDBY
    for name in ("DC0_C0_H0", "DC0_C0_H1", "DC0_C0_H2", "DC0_H0"):
        assert_used_agrees_with_instances(by_name(reports, name))
    assert by_name(reports, "DC0_C0_H0").running_instances.count == 0  # stale view: none
    cluster = by_name(reports, "DC0_C0")
    # No host of the cluster can take a VM: the cluster itself is not schedulable, and says why.
    assert cluster.state is HostState.NOT_RESPONDING
    assert "COMPUTE_STATUS_DISABLED" in cluster.traits
    assert all(inv.capacity == 0 for inv in cluster.inventories)
    (anomaly,) = cluster.anomalies
    assert anomaly.code == "vmware.cluster_down" and "DC0_C0_H2 not_responding" in anomaly.message


def test_host_with_an_inaccessible_mount_is_not_a_sharer(fresh_vpx: vcsim.Simulator) -> None:
    """All paths down on one host: vCenter keeps the datastore in the host's ``datastore`` list
    and marks the mount ``accessible=false``; the host cannot use it, so it is not a sharer."""
    before = collect(target_for(fresh_vpx))
    (datastore,) = by_kind(before, ProviderKind.SHARED_STORAGE)
    down = by_name(before, "DC0_C0_H1").identity.host_id
    assert down in datastore.shared_with and len(datastore.shared_with) == 4
    name = datastore.identity.hostname or ""
    fresh_vpx.set_mount("DC0_C0_H1", name, accessible=False)
    admin = Admin(fresh_vpx)
    host = admin.find(vim.HostSystem, "DC0_C0_H1")
    assert name in [ds.name for ds in host.datastore], "the host still lists it"
    (mount,) = [m for m in admin.find(vim.Datastore, name).host if m.key == host]
    assert mount.mountInfo.accessible is False
    (after,) = by_kind(collect(target_for(fresh_vpx)), ProviderKind.SHARED_STORAGE)
    assert down not in after.shared_with
    assert sorted([*after.shared_with, down]) == datastore.shared_with
    assert after.state is HostState.UP, "the others still use it"
    fresh_vpx.set_mount("DC0_C0_H1", name, accessible=True)
    (again,) = by_kind(collect(target_for(fresh_vpx)), ProviderKind.SHARED_STORAGE)
    assert again.shared_with == datastore.shared_with


def _allocation(reservation: int, expandable: bool = False) -> Any:
    return vim.ResourceAllocationInfo(
        reservation=reservation,
        limit=-1,
        expandableReservation=expandable,
        shares=vim.SharesInfo(level="normal", shares=0),
    )


def test_resource_pool_reservations_are_held_by_the_cluster(fresh_vpx: vcsim.Simulator) -> None:
    """A pool created below the cluster's root resource pool with a reservation of 2294 MHz
    (one of the simulator's 2294 MHz CPUs) and 2048 MB: VMs outside it cannot be started
    against that, so the cluster holds it; raising it through UpdateConfig raises what is
    held. The member hosts hold nothing more: DRS places the pool's VMs across them."""
    admin = Admin(fresh_vpx)
    root = admin.find(vim.ClusterComputeResource, "DC0_C0").resourcePool

    def held(name: str) -> tuple[int, int]:
        report = by_name(collect(target_for(fresh_vpx)), name)
        vcpu, memory = report.inventory("VCPU"), report.inventory("MEMORY_MB")
        assert vcpu is not None and memory is not None
        return vcpu.hypervisor_reserved, memory.hypervisor_reserved

    assert held("DC0_C0") == (0, 0), "the root resource pool is the cluster, not a reservation"
    spec = vim.ResourceConfigSpec(
        cpuAllocation=_allocation(2294), memoryAllocation=_allocation(2048)
    )
    pool = root.CreateResourcePool(name="gold", spec=spec)
    assert held("DC0_C0") == (1, 2048)
    pool.UpdateConfig(
        name=None,
        config=vim.ResourceConfigSpec(
            cpuAllocation=_allocation(2295), memoryAllocation=_allocation(3072)
        ),
    )
    assert pool.config.memoryAllocation.reservation == 3072
    assert held("DC0_C0") == (2, 3072), "2295 MHz needs a second 2294 MHz CPU"
    assert held("DC0_C0_H0") == (0, 0)
    # A VM of 2 vCPUs and 1024 MB started in the pool runs on its reservation: the pool holds
    # the rest, and the VM counts in its host's used.
    datacenter = admin.find(vim.Datacenter, "DC0")
    config = vim.vm.ConfigSpec(
        name="in-gold",
        numCPUs=2,
        memoryMB=1024,
        guestId="otherGuest64",
        files=vim.vm.FileInfo(vmPathName="[LocalDS_0]"),
    )
    host = admin.find(vim.HostSystem, "DC0_C0_H0")
    vm = admin.wait(datacenter.vmFolder.CreateVM_Task(config=config, pool=pool, host=host))
    admin.wait(vm.PowerOnVM_Task())
    assert held("DC0_C0") == (0, 3072 - 1024)
    # An expandable pool reserving nothing whose child reserves 1024 MB borrows it from the
    # root: the subtree holds 1024.
    bronze = root.CreateResourcePool(
        name="bronze",
        spec=vim.ResourceConfigSpec(
            cpuAllocation=_allocation(0, expandable=True),
            memoryAllocation=_allocation(0, expandable=True),
        ),
    )
    bronze.CreateResourcePool(
        name="bronze-a",
        spec=vim.ResourceConfigSpec(
            cpuAllocation=_allocation(0), memoryAllocation=_allocation(1024)
        ),
    )
    assert held("DC0_C0") == (0, 3072 - 1024 + 1024)


# -- ESXi direct connection ------------------------------------------------------------------


def test_esx_mode(esx: vcsim.Simulator) -> None:
    reports = collect(target_for(esx, name="esx1"))
    (host,) = by_kind(reports, ProviderKind.COMPUTE_HOST)
    assert not by_kind(reports, ProviderKind.CLUSTER)
    (datastore,) = by_kind(reports, ProviderKind.SHARED_STORAGE)
    assert host.identity.hostname == "localhost.localdomain"
    assert host.identity.target == "esx1" and host.parent_id is None
    assert datastore.shared_with == [host.identity.host_id]
    assert host.running_instances.count == 3, "all 3 simulated VMs are powered on"
    assert host.supported_instances[0].details["vm_hardware_versions"] == "vmx-13"


# -- errors ----------------------------------------------------------------------------------


def test_wrong_password_is_authentication_failed(vpx: vcsim.Simulator) -> None:
    with pytest.raises(AuthenticationFailed, match="refused"):
        collect(target_for(vpx, password="wrong"))


def test_untrusted_certificate_is_refused_by_default(vpx: vcsim.Simulator) -> None:
    with pytest.raises(AuthenticationFailed, match="certificate"):
        collect(target_for(vpx, ca_bundle=None))


def test_insecure_opt_out_works_and_warns(
    vpx: vcsim.Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        reports = collect(target_for(vpx, ca_bundle=None, verify_tls=False))
    assert reports
    assert any("verification is OFF" in r.getMessage() for r in caplog.records)


def test_plain_http(vcsim_binary: Path) -> None:
    sim = vcsim.start(tls=False, username="resmon", password="s3cret")
    try:
        assert sim.url.startswith("http://")
        assert by_kind(collect(target_for(sim)), ProviderKind.COMPUTE_HOST)
    finally:
        sim.stop()


def test_simulator_killed_mid_run(fresh_vpx: vcsim.Simulator) -> None:
    collector = VmwareCollector.from_target(target_for(fresh_vpx), logger=LOG)
    try:
        assert collector.collect()
        fresh_vpx.kill()
        with pytest.raises((TargetUnreachable, TargetTimeout)):
            collector.collect()
    finally:
        collector.close()


def test_silent_server_is_a_timeout() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        target = Target(
            name="silent",
            collector="vmware",
            url=f"http://127.0.0.1:{port}/sdk",
            username="u",
            password="p",
            timeout_s=0.5,
        )
        with pytest.raises(TargetTimeout):
            collect(target)


def test_expired_session_logs_in_again(fresh_vpx: vcsim.Simulator) -> None:
    collector = VmwareCollector.from_target(target_for(fresh_vpx), logger=LOG)
    try:
        first = collector.collect()
        session = collector._session
        assert session is not None
        key = session.content.sessionManager.currentSession.key
        admin = Admin(fresh_vpx)
        admin.content.sessionManager.TerminateSession(sessionId=[key])
        second = collector.collect()
        assert collector._session is not session, "a new session was created"
        assert [r.identity.host_id for r in first] == [r.identity.host_id for r in second]
    finally:
        collector.close()


def test_bad_options_and_urls(vpx: vcsim.Simulator) -> None:
    with pytest.raises(UnsupportedTarget, match="page_sizes"):
        VmwareCollector.from_target(target_for(vpx, options={"page_sizes": 5}), logger=LOG)
    with pytest.raises(UnsupportedTarget, match="URL"):
        VmwareCollector.from_target(target_for(vpx, url="ftp://x/sdk"), logger=LOG)
    with pytest.raises(AuthenticationFailed):
        VmwareCollector.from_target(target_for(vpx, username=None), logger=LOG)
    reports = collect(target_for(vpx, options={"page_size": 5}))
    assert len(by_kind(reports, ProviderKind.COMPUTE_HOST)) == 14, "every page read"


# -- dumps -----------------------------------------------------------------------------------


def test_dump_native_replays_to_the_same_reports(vpx: vcsim.Simulator, tmp_path: Path) -> None:
    with VmwareCollector.from_target(target_for(vpx, dump_native_dir=tmp_path), logger=LOG) as c:
        live = c.collect()
    (dump,) = tmp_path.glob("vmware-vc1-*Z-inventory.json")
    offline = VmwareCollector.normalise_offline({"dump": [dump]}, target="vc1")
    assert [r.model_dump() for r in offline] == [r.model_dump() for r in live]


def test_concurrent_collectors_share_nothing(vpx: vcsim.Simulator) -> None:
    results: list[int] = []

    def run() -> None:
        results.append(len(collect(target_for(vpx))))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [22, 22, 22]


def test_policy_changes_capacity_the_same_way(
    vpx: vcsim.Simulator,
    check_policy_applies_uniformly: Callable[[list[HostReport]], set[str]],
) -> None:
    with VmwareCollector.from_target(target_for(vpx), logger=LOG) as collector:
        facts = collector.collect()
    assert check_policy_applies_uniformly(facts) == {"VCPU", "MEMORY_MB"}
