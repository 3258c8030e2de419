"""Every native exception that matters maps to the right contract error."""

from __future__ import annotations

import http.client
import socket
import ssl
import xml.parsers.expat

import pytest
from pyVmomi import VmomiSupport, vim, vmodl

from collectors.vmware._errors import map_vim_errors
from resmon.contract import (
    AuthenticationFailed,
    CollectorError,
    InvalidNativeData,
    TargetTimeout,
    TargetUnreachable,
    UnsupportedTarget,
)


def _cert_error() -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError("certificate verify failed")
    exc.verify_message = "self-signed certificate"
    return exc


CASES: list[tuple[BaseException, type[CollectorError]]] = [
    (vim.fault.InvalidLogin(), AuthenticationFailed),
    (vim.fault.NotAuthenticated(), AuthenticationFailed),
    (vim.fault.NoPermission(privilegeId="System.View"), UnsupportedTarget),
    (vmodl.fault.HostNotReachable(), TargetUnreachable),
    (vmodl.fault.HostCommunication(), TargetUnreachable),
    (vim.fault.HostConnectFault(), TargetUnreachable),
    (vmodl.fault.RequestCanceled(), TargetTimeout),
    (vmodl.fault.ManagedObjectNotFound(), InvalidNativeData),
    (vmodl.fault.SystemError(reason="boom"), InvalidNativeData),
    (vmodl.fault.InvalidArgument(), InvalidNativeData),
    (vmodl.fault.NotSupported(), InvalidNativeData),
    (ConnectionRefusedError(111, "Connection refused"), TargetUnreachable),
    (ConnectionResetError(104, "Connection reset by peer"), TargetUnreachable),
    (BrokenPipeError(32, "Broken pipe"), TargetUnreachable),
    (http.client.RemoteDisconnected("Remote end closed connection"), TargetUnreachable),
    (http.client.BadStatusLine("garbage"), TargetUnreachable),
    (http.client.HTTPException("503 Service Unavailable"), TargetUnreachable),
    (socket.gaierror(-2, "Name or service not known"), TargetUnreachable),
    (OSError(113, "No route to host"), TargetUnreachable),
    (TimeoutError("timed out"), TargetTimeout),
    (_cert_error(), AuthenticationFailed),
    (ssl.SSLError(1, "wrong version number"), TargetUnreachable),
    (xml.parsers.expat.ExpatError("not well-formed"), InvalidNativeData),
]


@pytest.mark.parametrize(("native", "expected"), CASES, ids=[type(n).__name__ for n, _ in CASES])
def test_native_error_is_mapped(native: BaseException, expected: type[CollectorError]) -> None:
    with pytest.raises(expected) as caught:
        with map_vim_errors("vc1", "doing something"):
            raise native
    assert type(caught.value) is expected
    assert caught.value.__cause__ is native, "re-raised from the original"
    assert caught.value.target == "vc1"
    assert str(caught.value).startswith("vc1: doing something")


def test_every_vim_fault_class_maps_to_a_contract_error() -> None:
    """Whatever fault a future vSphere raises, only contract errors escape."""
    names = [name for ns, name in VmomiSupport._wsdlDefMap if ns == "urn:vim25"]
    types = [VmomiSupport.GetWsdlType("urn:vim25", name) for name in names]
    classes = [t for t in types if isinstance(t, type) and issubclass(t, vmodl.MethodFault)]
    assert len(classes) > 300
    for cls in classes:
        with pytest.raises(CollectorError):
            with map_vim_errors("vc1", "x"):
                raise cls()


def test_contract_errors_pass_through_unchanged() -> None:
    original = TargetTimeout("slow", target="vc1")
    with pytest.raises(TargetTimeout) as caught:
        with map_vim_errors("vc1", "x"):
            raise original
    assert caught.value is original


def test_programming_errors_are_not_hidden() -> None:
    with pytest.raises(KeyError):
        with map_vim_errors("vc1", "x"):
            raise KeyError("a bug")
