"""A WS-Management (WinRS) server on loopback that answers pywinrm like a Windows host would.

It speaks the shell protocol as pywinrm uses it: Create (a cmd shell), Command, Receive (stdout
and stderr as base64 streams, CommandState Running then Done with an exit code), Signal
(terminate) and Delete. Envelopes follow the recorded exchanges with a real WinRM service in the
shared corpus (hyperv/pypsrp/responses/test_winrs_standard.yml); faults follow MS-WSMV
(WSManFault codes 5 = access denied, 2150858793 = operation timeout).

Authentication: HTTP Basic, or NTLM through pyspnego acting as the server (the accepted account
comes from the file named by ``NTLM_USER_FILE``, one ``DOMAIN:USER:PASSWORD`` line). Over HTTPS
the NTLM exchange carries channel bindings of the server certificate, which pyspnego checks;
over plain HTTP the messages are NTLM-sealed (``multipart/encrypted``) as Windows requires.

The command must be ``powershell.exe ... -EncodedCommand <base64 UTF-16LE>``; the decoded script
is compared with the one the server expects, and the server answers with a :class:`Reply`.

Run standalone: ``python -m tests.hyperv.wsman_server PROFILE`` (plain HTTP, Basic auth).
"""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import ipaddress
import re
import ssl
import struct
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import defusedxml.ElementTree as DET

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
}
ACTION = "http://schemas.xmlsoap.org/ws/2004/09/transfer/"
SHELL = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
CMD_URI = f"{SHELL}/cmd"
ANONYMOUS = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"
ENVELOPE_NS = (
    'xml:lang="en-US" xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
    'xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
    'xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" '
    'xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" '
    'xmlns:rsp="http://schemas.microsoft.com/wbem/wsman/1/windows/shell" '
    'xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd"'
)
ENCRYPTED_PROTOCOL = "application/HTTP-SPNEGO-session-encrypted"
BOUNDARY = b"--Encrypted Boundary"
#: cmd.exe's command-line limit, and CreateProcess's when WINRS_SKIP_CMD_SHELL is set.
CMD_LINE_LIMIT = 8191
PROCESS_LINE_LIMIT = 32767
STREAM_CHUNK = 4096


@dataclass
class Reply:
    """What the "host" answers to the script: streams and exit code, or a misbehaviour."""

    stdout: bytes = b""
    stderr: bytes = b""
    exit_code: int = 0
    #: Seconds to hold the first Receive before answering (a host slower than the timeout).
    delay_s: float = 0.0
    #: Answer every Receive with an OperationTimeout fault (a command that never finishes).
    hang: bool = False
    #: Refuse shell creation with WSManFault 5 (the account may not use WinRM).
    deny_shell: bool = False


@dataclass
class _Shell:
    owner: str
    commands: dict[str, int] = field(default_factory=dict)  # command id → Receives answered
    problems: dict[str, str | None] = field(default_factory=dict)  # why a command is refused


def make_test_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost: (ca.pem, server.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("resmon test CA"))
        .issuer_name(name("resmon test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = (
        directory / "ca.pem",
        directory / "server.pem",
        directory / "key.pem",
    )
    ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_pem, cert_pem, key_pem


def _fault(relates_to: str, subcode: str, code: int, text: str, sender: bool = True) -> bytes:
    side = "s:Sender" if sender else "s:Receiver"
    return (
        f"<s:Envelope {ENVELOPE_NS}><s:Header>"
        f"<a:Action>http://schemas.dmtf.org/wbem/wsman/1/wsman/fault</a:Action>"
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID><a:To>{ANONYMOUS}</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo></s:Header><s:Body><s:Fault>"
        f"<s:Code><s:Value>{side}</s:Value><s:Subcode><s:Value>{subcode}</s:Value></s:Subcode>"
        f'</s:Code><s:Reason><s:Text xml:lang="en-US">{escape(text)}</s:Text></s:Reason>'
        f'<s:Detail><f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"'
        f' Code="{code}" Machine="127.0.0.1"><f:Message>{escape(text)}</f:Message>'
        f"</f:WSManFault></s:Detail></s:Fault></s:Body></s:Envelope>"
    ).encode()


def _envelope(action: str, relates_to: str, body: str) -> bytes:
    return (
        f"<s:Envelope {ENVELOPE_NS}><s:Header><a:Action>{action}</a:Action>"
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID><a:To>{ANONYMOUS}</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo></s:Header><s:Body>{body}</s:Body>"
        f"</s:Envelope>"
    ).encode()


def _seconds(duration: str | None) -> float:
    match = re.fullmatch(r"PT(\d+(?:\.\d+)?)S", duration or "")
    return float(match.group(1)) if match else 60.0


class WSManServer:
    """The server; ``reply`` is what the next command answers (settable between collections)."""

    def __init__(
        self,
        *,
        expected_script: str,
        reply: Reply,
        auth: str = "ntlm",
        username: str = "resmon",
        password: str = "",
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.expected_script = expected_script
        self.reply = reply
        self.auth = auth
        self.username = username
        self.password = password
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.shells: dict[str, _Shell] = {}
        self.actions: list[str] = []
        self.errors: list[str] = []
        self.auth_failures = 0
        self.sealed_messages = 0
        self.cbt: Any = None
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.wsman = self  # type: ignore[attr-defined]
        self.scheme = "http"
        if tls is not None:
            cert_pem, key_pem = tls
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert_pem, key_pem)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
            self.cbt = _channel_bindings(cert_pem)
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.httpd.server_address[1]}/wsman"

    def start(self) -> WSManServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)


def _channel_bindings(cert_pem: Path) -> Any:
    """tls-server-end-point bindings (RFC 5929): the hash of the server certificate."""
    import hashlib

    import spnego.channel_bindings

    der = ssl.PEM_cert_to_DER_cert(cert_pem.read_text())
    digest = hashlib.sha256(der).digest()
    return spnego.channel_bindings.GssChannelBindings(
        application_data=b"tls-server-end-point:" + digest
    )


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""

    # NTLM authenticates a connection, not a request: the state lives with the handler.
    ntlm: Any = None
    authenticated = False

    @property
    def wsman(self) -> WSManServer:
        return self.server.wsman  # type: ignore[attr-defined, no-any-return]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base-class name
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _challenge(self, token: bytes | None = None) -> None:
        offer = "Negotiate" + (f" {base64.b64encode(token).decode()}" if token else "")
        headers = {"WWW-Authenticate": offer}
        if self.wsman.auth == "basic":
            headers = {"WWW-Authenticate": 'Basic realm="WSMAN"'}
        self._send(401, headers=headers)

    def _authenticate(self) -> bool:
        """True when the request may proceed; otherwise a 401 has been sent."""
        wsman = self.wsman
        header = self.headers.get("Authorization", "")
        if wsman.auth == "basic":
            expected = base64.b64encode(f"{wsman.username}:{wsman.password}".encode()).decode()
            if header == f"Basic {expected}":
                return True
            if header:
                wsman.auth_failures += 1
            self._challenge()
            return False
        if self.authenticated and not header:
            return True
        scheme, _, token = header.partition(" ")
        if scheme not in ("Negotiate", "NTLM") or not token:
            self._challenge()
            return False
        import spnego
        import spnego.exceptions

        if self.ntlm is None or self.authenticated:
            self.ntlm = spnego.server(protocol="ntlm", channel_bindings=wsman.cbt)
            self.authenticated = False
        try:
            out = self.ntlm.step(base64.b64decode(token))
        except spnego.exceptions.SpnegoError:
            wsman.auth_failures += 1
            self.ntlm = None
            self._challenge()
            return False
        if not self.ntlm.complete:
            self._challenge(out)
            return False
        self.authenticated = True
        return True

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length) if length else b""
        if self.path != "/wsman":
            self._send(404)
            return
        if not self._authenticate():
            return
        encrypted = "multipart/encrypted" in self.headers.get("Content-Type", "")
        if not body:  # pywinrm's empty POST that sets up message encryption
            self._send(200)
            return
        if encrypted:
            body = self._unseal(body)
        status, answer = self._dispatch(body)
        if self.wsman.stop_event.is_set():
            return
        headers = {"Content-Type": "application/soap+xml;charset=UTF-8"}
        if encrypted:
            answer = self._seal(answer)
            headers["Content-Type"] = (
                f'multipart/encrypted;protocol="{ENCRYPTED_PROTOCOL}";boundary="Encrypted Boundary"'
            )
        try:
            self._send(status, answer, headers)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the client gave up (a timeout test)

    def _unseal(self, body: bytes) -> bytes:
        parts = [p for p in body.split(BOUNDARY + b"\r\n") if p]
        payload = parts[1].removesuffix(BOUNDARY + b"--\r\n")
        payload = payload.replace(b"\tContent-Type: application/octet-stream\r\n", b"", 1)
        sig_len = struct.unpack("<i", payload[:4])[0]
        signature, sealed = payload[4 : 4 + sig_len], payload[4 + sig_len :]
        plain = bytes(self.ntlm.unwrap(signature + sealed).data)
        with self.wsman.lock:
            self.wsman.sealed_messages += 1
        return plain

    def _seal(self, message: bytes) -> bytes:
        wrapped = self.ntlm.wrap(message, encrypt=True).data
        signature, sealed = wrapped[:16], wrapped[16:]
        return (
            BOUNDARY + b"\r\n"
            b"\tContent-Type: " + ENCRYPTED_PROTOCOL.encode() + b"\r\n"
            b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length="
            + str(len(message)).encode()
            + b"\r\n" + BOUNDARY + b"\r\n\tContent-Type: application/octet-stream\r\n"
            + struct.pack("<i", len(signature)) + signature + sealed
            + BOUNDARY + b"--\r\n"
        )  # fmt: skip

    # -- WinRS -----------------------------------------------------------------------------

    def _dispatch(self, body: bytes) -> tuple[int, bytes]:
        root = DET.fromstring(body)
        header = root.find("s:Header", NS)
        action = header.findtext("a:Action", "", NS)
        message_id = header.findtext("a:MessageID", "", NS)
        resource = header.findtext("w:ResourceURI", "", NS)
        wsman = self.wsman
        with wsman.lock:
            wsman.actions.append(action.rsplit("/", 1)[-1])
        if resource != CMD_URI:
            return 500, _fault(message_id, "w:InvalidParameter", 2150858752, "bad resource URI")
        shell_id = ""
        for selector in header.iterfind("w:SelectorSet/w:Selector", NS):
            if selector.get("Name") == "ShellId":
                shell_id = selector.text or ""
        options = {o.get("Name"): o.text for o in header.iterfind("w:OptionSet/w:Option", NS)}
        handlers: dict[str, Callable[..., tuple[int, bytes]]] = {
            ACTION + "Create": self._create,
            f"{SHELL}/Command": self._command,
            f"{SHELL}/Receive": self._receive,
            f"{SHELL}/Signal": self._signal,
            ACTION + "Delete": self._delete,
        }
        handler = handlers.get(action)
        if handler is None:
            return 500, _fault(message_id, "w:ActionNotSupported", 2150858754, action)
        if action != ACTION + "Create" and shell_id not in wsman.shells:
            return 500, _fault(
                message_id,
                "w:InvalidSelectors",
                2150858843,
                f"The request for the Windows Remote Shell with ShellId {shell_id} failed "
                "because the shell was not found on the server.",
            )
        return handler(
            root=root,
            message_id=message_id,
            shell_id=shell_id,
            options=options,
            timeout=_seconds(header.findtext("w:OperationTimeout", None, NS)),
        )

    def _create(self, *, message_id: str, root: Any, **_: Any) -> tuple[int, bytes]:
        wsman = self.wsman
        if wsman.reply.deny_shell:
            return 500, _fault(message_id, "w:AccessDenied", 5, "Access is denied. ")
        streams = root.find("s:Body/rsp:Shell", NS)
        if streams is None:
            return 500, _fault(message_id, "w:InvalidParameter", 2150858752, "no rsp:Shell")
        shell_id = str(uuid.uuid4()).upper()
        with wsman.lock:
            wsman.shells[shell_id] = _Shell(owner=wsman.username)
        body = (
            f"<x:ResourceCreated><a:Address>{escape(wsman.url)}</a:Address><a:ReferenceParameters>"
            f"<w:ResourceURI>{CMD_URI}</w:ResourceURI><w:SelectorSet>"
            f'<w:Selector Name="ShellId">{shell_id}</w:Selector></w:SelectorSet>'
            f'</a:ReferenceParameters></x:ResourceCreated><rsp:Shell xmlns:rsp="{SHELL}">'
            f"<rsp:ShellId>{shell_id}</rsp:ShellId><rsp:ResourceUri>{CMD_URI}</rsp:ResourceUri>"
            f"<rsp:Owner>{escape(wsman.username)}</rsp:Owner><rsp:ClientIP>127.0.0.1</rsp:ClientIP>"
            f"<rsp:IdleTimeOut>PT7200.000S</rsp:IdleTimeOut><rsp:InputStreams>"
            f"{escape(streams.findtext('rsp:InputStreams', '', NS))}</rsp:InputStreams>"
            f"<rsp:OutputStreams>{escape(streams.findtext('rsp:OutputStreams', '', NS))}"
            f"</rsp:OutputStreams><rsp:ShellRunTime>P0DT0H0M0S</rsp:ShellRunTime>"
            f"<rsp:ShellInactivity>P0DT0H0M0S</rsp:ShellInactivity></rsp:Shell>"
        )
        return 200, _envelope(ACTION + "CreateResponse", message_id, body)

    def _command(
        self, *, root: Any, message_id: str, shell_id: str, options: dict[str, Any], **_: Any
    ) -> tuple[int, bytes]:
        wsman = self.wsman
        line = root.find("s:Body/rsp:CommandLine", NS)
        command = (line.findtext("rsp:Command", "", NS) or "").strip()
        arguments = " ".join(a.text or "" for a in line.iterfind("rsp:Arguments", NS))
        full = f"{command} {arguments}".strip()
        command_id = str(uuid.uuid4()).upper()
        skip_cmd = str(options.get("WINRS_SKIP_CMD_SHELL", "FALSE")).upper() == "TRUE"
        limit = PROCESS_LINE_LIMIT if skip_cmd else CMD_LINE_LIMIT
        problem = self._check_command(full, limit)
        with wsman.lock:
            if problem:
                wsman.errors.append(problem)
            wsman.shells[shell_id].commands[command_id] = 0
            wsman.shells[shell_id].problems[command_id] = problem
        body = (
            f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId>"
            f"</rsp:CommandResponse>"
        )
        return 200, _envelope(f"{SHELL}/CommandResponse", message_id, body)

    def _check_command(self, full: str, limit: int) -> str | None:
        if len(full) > limit:
            return "The command line is too long."
        tokens = full.split()
        if not tokens or not re.fullmatch(r"(?i)(powershell|pwsh)(\.exe)?", tokens[0]):
            return f"not a PowerShell command: {tokens[:1]}"
        flags = [i for i, t in enumerate(tokens) if re.fullmatch(r"(?i)-e(c|nc|ncodedcommand)?", t)]
        if not flags or flags[0] + 1 >= len(tokens):
            return "no -EncodedCommand"
        try:
            script = base64.b64decode(tokens[flags[0] + 1], validate=True).decode("utf-16-le")
        except ValueError as exc:
            return f"-EncodedCommand is not base64 UTF-16LE: {exc}"
        if script != self.wsman.expected_script:
            return "the script is not the collector's inventory script"
        return None

    def _receive(
        self, *, root: Any, message_id: str, shell_id: str, timeout: float, **_: Any
    ) -> tuple[int, bytes]:
        wsman = self.wsman
        desired = root.find("s:Body/rsp:Receive/rsp:DesiredStream", NS)
        command_id = desired.get("CommandId", "")
        shell = wsman.shells[shell_id]
        if command_id not in shell.commands:
            return 500, _fault(message_id, "w:InvalidParameter", 2150858752, "unknown CommandId")
        reply = wsman.reply
        if reply.hang:
            wsman.stop_event.wait(timeout)
            return 500, _fault(
                message_id,
                "w:TimedOut",
                2150858793,
                "The WS-Management service cannot complete the operation within the time "
                "specified in OperationTimeout.  ",
                sender=False,
            )
        turn = shell.commands[command_id]
        shell.commands[command_id] = turn + 1
        if turn == 0 and reply.delay_s:
            wsman.stop_event.wait(reply.delay_s)
        stdout, stderr, code = reply.stdout, reply.stderr, reply.exit_code
        problem = shell.problems.get(command_id)
        if problem:
            stdout, stderr, code = b"", _clixml_error(problem), 1
        # Output arrives over two Receives, as it does from a real host: part, then the rest.
        half = len(stdout) // 2
        if turn == 0:
            streams = _streams("stdout", command_id, stdout[:half], end=False)
            state = (
                f'<rsp:CommandState CommandId="{command_id}" State="{SHELL}/CommandState/Running"/>'
            )
        else:
            first = turn == 1
            streams = _streams("stdout", command_id, stdout[half:] if first else b"", end=True)
            streams += _streams("stderr", command_id, stderr if first else b"", end=True)
            state = (
                f'<rsp:CommandState CommandId="{command_id}" State="{SHELL}/CommandState/Done">'
                f"<rsp:ExitCode>{code}</rsp:ExitCode></rsp:CommandState>"
            )
        body = f"<rsp:ReceiveResponse>{streams}{state}</rsp:ReceiveResponse>"
        return 200, _envelope(f"{SHELL}/ReceiveResponse", message_id, body)

    def _signal(self, *, message_id: str, shell_id: str, root: Any, **_: Any) -> tuple[int, bytes]:
        signal = root.find("s:Body/rsp:Signal", NS)
        command_id = signal.get("CommandId", "") if signal is not None else ""
        with self.wsman.lock:
            self.wsman.shells[shell_id].commands.pop(command_id, None)
        return 200, _envelope(f"{SHELL}/SignalResponse", message_id, "<rsp:SignalResponse/>")

    def _delete(self, *, message_id: str, shell_id: str, **_: Any) -> tuple[int, bytes]:
        with self.wsman.lock:
            self.wsman.shells.pop(shell_id, None)
        return 200, _envelope(ACTION + "DeleteResponse", message_id, "")


def _streams(name: str, command_id: str, data: bytes, *, end: bool) -> str:
    chunks = [data[i : i + STREAM_CHUNK] for i in range(0, len(data), STREAM_CHUNK)]
    out = "".join(
        f'<rsp:Stream Name="{name}" CommandId="{command_id}">'
        f"{base64.b64encode(chunk).decode()}</rsp:Stream>"
        for chunk in chunks
    )
    if end:
        out += f'<rsp:Stream Name="{name}" CommandId="{command_id}" End="true"></rsp:Stream>'
    return out


def _clixml_error(text: str) -> bytes:
    line = escape(text + "\r\n").replace("\r\n", "_x000D__x000A_")
    return (
        "#< CLIXML\r\n"
        '<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
        f'<S S="Error">{line}</S></Objs>'
    ).encode()


if __name__ == "__main__":  # pragma: no cover - manual use
    import sys

    from collectors.hyperv import SCRIPT

    fixture = Path(__file__).parent / "fixtures" / "hosts" / f"{sys.argv[1]}.json"
    server = WSManServer(
        expected_script=SCRIPT, reply=Reply(stdout=fixture.read_bytes()), auth="basic",
        password="resmon-test",
    ).start()  # fmt: skip
    print(f"serving {fixture.name} at {server.url} (basic auth resmon / resmon-test)")
    try:
        threading.Event().wait()
    finally:
        server.stop()
