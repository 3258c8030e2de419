"""Errors: PowerShell's error stream and WinRM/requests exceptions mapped to the contract.

Two boundaries, one module:

- :func:`powershell_error` reads what the script left on stderr (plain text, or the CLIXML
  ``#< CLIXML`` stream PowerShell writes when its output is redirected) and classifies it.
- :func:`map_winrm_errors` is the one place where pywinrm, requests and pyspnego exceptions turn
  into contract errors, re-raised ``from`` the original.

Messages carry what the target said, never the credentials we sent.
"""

from __future__ import annotations

import http.client
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager

import defusedxml.ElementTree as DET
import requests
import spnego.exceptions
import urllib3.exceptions
import winrm.exceptions
from defusedxml import DefusedXmlException

from resmon.contract import (
    AuthenticationFailed,
    CollectorError,
    InvalidNativeData,
    TargetTimeout,
    TargetUnreachable,
    UnsupportedTarget,
)

__all__ = ["clixml_errors", "map_winrm_errors", "powershell_error"]

_CLIXML_PREFIX = "#< CLIXML"
_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
#: WSManFault code of ERROR_ACCESS_DENIED (the user may not use WinRM at all).
_WSMAN_ACCESS_DENIED = 5
_MAX_MESSAGE = 500

# What the Hyper-V module, WMI and PowerShell say when the caller lacks rights.
_ACCESS_DENIED_MARKERS = (
    "PermissionDenied",
    "UnauthorizedAccessException",
    "Access is denied",
    "You do not have the required permission",
)


def _unescape(text: str) -> str:
    """CLIXML escapes control characters as ``_xHHHH_`` (``_x000D__x000A_`` is CRLF)."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def clixml_errors(stream: str) -> str:
    """The error lines of a CLIXML stream, joined; progress records and the like are dropped.

    Raises ``ValueError`` when the stream says it is CLIXML but is not well-formed XML.
    """
    _, _, body = stream.partition("\n")
    try:
        root = DET.fromstring(body.strip())
    except (ET.ParseError, DefusedXmlException) as exc:
        raise ValueError(f"unreadable CLIXML error stream: {exc}") from None
    lines = []
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "S" and element.get("S") == "Error":
            lines.append(_unescape(element.text or ""))
    return "".join(lines).strip()


def _stderr_text(stderr: bytes) -> str:
    text = stderr.decode("utf-8", errors="replace").lstrip("\ufeff")
    if text.startswith(_CLIXML_PREFIX):
        try:
            return clixml_errors(text)
        except ValueError:
            return text.strip()
    return text.strip()


def _first_lines(text: str, limit: int = _MAX_MESSAGE) -> str:
    flat = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def powershell_error(
    stderr: bytes, exit_code: int, *, target: str | None = None
) -> CollectorError | None:
    """The contract error a finished script run means, or None when it succeeded.

    A missing Hyper-V module (role not installed) is an unsupported target; missing rights are an
    authentication failure; any other PowerShell error means the host could not give us data.
    """
    text = _stderr_text(stderr)
    if not text:
        if exit_code == 0:
            return None
        return InvalidNativeData(
            f"the inventory script exited with code {exit_code} and no error text", target=target
        )
    message = _first_lines(text)
    if "CommandNotFoundException" in text or "is not recognized as the name of a cmdlet" in text:
        if re.search(r"\bGet-VM\w*", text):
            # The vmms service runs (the script checks it first), so the role is there but its
            # module is not: usually Server Core, where Install-WindowsFeature Hyper-V adds the
            # role without its management tools unless -IncludeManagementTools is given.
            return UnsupportedTarget(
                "the Hyper-V PowerShell module is missing: the role was installed without its "
                "management tools (usual on Server Core); add them with Install-WindowsFeature "
                f"Hyper-V-PowerShell (or the role with -IncludeManagementTools): {message}",
                target=target,
            )
        return UnsupportedTarget(f"a command the script needs is missing: {message}", target=target)
    if any(marker in text for marker in _ACCESS_DENIED_MARKERS):
        return AuthenticationFailed(
            f"the account may not read Hyper-V inventory (add it to 'Hyper-V Administrators'): "
            f"{message}",
            target=target,
        )
    return InvalidNativeData(f"the inventory script failed on the host: {message}", target=target)


def _http_status_error(code: int, what: str, target: str | None) -> CollectorError:
    if code in (401, 403):
        return AuthenticationFailed(
            f"the WinRM service refused the credentials ({what})", target=target
        )
    if code == 404:
        return UnsupportedTarget(f"no WS-Management endpoint at this URL ({what})", target=target)
    return TargetUnreachable(f"the WinRM service answered with an error ({what})", target=target)


# OpenSSL's reasons when the peer's certificate is the problem, and when the peer hung up.
_CERTIFICATE_MARKERS = ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "hostname")
_EOF_MARKERS = ("UNEXPECTED_EOF", "EOF occurred", "Connection reset")


def _tls_error(exc: requests.exceptions.SSLError, target: str | None) -> CollectorError:
    """Say which TLS failure it was: an untrusted certificate, a peer that hung up, or a port
    that does not speak TLS at all (it sent something else: a protocol error)."""
    text = _first_lines(str(exc), 300)
    if any(marker in text for marker in _CERTIFICATE_MARKERS):
        return TargetUnreachable(
            f"TLS failed: certificate not trusted (set ca_bundle): {text}", target=target
        )
    if any(marker in text for marker in _EOF_MARKERS):
        return TargetUnreachable(
            f"the host closed the connection during the TLS handshake: {text}", target=target
        )
    return TargetUnreachable(
        f"protocol error: the port did not answer with TLS (is it a WinRM HTTPS listener?): {text}",
        target=target,
    )


def _not_http(exc: requests.exceptions.ConnectionError) -> bool:
    """urllib3 wraps what http.client could not parse (``BadStatusLine``...) in its args."""
    inner = exc.args[0] if exc.args else None
    return any(isinstance(arg, http.client.HTTPException) for arg in getattr(inner, "args", ()))


def _timed_out(exc: requests.exceptions.ConnectionError) -> bool:
    """requests turns urllib3's MaxRetryError into ConnectionError unless its reason is one of a
    few it names; a read that timed out (``ReadTimeoutError``, e.g. during the TLS handshake or
    before the status line) arrives so."""
    inner = exc.args[0] if exc.args else None
    return isinstance(getattr(inner, "reason", None), urllib3.exceptions.ReadTimeoutError)


def _translate(exc: BaseException, target: str | None) -> CollectorError | None:
    """The contract error for one native exception, or None when it is not a native one."""
    # pywinrm, most specific first.
    if isinstance(exc, winrm.exceptions.AuthenticationError):
        return AuthenticationFailed(
            "the WinRM service rejected the credentials (HTTP 401)", target=target
        )
    if isinstance(exc, winrm.exceptions.WSManFaultError):
        reason = _first_lines(str(exc.reason))
        if exc.wsman_fault_code == _WSMAN_ACCESS_DENIED:
            return AuthenticationFailed(
                f"the WinRM service denied access to this account: {reason}", target=target
            )
        return TargetUnreachable(f"the WinRM service returned a fault: {reason}", target=target)
    if isinstance(exc, winrm.exceptions.WinRMOperationTimeoutError):
        return TargetTimeout("the WinRM operation timed out on the host", target=target)
    if isinstance(exc, winrm.exceptions.WinRMTransportError):
        return _http_status_error(exc.code, f"HTTP {exc.code}", target)
    if isinstance(exc, winrm.exceptions.WinRMError):
        return UnsupportedTarget(f"the WinRM client cannot be used: {exc}", target=target)
    # requests: timeouts before connection errors (ConnectTimeout is both).
    if isinstance(exc, requests.exceptions.Timeout):
        return TargetTimeout(f"no answer within the timeout: {type(exc).__name__}", target=target)
    if isinstance(exc, requests.exceptions.SSLError):
        return _tls_error(exc, target)
    if isinstance(exc, requests.exceptions.HTTPError):
        code = exc.response.status_code if exc.response is not None else 0
        return _http_status_error(code, f"HTTP {code}", target)
    if isinstance(exc, requests.exceptions.ConnectionError):
        if _timed_out(exc):
            return TargetTimeout(
                f"no answer within the timeout: {_first_lines(str(exc), 300)}", target=target
            )
        if _not_http(exc):
            return TargetUnreachable(
                f"protocol error: the port did not answer with HTTP (is it a WinRM listener?): "
                f"{_first_lines(str(exc), 300)}",
                target=target,
            )
        return TargetUnreachable(f"cannot connect: {_first_lines(str(exc), 300)}", target=target)
    if isinstance(
        exc,
        requests.exceptions.InvalidURL
        | requests.exceptions.MissingSchema
        | requests.exceptions.InvalidSchema
        | requests.exceptions.URLRequired,
    ):
        return UnsupportedTarget(f"invalid WinRM URL: {exc}", target=target)
    if isinstance(exc, requests.exceptions.RequestException):
        return TargetUnreachable(f"HTTP exchange failed: {type(exc).__name__}", target=target)
    if isinstance(exc, spnego.exceptions.SpnegoError):
        return AuthenticationFailed(
            f"NTLM/Negotiate authentication failed: {type(exc).__name__}", target=target
        )
    # pywinrm parses replies with ElementTree and next()/assert; a malformed reply surfaces so.
    if isinstance(exc, ET.ParseError | StopIteration | AssertionError | KeyError | ValueError):
        return InvalidNativeData(
            f"malformed WS-Management reply ({type(exc).__name__})", target=target
        )
    if isinstance(exc, TimeoutError):
        return TargetTimeout("no answer within the timeout", target=target)
    if isinstance(exc, OSError):
        return TargetUnreachable(f"network error: {type(exc).__name__}", target=target)
    return None


@contextmanager
def map_winrm_errors(target: str | None = None) -> Iterator[None]:
    """Run a block of pywinrm calls; native exceptions leave it as contract errors."""
    try:
        yield
    except CollectorError:
        raise
    except Exception as exc:
        mapped = _translate(exc, target)
        if mapped is None:
            raise
        raise mapped from exc
