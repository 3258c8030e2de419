"""One boundary where pyVmomi, socket and ssl errors become contract errors.

:func:`map_vim_errors` wraps every call into the vSphere API; the table in
``tests/vmware/test_vmware_errors.py`` checks that each native exception class that matters maps
to the right contract error.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import xml.parsers.expat
from collections.abc import Iterator
from contextlib import contextmanager

from pyVmomi import vim, vmodl

from resmon.contract import (
    AuthenticationFailed,
    CollectorError,
    InvalidNativeData,
    TargetTimeout,
    TargetUnreachable,
    UnsupportedTarget,
)

__all__ = ["fault_message", "map_vim_errors"]


def fault_message(exc: BaseException) -> str:
    """A short, readable description of a vSphere fault or a socket error."""
    if isinstance(exc, vmodl.MethodFault):
        text = getattr(exc, "msg", None) or ""
        name = type(exc).__name__
        return f"{name}: {text}" if text else name
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def map_vim_errors(target: str, what: str) -> Iterator[None]:
    """Re-raise native errors raised inside the block as contract errors, ``from`` the original.

    ``what`` says what was being done ("login", "retrieving properties") for the message.
    """
    try:
        yield
    except CollectorError:
        raise
    except vim.fault.InvalidLogin as exc:
        raise AuthenticationFailed(f"{what}: user name or password refused", target=target) from exc
    except vim.fault.NotAuthenticated as exc:
        raise AuthenticationFailed(f"{what}: session not authenticated", target=target) from exc
    except vim.fault.NoPermission as exc:
        privilege = getattr(exc, "privilegeId", None) or "?"
        raise UnsupportedTarget(
            f"{what}: the user lacks privilege {privilege} (read-only role needed)", target=target
        ) from exc
    except (vmodl.fault.HostCommunication, vim.fault.HostConnectFault) as exc:
        raise TargetUnreachable(f"{what}: {fault_message(exc)}", target=target) from exc
    except vmodl.fault.RequestCanceled as exc:
        raise TargetTimeout(f"{what}: {fault_message(exc)}", target=target) from exc
    except vmodl.MethodFault as exc:
        raise InvalidNativeData(
            f"{what}: the target answered with fault {fault_message(exc)}", target=target
        ) from exc
    except TimeoutError as exc:  # socket.timeout is an alias of TimeoutError
        raise TargetTimeout(f"{what}: no answer in time ({exc})", target=target) from exc
    except ssl.SSLCertVerificationError as exc:
        # The server failed to prove its identity: an authentication failure, not an outage.
        raise AuthenticationFailed(
            f"{what}: TLS certificate not trusted ({exc.verify_message}); "
            "set ca_bundle, or verify_tls=false for an explicit insecure opt-out",
            target=target,
        ) from exc
    except (ssl.SSLError, ConnectionError, socket.gaierror, http.client.HTTPException) as exc:
        raise TargetUnreachable(f"{what}: {fault_message(exc)}", target=target) from exc
    except OSError as exc:  # host/network unreachable and other socket-level failures
        raise TargetUnreachable(f"{what}: {fault_message(exc)}", target=target) from exc
    except xml.parsers.expat.ExpatError as exc:
        raise InvalidNativeData(
            f"{what}: the answer is not valid SOAP ({exc})", target=target
        ) from exc
