#!/usr/bin/env python3
"""Benchmark: resmon's vmware collector on a 500-host simulated vCenter.

Starts the simulator (tests/vmware/vcsim) with 10 clusters × 50 hosts and 200 VMs on
127.0.0.1:443 (HTTPS; vmware_exporter only speaks to port 443, so this needs root or
CAP_NET_BIND_SERVICE) and measures, in the same run:

- resmon: one full collection (PropertyCollector pass, EnvironmentBrowser queries, normalisation
  into validated reports) on a session already logged in, as in the daemon's steady state; the
  first (cold) collection is printed too;
- the floor: one bare RetrievePropertiesEx (+ Continue) pass of the same properties with pyVmomi;
- vmware_exporter 0.18.4 (installed from PyPI into its own venv under tests/.build): one
  /metrics scrape of the same simulator.

Each figure is the median of --repeat runs. The last line is
``ratio_vs_floor=<float> speedup_vs_vmware_exporter=<float>`` (targets: ≤ 1.5 and ≥ 10).
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import ssl
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pyVmomi import SoapStubAdapter, vim, vmodl  # noqa: E402

from collectors.vmware import VmwareCollector  # noqa: E402
from collectors.vmware._collector import API_VERSION  # noqa: E402
from collectors.vmware._native import PROPERTIES  # noqa: E402
from resmon.contract import ProviderKind, Target  # noqa: E402
from tests.vmware import vcsim  # noqa: E402

EXPORTER_VENV = REPO / "tests" / ".build" / "vmware-exporter-venv"
EXPORTER_REQUIREMENTS = ["vmware_exporter==0.18.4", "Twisted<23", "requests"]
USER, PASSWORD = "bench", "bench-pass"
PC = vmodl.query.PropertyCollector


def timed(fn: object, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return times


def floor_pass(sim: vcsim.Simulator, repeat: int) -> list[float]:
    """The bare API cost: the same properties, one RetrievePropertiesEx pass, nothing else."""
    context = ssl.create_default_context(cafile=str(sim.cert))
    stub = SoapStubAdapter(url=sim.url, version=API_VERSION, sslContext=context)
    content = vim.ServiceInstance("ServiceInstance", stub).RetrieveContent()
    content.sessionManager.Login(USER, PASSWORD, None)
    view = content.viewManager.CreateContainerView(
        content.rootFolder,
        [vim.HostSystem, vim.ComputeResource, vim.Datastore, vim.VirtualMachine],
        True,
    )
    spec = PC.FilterSpec(
        objectSet=[
            PC.ObjectSpec(
                obj=view,
                skip=True,
                selectSet=[
                    PC.TraversalSpec(name="v", path="view", skip=False, type=vim.view.ContainerView)
                ],
            )
        ],
        propSet=[
            PC.PropertySpec(type=getattr(vim, k), pathSet=list(p)) for k, p in PROPERTIES.items()
        ],
    )

    def once() -> None:
        result = content.propertyCollector.RetrievePropertiesEx(
            specSet=[spec], options=PC.RetrieveOptions(maxObjects=1000)
        )
        while result is not None and result.token:
            result = content.propertyCollector.ContinueRetrievePropertiesEx(token=result.token)

    once()  # warm the connection like resmon's reused session
    times = timed(once, repeat)
    content.sessionManager.Logout()
    return times


def resmon_collect(sim: vcsim.Simulator, repeat: int) -> tuple[float, list[float], int]:
    target = Target(
        name="bench", collector="vmware", url=sim.url, username=USER, password=PASSWORD,
        ca_bundle=sim.cert, timeout_s=120,
    )  # fmt: skip
    collector = VmwareCollector.from_target(target, logger=logging.getLogger("bench"))
    try:
        start = time.perf_counter()
        reports = collector.collect()
        cold = time.perf_counter() - start
        hosts = sum(r.provider_kind is ProviderKind.COMPUTE_HOST for r in reports)
        warm = timed(collector.collect, repeat)
    finally:
        collector.close()
    return cold, warm, hosts


def exporter_venv() -> Path:
    python = EXPORTER_VENV / "bin" / "python"
    if not (EXPORTER_VENV / "bin" / "vmware_exporter").exists():
        subprocess.run([sys.executable, "-m", "venv", str(EXPORTER_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *EXPORTER_REQUIREMENTS], check=True
        )
    return EXPORTER_VENV / "bin" / "vmware_exporter"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def exporter_scrape(repeat: int) -> list[float]:
    binary = exporter_venv()
    port = free_port()
    env = dict(
        os.environ,
        VSPHERE_HOST="127.0.0.1",
        VSPHERE_USER=USER,
        VSPHERE_PASSWORD=PASSWORD,
        VSPHERE_IGNORE_SSL="True",
    )
    process = subprocess.Popen(
        [str(binary), "--address", "127.0.0.1", "--port", str(port), "--loglevel", "ERROR"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("vmware_exporter did not start") from None
                time.sleep(0.2)

        def once() -> None:
            url = f"http://127.0.0.1:{port}/metrics"
            with urllib.request.urlopen(url, timeout=600) as answer:
                body = answer.read().decode()
            if "vmware_host_power_state" not in body:
                raise RuntimeError(f"vmware_exporter scrape has no host metrics: {body[:500]}")

        return timed(once, repeat)
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--hosts-per-cluster", type=int, default=50)
    parser.add_argument("--vms", type=int, default=200, help="total VMs (spread over clusters)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--exporter-repeat", type=int, default=1)
    parser.add_argument("--listen", default="127.0.0.1:443")
    args = parser.parse_args()

    sim = vcsim.start(
        cluster=args.clusters,
        host=args.hosts_per_cluster,
        standalone=0,
        vm=max(args.vms // args.clusters, 1),  # per resource pool = per cluster
        listen=args.listen,
        username=USER,
        password=PASSWORD,
    )
    try:
        print(f"simulator: {sim.url} ({args.clusters} clusters × {args.hosts_per_cluster} hosts)")
        cold, warm, hosts = resmon_collect(sim, args.repeat)
        resmon = statistics.median(warm)
        print(f"resmon: {hosts} hosts; first collection {cold:.3f} s (login, view, descriptors)")
        print(f"resmon full collection (median of {args.repeat}): {resmon:.3f} s")
        floor = statistics.median(floor_pass(sim, args.repeat))
        print(f"floor, bare RetrievePropertiesEx pass (median of {args.repeat}): {floor:.3f} s")
        exporter = statistics.median(exporter_scrape(args.exporter_repeat))
        print(f"vmware_exporter 0.18.4, one /metrics scrape: {exporter:.3f} s")
    finally:
        sim.stop()
    print(f"ratio_vs_floor={resmon / floor:.3f} speedup_vs_vmware_exporter={exporter / resmon:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
