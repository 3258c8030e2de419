"""HypervCollector: runs the inventory script over WinRM (pywinrm) and normalises its output."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, cast
from urllib.parse import urlsplit, urlunsplit

import winrm.transport
from pydantic import BaseModel, ConfigDict, ValidationError
from winrm.exceptions import WinRMOperationTimeoutError
from winrm.protocol import Protocol

from resmon.contract import (
    AuthenticationFailed,
    Capability,
    Collector,
    CollectorError,
    CollectorInfo,
    HostReport,
    InvalidNativeData,
    Logger,
    OfflineInput,
    Target,
    TargetTimeout,
    UnsupportedTarget,
    save_native_dump,
    warn_tls_unverified,
)

from ._deadline import DeadlineTransport
from ._errors import map_winrm_errors, powershell_error
from ._normalise import normalise, parse_document
from ._script import SCRIPT, powershell_arguments

__all__ = ["HypervCollector"]

Transport = Literal["ntlm", "basic", "kerberos"]
_DEFAULT_PORTS = {"https": 5986, "http": 5985}
#: UTF-8, so that VM names survive whatever the host's OEM code page is.
_CODEPAGE_UTF8 = 65001


class HypervOptions(BaseModel):
    """``[targets.options]`` of a hyperv target."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: pywinrm's transport (kerberos needs ``pywinrm[kerberos]``).
    transport: Transport = "ntlm"
    #: Plain HTTP (5985) only with this opt-in; Basic over HTTP is always refused.
    allow_http: bool = False


def _endpoint(target: Target, allow_http: bool) -> str:
    """The WinRM URL: https://host:5986/wsman unless the target says otherwise."""
    raw = target.url if "://" in target.url else f"https://{target.url}"
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise UnsupportedTarget(f"WinRM URL must be https:// (got {scheme}://)", target=target.name)
    if scheme == "http" and not allow_http:
        raise UnsupportedTarget(
            "plain http WinRM needs the explicit option allow_http: true", target=target.name
        )
    if not parts.hostname:
        raise UnsupportedTarget("WinRM URL has no host", target=target.name)
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        raise UnsupportedTarget("WinRM URL has an invalid port", target=target.name) from None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return urlunsplit((scheme, f"{host}:{port}", parts.path or "/wsman", "", ""))


class HypervCollector(Collector):
    """Reads one Hyper-V host through WinRM.

    Options: ``transport`` (``ntlm`` default, ``basic``, ``kerberos``) and ``allow_http`` (plain
    http on 5985; NTLM and Kerberos then encrypt the messages themselves, Basic is refused).
    """

    name = "hyperv"
    version = "1.0.0"
    options_model = HypervOptions
    capabilities = frozenset(
        {
            Capability.NUMA,
            Capability.CPU_FEATURES,
            Capability.SUPPORTED_INSTANCES,
            Capability.RUNNING_INSTANCES,
            Capability.OBSERVED_USAGE,
        }
    )
    offline_inputs: ClassVar = (
        OfflineInput(
            flag="--json",
            key="json",
            required=True,
            help="stdout of the Hyper-V inventory script (one JSON document) saved from a host",
        ),
    )

    def __init__(self, target: Target, protocol: Protocol, logger: Logger) -> None:
        self._target = target
        self._protocol = protocol
        self._log = logger
        self._info = CollectorInfo(name=self.name, version=self.version)

    @classmethod
    def from_target(cls, target: Target, *, logger: Logger) -> Self:
        options = cast(HypervOptions, cls.parse_options(target))
        transport, allow_http = options.transport, options.allow_http
        endpoint = _endpoint(target, allow_http)
        if endpoint.startswith("http:") and transport == "basic":
            raise UnsupportedTarget(
                "transport basic over plain http would send the password in clear; "
                "use https or ntlm",
                target=target.name,
            )
        if transport == "kerberos" and not winrm.transport.HAVE_KERBEROS:
            raise UnsupportedTarget(
                "transport kerberos needs pywinrm's kerberos extra (pykerberos or winkerberos)",
                target=target.name,
            )
        password = target.password.get_secret_value() if target.password else None
        if transport != "kerberos" and (not target.username or password is None):
            raise AuthenticationFailed(
                f"transport {transport} needs a username and a password", target=target.name
            )
        # pywinrm wants whole seconds, and the HTTP read timeout above the WinRM operation
        # timeout (the host may hold a Receive open for the whole operation timeout).
        read_timeout = max(2, math.ceil(target.timeout_s))
        validation: Literal["validate", "ignore"] = "validate" if target.verify_tls else "ignore"
        ca_trust_path = str(target.ca_bundle) if target.ca_bundle else None
        with map_winrm_errors(target.name):
            protocol = Protocol(
                endpoint,
                transport=transport,
                username=target.username,
                password=password,
                server_cert_validation=validation,
                ca_trust_path=ca_trust_path,  # type: ignore[arg-type]
                read_timeout_sec=read_timeout,
                operation_timeout_sec=read_timeout - 1,
                proxy=None,
            )
            # The same transport as Protocol made, able to enforce collect()'s whole deadline.
            protocol.transport = DeadlineTransport(
                endpoint,
                username=target.username,
                password=password,
                ca_trust_path=ca_trust_path,  # type: ignore[arg-type]
                read_timeout_sec=protocol.read_timeout_sec,
                server_cert_validation=validation,
                auth_method=transport,
                proxy=None,
            )
        if endpoint.startswith("https:") and not target.verify_tls:
            warn_tls_unverified(logger, endpoint)
        logger.debug("WinRM endpoint %s, transport %s", endpoint, transport)
        return cls(target, protocol, logger)

    def collect(self) -> list[HostReport]:
        started = datetime.now(UTC)
        stdout, stderr, exit_code = self._run_script_within_deadline()
        self._dump(stdout, started)
        failure = powershell_error(stderr, exit_code, target=self._target.name)
        if failure is not None:
            raise failure
        if stderr:
            self._log.debug("inventory script wrote %d bytes of non-error stderr", len(stderr))
        return [self._normalise_with(stdout, self._target.name, self._info, started)]

    def close(self) -> None:
        try:
            self._protocol.transport.close_session()
        except Exception:  # close() must not raise; the session is being dropped anyway
            self._log.debug("closing the WinRM session failed", exc_info=True)

    @classmethod
    def normalise_offline(
        cls, inputs: Mapping[str, list[Path]], *, target: str
    ) -> list[HostReport]:
        info = CollectorInfo(name=cls.name, version=cls.version)
        reports = []
        for path in inputs.get("json", []):
            try:
                raw = path.read_bytes()
            except OSError as exc:
                raise InvalidNativeData(f"cannot read {path}: {exc.strerror}") from None
            reports.append(cls._normalise_with(raw, target, info, None))
        return reports

    # -- internals ---------------------------------------------------------------------------

    @staticmethod
    def _normalise_with(
        stdout: bytes,
        target: str,
        info: CollectorInfo,
        collected_at: datetime | None,
    ) -> HostReport:
        """Parse and normalise; errors name the target."""
        try:
            document = parse_document(stdout)
            return normalise(document, target=target, collector=info, collected_at=collected_at)
        except CollectorError as exc:  # InvalidNativeData, or UnsupportedTarget (no Hyper-V role)
            exc.target = target
            raise
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidNativeData(
                f"Hyper-V inventory gives an impossible value for {where}: {first['msg']}",
                target=target,
            ) from None

    def _run_script_within_deadline(self) -> tuple[bytes, bytes, int]:
        """pywinrm bounds each read, not the exchange: see DeadlineTransport."""
        target = self._target
        transport = self._protocol.transport
        if not isinstance(transport, DeadlineTransport):  # a Protocol given by the caller
            return self._run_script()
        # The cleanup (signal, delete the shell) gets as long again as the exchange had.
        with transport.deadline(target.timeout_s, grace_s=target.timeout_s) as expired:
            try:
                return self._run_script()
            except CollectorError as exc:
                if not expired.is_set() or isinstance(exc, TargetTimeout):
                    raise
                raise TargetTimeout(
                    f"the WinRM exchange did not finish within {target.timeout_s:g}s (the host "
                    "or the link is too slow); its connections were shut down",
                    target=target.name,
                ) from exc

    def _run_script(self) -> tuple[bytes, bytes, int]:
        """Open a shell, run the script, read until done or the deadline, always clean up."""
        target = self._target
        deadline = time.monotonic() + target.timeout_s
        protocol = self._protocol
        with map_winrm_errors(target.name):
            shell_id = protocol.open_shell(codepage=_CODEPAGE_UTF8, noprofile=True)
            try:
                command_id = protocol.run_command(
                    shell_id, "powershell.exe", powershell_arguments(SCRIPT), skip_cmd_shell=True
                )
                try:
                    return self._receive(shell_id, command_id, deadline)
                finally:
                    self._quietly(protocol.cleanup_command, shell_id, command_id)
            finally:
                self._quietly(protocol.close_shell, shell_id, close_session=False)

    def _receive(self, shell_id: str, command_id: str, deadline: float) -> tuple[bytes, bytes, int]:
        # pywinrm's get_command_output retries operation timeouts forever; a deadline bounds it.
        stdout: list[bytes] = []
        stderr: list[bytes] = []
        while True:
            try:
                out, err, code, done = self._protocol.get_command_output_raw(shell_id, command_id)
            except WinRMOperationTimeoutError:
                out, err, code, done = b"", b"", -1, False
            stdout.append(out)
            stderr.append(err)
            if done:
                return b"".join(stdout), b"".join(stderr), code
            if time.monotonic() >= deadline:
                raise TargetTimeout(
                    f"the inventory script did not finish within {self._target.timeout_s:g}s",
                    target=self._target.name,
                )

    def _quietly(self, func: Any, *args: Any, **kwargs: Any) -> None:
        """Cleanup after the real outcome is known: its failure must not replace that outcome."""
        try:
            func(*args, **kwargs)
        except Exception as exc:
            self._log.debug("WinRM cleanup %s failed: %s", func.__name__, type(exc).__name__)

    def _dump(self, stdout: bytes, started: datetime) -> None:
        save_native_dump(
            self._target, self.name, "script.json", stdout, logger=self._log, at=started
        )
