"""The one place where libvirt errors become contract errors.

:func:`map_libvirt_errors` wraps every libvirt call; each ``libvirtError`` code maps to the most
specific contract error and is re-raised ``from`` the original. ``ERROR_CLASSES`` names every
code libvirt-python defines (a test fails when a new libvirt adds one nobody has classified).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import libvirt

from resmon.contract import (
    AuthenticationFailed,
    CollectorError,
    InvalidNativeData,
    TargetTimeout,
    TargetUnreachable,
    UnsupportedTarget,
)

__all__ = ["ERROR_CLASSES", "NOT_EXPECTED", "error_class", "map_libvirt_errors"]

_UNREACHABLE = (
    # the connection or the daemon failed underneath the call
    "VIR_ERR_INTERNAL_ERROR", "VIR_ERR_NO_MEMORY", "VIR_ERR_UNKNOWN_HOST",
    "VIR_ERR_INVALID_CONN", "VIR_ERR_OPERATION_FAILED", "VIR_ERR_GET_FAILED",
    "VIR_ERR_POST_FAILED", "VIR_ERR_HTTP_ERROR", "VIR_ERR_NO_XEN", "VIR_ERR_XEN_CALL",
    "VIR_ERR_NO_XENSTORE", "VIR_ERR_DRIVER_FULL", "VIR_ERR_CALL_FAILED", "VIR_ERR_OPEN_FAILED",
    "VIR_ERR_READ_FAILED", "VIR_ERR_WRITE_FAILED", "VIR_ERR_SYSTEM_ERROR", "VIR_ERR_RPC",
    "VIR_ERR_GNUTLS_ERROR", "VIR_ERR_OPERATION_ABORTED", "VIR_ERR_SSH",
    "VIR_ERR_RESOURCE_BUSY", "VIR_ERR_DBUS_SERVICE", "VIR_ERR_NO_SERVER", "VIR_ERR_NO_CLIENT",
    "VIR_ERR_LIBSSH", "VIR_ERR_NO_HOSTNAME",
)  # fmt: skip
_TIMEOUT = ("VIR_ERR_OPERATION_TIMEOUT", "VIR_ERR_AGENT_UNRESPONSIVE", "VIR_ERR_AGENT_UNSYNCED")
_AUTH = (
    "VIR_ERR_AUTH_FAILED", "VIR_ERR_AUTH_CANCELLED", "VIR_ERR_AUTH_UNAVAILABLE",
    "VIR_ERR_OPERATION_DENIED", "VIR_ERR_ACCESS_DENIED",
)  # fmt: skip
_UNSUPPORTED = (
    # NO_CONNECT is "no connection driver available for <uri>": a URI nothing can open
    "VIR_ERR_NO_SUPPORT", "VIR_ERR_NO_CONNECT", "VIR_ERR_INVALID_ARG",
    "VIR_ERR_CONFIG_UNSUPPORTED", "VIR_ERR_ARGUMENT_UNSUPPORTED",
    "VIR_ERR_OPERATION_UNSUPPORTED", "VIR_ERR_OPERATION_INVALID", "VIR_ERR_NO_SECURITY_MODEL",
)  # fmt: skip
_INVALID_DATA = (
    "VIR_ERR_XML_ERROR", "VIR_ERR_XML_DETAIL", "VIR_ERR_XML_INVALID_SCHEMA",
    "VIR_ERR_PARSE_FAILED", "VIR_ERR_CONF_SYNTAX", "VIR_ERR_SEXPR_SERIAL", "VIR_ERR_OVERFLOW",
)  # fmt: skip

#: Code name → contract error, for every code a read-only collector can meet.
ERROR_CLASSES: dict[str, type[CollectorError]] = {
    **dict.fromkeys(_UNREACHABLE, TargetUnreachable),
    **dict.fromkeys(_TIMEOUT, TargetTimeout),
    **dict.fromkeys(_AUTH, AuthenticationFailed),
    **dict.fromkeys(_UNSUPPORTED, UnsupportedTarget),
    **dict.fromkeys(_INVALID_DATA, InvalidNativeData),
}

#: Codes about objects and operations the collector never touches (it only reads the host,
#: its guests and pools: a guest or pool vanishing mid-read is handled where it happens), and
#: the level constants that share the code namespace. Met anyway, they count as unreachable.
NOT_EXPECTED: frozenset[str] = frozenset(
    {
        "VIR_ERR_OK", "VIR_ERR_NONE", "VIR_ERR_WARNING", "VIR_ERR_ERROR",
        "VIR_ERR_INVALID_DOMAIN", "VIR_ERR_OS_TYPE", "VIR_ERR_NO_KERNEL", "VIR_ERR_NO_ROOT",
        "VIR_ERR_NO_SOURCE", "VIR_ERR_NO_TARGET", "VIR_ERR_NO_NAME", "VIR_ERR_NO_OS",
        "VIR_ERR_NO_DEVICE", "VIR_ERR_DOM_EXIST", "VIR_ERR_INVALID_NETWORK",
        "VIR_ERR_NETWORK_EXIST", "VIR_ERR_NO_DOMAIN", "VIR_ERR_NO_NETWORK",
        "VIR_ERR_INVALID_MAC", "VIR_ERR_INVALID_STORAGE_POOL", "VIR_ERR_INVALID_STORAGE_VOL",
        "VIR_ERR_NO_STORAGE_POOL", "VIR_ERR_NO_STORAGE_VOL", "VIR_ERR_INVALID_NODE_DEVICE",
        "VIR_ERR_NO_NODE_DEVICE", "VIR_ERR_NO_INTERFACE", "VIR_ERR_INVALID_INTERFACE",
        "VIR_ERR_MULTIPLE_INTERFACES", "VIR_ERR_INVALID_NWFILTER", "VIR_ERR_NO_NWFILTER",
        "VIR_ERR_BUILD_FIREWALL", "VIR_ERR_INVALID_SECRET", "VIR_ERR_NO_SECRET",
        "VIR_ERR_MIGRATE_PERSIST_FAILED", "VIR_ERR_HOOK_SCRIPT_FAILED",
        "VIR_ERR_INVALID_DOMAIN_SNAPSHOT", "VIR_ERR_NO_DOMAIN_SNAPSHOT", "VIR_ERR_INVALID_STREAM",
        "VIR_ERR_STORAGE_PROBE_FAILED", "VIR_ERR_STORAGE_POOL_BUILT",
        "VIR_ERR_SNAPSHOT_REVERT_RISKY", "VIR_ERR_NO_DOMAIN_METADATA", "VIR_ERR_MIGRATE_UNSAFE",
        "VIR_ERR_BLOCK_COPY_ACTIVE", "VIR_ERR_STORAGE_VOL_EXIST", "VIR_ERR_CPU_INCOMPATIBLE",
        "VIR_ERR_MIGRATE_FINISH_OK", "VIR_ERR_DEVICE_MISSING", "VIR_ERR_INVALID_NWFILTER_BINDING",
        "VIR_ERR_NO_NWFILTER_BINDING", "VIR_ERR_INVALID_DOMAIN_CHECKPOINT",
        "VIR_ERR_NO_DOMAIN_CHECKPOINT", "VIR_ERR_NO_DOMAIN_BACKUP", "VIR_ERR_INVALID_NETWORK_PORT",
        "VIR_ERR_NETWORK_PORT_EXIST", "VIR_ERR_NO_NETWORK_PORT", "VIR_ERR_CHECKPOINT_INCONSISTENT",
        "VIR_ERR_MULTIPLE_DOMAINS",
    }
)  # fmt: skip

# Names missing from an older libvirt-python are skipped; the values are what libvirt sends.
_BY_CODE: dict[int, type[CollectorError]] = {
    getattr(libvirt, name): cls for name, cls in ERROR_CLASSES.items() if hasattr(libvirt, name)
}


def error_class(code: int | None) -> type[CollectorError]:
    """The contract error for a libvirt error code (unknown codes: the target failed)."""
    if code is None:
        return TargetUnreachable
    return _BY_CODE.get(code, TargetUnreachable)


@contextmanager
def map_libvirt_errors(what: str, *, target: str) -> Iterator[None]:
    """Re-raise any ``libvirtError`` inside as the matching contract error, ``from`` it."""
    try:
        yield
    except libvirt.libvirtError as exc:
        code = exc.get_error_code()
        cls = error_class(code)
        message = str(exc.get_error_message() or exc).strip()
        raise cls(f"{what}: {message} (libvirt error {code})", target=target) from exc
