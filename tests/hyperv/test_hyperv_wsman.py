"""The collector against the WS-Management test server: contract, profiles, faults, secrets."""

from __future__ import annotations

import codecs
import inspect
import logging
import socket
from pathlib import Path

import pytest
import requests.exceptions
import urllib3.exceptions
import winrm.exceptions
import winrm.transport

from collectors.hyperv import HypervCollector, normalise, parse_document
from collectors.hyperv._errors import map_winrm_errors
from resmon.contract import (
    AuthenticationFailed,
    CollectorError,
    CollectorInfo,
    HostReport,
    InvalidNativeData,
    Target,
    TargetTimeout,
    TargetUnreachable,
    UnsupportedTarget,
)
from resmon.contract.testing import CollectorContractSuite

from .conftest import FAULTS, HOSTS, PASSWORD, ServerFactory, host_reply, make_target
from .wsman_server import Reply, WSManServer

LOG = logging.getLogger("tests.hyperv")
PROFILES = sorted(p.stem for p in HOSTS.glob("*.json"))
#: Every exchange of one collection, in order (two Receives: output arrives in two parts).
EXCHANGE = ["Create", "Command", "Receive", "Receive", "Signal", "Delete"]


def collect(target: Target) -> list[HostReport]:
    collector = HypervCollector.from_target(target, logger=LOG)
    try:
        return collector.collect()
    finally:
        collector.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TestHypervContract(CollectorContractSuite):
    collector_cls = HypervCollector

    @pytest.fixture(autouse=True)
    def _server(self, wsman: ServerFactory, pki: tuple[Path, Path, Path]) -> None:
        self.server = wsman()
        self.ca = pki[0]

    def make_target(self) -> Target:
        return make_target(self.server, self.ca)

    def make_unreachable_target(self) -> Target:
        return make_target(self.server, self.ca, url=f"https://127.0.0.1:{closed_port()}/wsman")


@pytest.mark.parametrize("profile", PROFILES)
def test_host_profiles_through_winrm(
    profile: str, wsman: ServerFactory, pki: tuple[Path, Path, Path]
) -> None:
    server = wsman(host_reply(profile))
    (got,) = collect(make_target(server, pki[0]))
    document = parse_document((HOSTS / f"{profile}.json").read_bytes())
    expected = normalise(
        document,
        target="hv-under-test",
        collector=CollectorInfo(name="hyperv", version=HypervCollector.version),
        collected_at=got.collected_at,
    )
    assert got == expected
    assert server.errors == [], "the server saw the collector's own script"
    assert server.actions == EXCHANGE
    assert server.shells == {}, "the shell is deleted after the collection"


@pytest.mark.parametrize(
    ("server_kwargs", "options"),
    [
        ({"auth": "basic"}, {"transport": "basic"}),
        ({"tls": False}, {"allow_http": True}),
    ],
    ids=["https-basic", "http-ntlm-sealed"],
)
def test_other_transports(
    server_kwargs: dict[str, object],
    options: dict[str, object],
    wsman: ServerFactory,
    pki: tuple[Path, Path, Path],
) -> None:
    server = wsman(**server_kwargs)
    (got,) = collect(make_target(server, pki[0], options=options))
    assert got.identity.host_id == "4c4c4544-0042-3510-8052-b3c04f4b4e32"
    assert server.actions == EXCHANGE
    if server.scheme == "http":
        # Over plain HTTP every WinRS message travelled NTLM-sealed.
        assert server.sealed_messages == len(EXCHANGE)


def _reply(fault: str) -> Reply:
    if fault == "utf16_without_bom":
        text = (HOSTS / "server2019_small.json").read_text(encoding="utf-8-sig")
        return Reply(stdout=text.encode("utf-16-le"))
    if fault.endswith(".clixml"):
        return Reply(stderr=(FAULTS / fault).read_bytes(), exit_code=1)
    return Reply(stdout=(FAULTS / fault).read_bytes())


@pytest.mark.parametrize(
    ("fault", "error", "needle"),
    [
        ("role_absent.clixml", UnsupportedTarget, "-IncludeManagementTools"),
        ("access_denied.clixml", AuthenticationFailed, "required permission"),
        ("powershell_exception.clixml", InvalidNativeData, "0x80041033"),
        ("truncated.json", InvalidNativeData, "not complete JSON"),
        ("depth_truncated.json", InvalidNativeData, "NumaNodes[].ProcessorsAvailability"),
        ("utf16_without_bom", InvalidNativeData, "no byte-order mark"),
    ],
)
def test_fault_profiles(
    fault: str,
    error: type[CollectorError],
    needle: str,
    wsman: ServerFactory,
    pki: tuple[Path, Path, Path],
) -> None:
    server = wsman(_reply(fault))
    with pytest.raises(error) as caught:
        collect(make_target(server, pki[0]))
    assert type(caught.value) is error
    assert needle in str(caught.value)
    assert caught.value.target == "hv-under-test"
    assert server.shells == {}, "a failed run still deletes its shell"


def test_winrm_access_denied_fault(wsman: ServerFactory, pki: tuple[Path, Path, Path]) -> None:
    server = wsman(Reply(deny_shell=True))
    with pytest.raises(AuthenticationFailed, match="denied access"):
        collect(make_target(server, pki[0]))


def test_wrong_password(wsman: ServerFactory, pki: tuple[Path, Path, Path]) -> None:
    server = wsman()
    target = make_target(server, pki[0], password="not-the-password")
    with pytest.raises(AuthenticationFailed, match="401"):
        collect(target)
    assert server.auth_failures >= 1


def test_reply_slower_than_the_timeout(wsman: ServerFactory, pki: tuple[Path, Path, Path]) -> None:
    # timeout_s 1 → HTTP read timeout 2 s; the host holds its answer for 6 s.
    server = wsman(Reply(stdout=b"{}", delay_s=6.0))
    with pytest.raises(TargetTimeout):
        collect(make_target(server, pki[0], timeout_s=1.0))


def test_command_that_never_finishes(wsman: ServerFactory, pki: tuple[Path, Path, Path]) -> None:
    # Every Receive ends in an OperationTimeout fault; pywinrm alone would retry forever.
    server = wsman(Reply(hang=True))
    with pytest.raises(TargetTimeout, match="did not finish within 1s"):
        collect(make_target(server, pki[0], timeout_s=1.0))
    assert server.actions[:3] == ["Create", "Command", "Receive"]
    assert server.shells == {}


def test_progress_records_on_stderr_are_not_errors(
    wsman: ServerFactory, pki: tuple[Path, Path, Path], corpus: Path
) -> None:
    progress = corpus / "hyperv" / "pypsrp" / "data" / "test_sanitise_clixml_with_no_errors.xml"
    reply = host_reply("server2019_small")
    reply.stderr = progress.read_bytes()
    (got,) = collect(make_target(wsman(reply), pki[0]))
    assert got.identity.host_id == "00000000-0000-0000-0000-ac1f6b4a5c2e"


def test_server_checks_the_script(wsman: ServerFactory, pki: tuple[Path, Path, Path]) -> None:
    server = wsman()
    server.expected_script = "Get-Date"
    with pytest.raises(InvalidNativeData, match="not the collector's inventory script"):
        collect(make_target(server, pki[0]))
    assert server.errors == ["the script is not the collector's inventory script"]


def test_untrusted_certificate(wsman: ServerFactory, pki: tuple[Path, Path, Path]) -> None:
    server = wsman()
    with pytest.raises(TargetUnreachable, match="TLS"):
        collect(make_target(server, pki[0], ca_bundle=None))
    (got,) = collect(make_target(server, pki[0], ca_bundle=None, verify_tls=False))
    assert got.identity.host_id


def test_native_output_is_dumped(
    wsman: ServerFactory, pki: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    server = wsman(host_reply("arm64_windows11"))
    collect(make_target(server, pki[0], dump_native_dir=tmp_path / "dump"))
    (saved,) = (tmp_path / "dump").iterdir()
    assert saved.name.startswith("hyperv-hv-under-test-") and saved.name.endswith("-script.json")
    assert saved.read_bytes() == (HOSTS / "arm64_windows11.json").read_bytes()
    (again,) = HypervCollector.normalise_offline({"json": [saved]}, target="hv-under-test")
    assert again.identity.host_id == "5e2a8c31-7b4d-4e9f-8a6c-1d3b5f7a9c0e"


def test_credentials_never_leak(
    wsman: ServerFactory,
    pki: tuple[Path, Path, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours, urllib3, requests_ntlm, spnego
    messages: list[str] = []
    dump = tmp_path / "dump"
    for reply, kwargs in [
        (host_reply("server2022_2socket"), {}),
        (_reply("access_denied.clixml"), {}),
        (Reply(deny_shell=True), {}),
        (host_reply("server2019_small"), {"auth": "basic"}),
    ]:
        server = wsman(reply, **kwargs)
        options = {"transport": "basic"} if kwargs else {}
        target = make_target(server, pki[0], options=options, dump_native_dir=dump)
        try:
            reports = collect(target)
            messages.extend(r.model_dump_json() for r in reports)
        except CollectorError as exc:
            messages.append(str(exc))
            messages.append(repr(exc.__cause__))
        messages.append(repr(target))
    messages.append(caplog.text)
    messages.extend(p.read_text() for p in dump.iterdir())
    assert len(messages) > 8 and caplog.text
    for text in messages:
        assert PASSWORD not in text


# -- options -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"options": {"transport": "credssp"}}, "option 'transport': Input should be 'ntlm'"),
        ({"options": {"allow_http": "yes"}}, "option 'allow_http': Input should be a valid bool"),
        ({"options": {"colour": "blue"}}, "unknown option 'colour'"),
        ({"url": "http://127.0.0.1:5985/wsman"}, "allow_http"),
        ({"url": "ftp://127.0.0.1/wsman"}, "https"),
        (
            {
                "url": "http://127.0.0.1:5985/wsman",
                "options": {"allow_http": True, "transport": "basic"},
            },
            "in clear",
        ),
    ],
)
def test_bad_targets_are_unsupported(
    changes: dict[str, object], needle: str, wsman: ServerFactory, pki: tuple[Path, Path, Path]
) -> None:
    with pytest.raises(UnsupportedTarget, match=needle):
        HypervCollector.from_target(make_target(wsman(), pki[0], **changes), logger=LOG)


def test_default_url_parts(wsman: ServerFactory, pki: tuple[Path, Path, Path]) -> None:
    collector = HypervCollector.from_target(
        make_target(wsman(), pki[0], url="hv22-a.example.com"), logger=LOG
    )
    assert collector._protocol.transport.endpoint == "https://hv22-a.example.com:5986/wsman"
    collector.close()


@pytest.mark.skipif(winrm.transport.HAVE_KERBEROS, reason="kerberos support is installed")
def test_kerberos_without_its_library(wsman: ServerFactory, pki: tuple[Path, Path, Path]) -> None:
    target = make_target(wsman(), pki[0], options={"transport": "kerberos"})
    with pytest.raises(UnsupportedTarget, match="kerberos"):
        HypervCollector.from_target(target, logger=LOG)


def test_missing_credentials(wsman: ServerFactory, pki: tuple[Path, Path, Path]) -> None:
    with pytest.raises(AuthenticationFailed, match="username and a password"):
        HypervCollector.from_target(make_target(wsman(), pki[0], password=None), logger=LOG)


# -- the exception boundary --------------------------------------------------------------------


def _instances() -> list[BaseException]:
    """One instance of every exception class pywinrm and requests define."""
    made: list[BaseException] = []
    for module in (winrm.exceptions, requests.exceptions):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__ or not issubclass(cls, Exception):
                continue
            if issubclass(cls, Warning):
                continue
            if cls is winrm.exceptions.WSManFaultError:
                made.append(cls(500, "m", "", "reason", wsman_fault_code=2150858752))
            elif cls is winrm.exceptions.WinRMTransportError:
                made.append(cls("http", 500, ""))
            elif issubclass(cls, requests.exceptions.JSONDecodeError):
                made.append(cls("boom", "{", 0))
            else:
                made.append(cls("boom"))
    return made


@pytest.mark.parametrize("exc", _instances(), ids=lambda e: type(e).__name__)
def test_every_native_exception_is_mapped(exc: BaseException) -> None:
    with pytest.raises(CollectorError) as caught, map_winrm_errors("t"):
        raise exc
    assert caught.value.__cause__ is exc


@pytest.mark.parametrize(
    ("exc", "error"),
    [
        (winrm.exceptions.InvalidCredentialsError("rejected"), AuthenticationFailed),
        (winrm.exceptions.WSManFaultError(500, "m", "", "Access is denied.", wsman_fault_code=5),
         AuthenticationFailed),
        (winrm.exceptions.WinRMTransportError("http", 401, ""), AuthenticationFailed),
        (winrm.exceptions.WinRMTransportError("http", 404, ""), UnsupportedTarget),
        (winrm.exceptions.WinRMTransportError("http", 503, ""), TargetUnreachable),
        (winrm.exceptions.WinRMOperationTimeoutError(), TargetTimeout),
        (requests.exceptions.ConnectTimeout("slow"), TargetTimeout),
        (requests.exceptions.ReadTimeout("slow"), TargetTimeout),
        (requests.exceptions.SSLError("bad cert"), TargetUnreachable),
        (requests.exceptions.ConnectionError("refused"), TargetUnreachable),
        # What requests raises when a read times out before the answer starts (seen on a link
        # that trickles the TLS handshake): the timeout inside a ConnectionError.
        (requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(
            None, "/wsman",  # type: ignore[arg-type]
            urllib3.exceptions.ReadTimeoutError(None, "/wsman", "Read timed out."),  # type: ignore[arg-type]
        )), TargetTimeout),
        (ConnectionRefusedError(), TargetUnreachable),
    ],
)  # fmt: skip
def test_important_exceptions_map_to_their_kind(
    exc: BaseException, error: type[CollectorError]
) -> None:
    with pytest.raises(error), map_winrm_errors("t"):
        raise exc


def test_programming_errors_are_not_hidden() -> None:
    with pytest.raises(ZeroDivisionError), map_winrm_errors("t"):
        _ = 1 / 0


def test_every_fault_fixture_is_used() -> None:
    names = {p.name for p in FAULTS.iterdir()}
    assert names == {
        "role_absent.clixml",
        "access_denied.clixml",
        "powershell_exception.clixml",
        "truncated.json",
        "depth_truncated.json",
    }


def test_server_is_loopback_only(wsman: ServerFactory) -> None:
    server: WSManServer = wsman()
    assert server.httpd.server_address[0] == "127.0.0.1"


@pytest.mark.parametrize(
    ("codec", "bom"),
    [("utf-8", codecs.BOM_UTF8), ("utf-16-le", codecs.BOM_UTF16_LE)],
    ids=["utf8-bom", "utf16le-bom"],
)
def test_output_encodings_through_winrm(
    codec: str, bom: bytes, wsman: ServerFactory, pki: tuple[Path, Path, Path]
) -> None:
    text = (HOSTS / "server2022_2socket.json").read_text(encoding="utf-8")
    server = wsman(Reply(stdout=bom + text.encode(codec)))
    (got,) = collect(make_target(server, pki[0]))
    assert got.identity.hostname == "HV22-A.corp.example.com"
    assert {i.name for i in got.running_instances.instances} >= {"Überwachung-01", "会計サーバー"}
