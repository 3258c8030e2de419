"""``resmon normalise vmware --soap``: SOAP captures (vcrpy cassettes, saved responses) offline."""

from __future__ import annotations

import http.client
import http.server
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from collectors.vmware import VmwareCollector
from resmon import cli
from resmon.contract import HostReport, InvalidNativeData, ProviderKind

from . import vcsim
from .test_vmware_vcsim import target_for

LOG = logging.getLogger("tests.vmware")


def cassettes(corpus: Path, *names: str) -> list[Path]:
    return [corpus / "vmware" / "pyvmomi" / f"test_json_{name}.yaml" for name in names]


def test_pyvmomi_cassettes_normalise_like_a_collection(corpus: Path) -> None:
    """The ESXi 8.0.3 / vCenter 8.0.3 recordings: Fetch answers, read with their requests."""
    paths = cassettes(corpus, "host_explode", "datastore_explode")
    reports = VmwareCollector.normalise_offline({"soap": paths}, target="capture")
    host = next(r for r in reports if r.provider_kind is ProviderKind.COMPUTE_HOST)
    ds = next(r for r in reports if r.provider_kind is ProviderKind.SHARED_STORAGE)
    assert host.identity.host_id == "a6b70142-625f-e04e-edf6-05098f74aff3"
    assert host.hypervisor is not None and host.hypervisor.version == "8.0.3 build-69507956"
    memory, vcpu = host.inventory("MEMORY_MB"), host.inventory("VCPU")
    assert memory is not None and (memory.total, memory.hypervisor_reserved) == (16382, 2660)
    assert vcpu is not None and (vcpu.total, vcpu.hypervisor_reserved) == (8, 2)
    assert "HW_CPU_X86_AVX512F" in host.traits
    # hardware.numaInfo, read from the Fetch of host-14's hardware.
    assert [(c.cell_id, len(c.cpus), c.memory_bytes) for c in host.numa_cells] == [
        (0, 8, 17177128960)
    ]
    disk = ds.inventory("DISK_GB")
    assert disk is not None and (disk.total, disk.used) == (359, 22)
    assert ds.shared_with == [host.identity.host_id]
    # The response headers date the capture.
    assert host.collected_at.isoformat() == "2023-12-14T10:38:20+00:00"


def test_cli_normalise_vmware_soap(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["normalise", "vmware", "--target-name", "bug-1234"]
    for path in cassettes(corpus, "host_explode", "datastore_explode", "vm_explode_default"):
        argv += ["--soap", str(path)]
    assert cli.main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {r["provider_kind"] for r in printed} == {"compute_host", "shared_storage"}
    assert all(r["identity"]["target"] == "bug-1234" for r in printed)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"not: [a cassette", "neither a vcrpy cassette nor SOAP responses"),
        (b"interactions: []\n", "no host, cluster, datastore or VM properties"),
        (
            b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
            b"<soapenv:Body><RetrievePropertiesExResponse xmlns='urn:vim25'><returnval>"
            b"<objects><obj type='HostSystem'>host-1</obj><propSet><name>name</name>"
            b"<val xsi:type='xsd:string'>x</val></propSet></objects></returnval>"
            b"</RetrievePropertiesExResponse></soapenv:Body></soapenv:Envelope>",
            "not a SOAP envelope",
        ),
        (
            b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
            b"<soapenv:Body><RetrievePropertiesExResponse xmlns='urn:vim25'><returnval>"
            b"<objects><obj type='HostSystem'>host-1</obj><propSet><name>name</name>"
            b"<val xsi:type='NoSuchType'>x</val></propSet></objects></returnval>"
            b"</RetrievePropertiesExResponse></soapenv:Body></soapenv:Envelope>",
            "does not decode",
        ),
    ],
    ids=["not-yaml", "empty-cassette", "undeclared-prefix", "unknown-type"],
)
def test_unusable_captures(content: bytes, needle: str, tmp_path: Path) -> None:
    path = tmp_path / "capture"
    path.write_bytes(content)
    with pytest.raises(InvalidNativeData, match=needle):
        VmwareCollector.normalise_offline({"soap": [path]}, target="capture")


def test_nothing_to_normalise() -> None:
    with pytest.raises(InvalidNativeData, match="--dump FILE or --soap FILE"):
        VmwareCollector.normalise_offline({}, target="capture")


# -- responses saved by a proxy in front of the simulator ------------------------------------


class _Recorder(http.server.ThreadingHTTPServer):
    """A reverse proxy on loopback that keeps every response body it relays."""

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Relay)
        self.upstream = urlsplit(upstream)
        self.bodies: list[bytes] = []


class _Relay(http.server.BaseHTTPRequestHandler):
    server: _Recorder

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base-class name
        pass

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        upstream = self.server.upstream
        conn = http.client.HTTPConnection(upstream.hostname or "", upstream.port, timeout=10)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
        conn.request(self.command, self.path, body=body, headers=headers)
        answer = conn.getresponse()
        data = answer.read()
        conn.close()
        if self.command == "POST":
            self.server.bodies.append(data)
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _relay  # noqa: N815 - http.server's naming


@pytest.fixture
def plain_vpx(vcsim_binary: Path) -> Iterator[vcsim.Simulator]:
    sim = vcsim.start(tls=False, cluster=1, host=2, standalone=1, vm=2, username="u", password="p")
    try:
        yield sim
    finally:
        sim.stop()


def _comparable(report: HostReport) -> dict[str, Any]:
    """A report without what only a live collection has: its time and the VM hardware versions
    (QueryConfigOptionDescriptor names its EnvironmentBrowser only in the request)."""
    data = report.model_dump(mode="json", exclude={"collected_at"})
    for instance in data["supported_instances"]:
        instance["details"] = {}
    return data


@pytest.mark.vcsim
def test_saved_responses_give_the_live_reports(plain_vpx: vcsim.Simulator, tmp_path: Path) -> None:
    recorder = _Recorder(plain_vpx.url)
    thread = threading.Thread(target=recorder.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{recorder.server_address[1]}/sdk"
        with VmwareCollector.from_target(
            target_for(plain_vpx, url=url, ca_bundle=None), logger=LOG
        ) as collector:
            live = collector.collect()
    finally:
        recorder.shutdown()
        recorder.server_close()
    saved = tmp_path / "responses.xml"
    saved.write_bytes(b"\n".join(recorder.bodies))
    assert b"RetrievePropertiesExResponse" in saved.read_bytes()
    offline = VmwareCollector.normalise_offline({"soap": [saved]}, target=live[0].identity.target)
    assert sorted(map(_comparable, offline), key=str) == sorted(map(_comparable, live), key=str)
