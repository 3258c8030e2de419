"""Offline input from SOAP captures: what a user can attach to a bug report without resmon.

Two shapes are read:

- a vcrpy cassette (YAML with ``interactions``: each a request and its response), such as the
  recordings pyVmomi's own tests keep, or one made with any vcrpy-based script;
- a file of saved SOAP responses (one or more ``<Envelope>`` documents one after the other).

Each response is turned back into vSphere objects by pyVmomi's own SOAP deserializer, then into
the plain values the normaliser reads, so a capture goes through exactly the code a live
collection does. Self-describing answers (``RetrievePropertiesEx`` and its continuation,
``RetrieveProperties``, ``RetrieveServiceContent``) are read from either shape. ``Fetch`` (one
property of one object, what pyVmomi sends for ``host.config``) and
``QueryConfigOptionDescriptor`` only name their object in the request, so they are read from
cassettes only.

A property the normaliser wants (``summary.hardware.uuid``) is taken as captured, or from the
closest captured parent (``summary``). All files given together form one collection; its time is
the last response's HTTP ``Date`` header, or the newest file's modification time.
"""

from __future__ import annotations

import email.utils
import io
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as DET
import yaml
from defusedxml import DefusedXmlException

from resmon.contract import InvalidNativeData

from ._native import PROPERTIES, Inventory, NativeObject, to_plain

__all__ = ["load_capture"]

_VIM = "urn:vim25"
_BODY = "{http://schemas.xmlsoap.org/soap/envelope/}Body"
_ENVELOPE = re.compile(rb"<(?:[\w-]+:)?Envelope\b.*?</(?:[\w-]+:)?Envelope>", re.DOTALL)
#: Managed-object types the normaliser reads, and the property lists that apply to each (a
#: cluster is a compute resource too).
_READ = {
    **PROPERTIES,
    "ClusterComputeResource": PROPERTIES["ComputeResource"] + PROPERTIES["ClusterComputeResource"],
    "VirtualApp": PROPERTIES["ResourcePool"],
}


@dataclass
class _Exchange:
    request: bytes | None
    response: bytes
    date: datetime | None = None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _parse(xml: bytes, source: str) -> Element:
    try:
        return DET.fromstring(xml)
    except (DefusedXmlException, SyntaxError) as exc:
        raise InvalidNativeData(f"{source}: not a SOAP envelope ({exc})") from None


def _first_body_child(envelope: Element) -> Element | None:
    body = envelope.find(_BODY)
    return None if body is None or len(body) == 0 else body[0]


def _http_date(headers: object) -> datetime | None:
    if not isinstance(headers, Mapping):
        return None
    for name, value in headers.items():
        if str(name).lower() == "date":
            raw = value[0] if isinstance(value, list) and value else value
            try:
                return email.utils.parsedate_to_datetime(str(raw)).astimezone(UTC)
            except (TypeError, ValueError):
                return None
    return None


def _text(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value or "").encode("utf-8")


def _exchanges(path: Path) -> list[_Exchange]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidNativeData(f"cannot read {path}: {exc.strerror}") from None
    if _ENVELOPE.search(raw) and not raw.lstrip().startswith(b"interactions"):
        return [_Exchange(None, m.group(0)) for m in _ENVELOPE.finditer(raw)]
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise InvalidNativeData(f"{path}: neither a vcrpy cassette nor SOAP responses") from exc
    interactions = data.get("interactions") if isinstance(data, Mapping) else None
    if not isinstance(interactions, list):
        raise InvalidNativeData(f"{path}: neither a vcrpy cassette nor SOAP responses")
    found = []
    for i, item in enumerate(interactions):
        request = item.get("request") if isinstance(item, Mapping) else None
        response = item.get("response") if isinstance(item, Mapping) else None
        if not isinstance(request, Mapping) or not isinstance(response, Mapping):
            raise InvalidNativeData(f"{path}: interaction {i} has no request and response")
        body = response.get("body")
        text = body.get("string") if isinstance(body, Mapping) else body
        status = response.get("status")
        code = status.get("code") if isinstance(status, Mapping) else None
        if request.get("method") != "POST" or code != 200:
            continue  # version discovery (GET), or a SOAP fault
        found.append(
            _Exchange(_text(request.get("body")), _text(text), _http_date(response.get("headers")))
        )
    return found


@dataclass
class _Call:
    operation: str
    this_type: str | None = None
    this: str | None = None
    prop: str | None = None


def _call(exchange: _Exchange, source: str) -> _Call | None:
    """The operation answered, with its object and property where the request names them."""
    if exchange.request is not None:
        request = _first_body_child(_parse(exchange.request, source))
        if request is None:
            return None
        this = request.find(f"{{{_VIM}}}_this")
        prop = request.find(f"{{{_VIM}}}prop")
        return _Call(
            _local(request.tag),
            None if this is None else this.get("type"),
            None if this is None else (this.text or "").strip(),
            None if prop is None else (prop.text or "").strip(),
        )
    response = _first_body_child(_parse(exchange.response, source))
    if response is None or not _local(response.tag).endswith("Response"):
        return None
    return _Call(_local(response.tag).removesuffix("Response"))


def _result_type(call: _Call) -> Any:
    import pyVmomi

    VmomiSupport: Any = pyVmomi.VmomiSupport  # noqa: N806 - pyVmomi's module name

    try:
        if call.operation == "Fetch":
            if not call.this_type or not call.prop:
                return None
            owner = VmomiSupport.GetWsdlType(_VIM, call.this_type)
            return owner._GetPropertyInfo(call.prop).type
        return VmomiSupport.GetWsdlMethod(_VIM, call.operation).info.result
    except (KeyError, AttributeError):
        return None  # an operation or property this pyVmomi does not know: not ours


def _deserialize(response: bytes, result_type: Any, source: str) -> Any:
    # pyVmomi's SOAP layer is untyped; it is used through Any.
    import pyVmomi

    soap: Any = pyVmomi.SoapAdapter
    support: Any = pyVmomi.VmomiSupport
    # The newest API version pyVmomi knows reads every older server's answers too.
    stub = soap.SoapStubAdapter(host="localhost", version=support.newestVersions.GetName("vim"))
    try:
        return soap.SoapResponseDeserializer(stub).Deserialize(io.BytesIO(response), result_type)
    except Exception as exc:  # pyVmomi raises whatever expat or its type lookup raised
        raise InvalidNativeData(
            f"{source}: a SOAP response does not decode ({type(exc).__name__}: {exc})"
        ) from None


def _object_contents(value: Any) -> Iterator[Any]:
    if value is None:
        return
    if hasattr(value, "objects"):  # RetrieveResult
        yield from value.objects or []
    else:  # ObjectContent[]
        yield from value


def _lookup(captured: Mapping[str, Any], path: str) -> Any:
    """``path`` as captured, or walked down from its closest captured parent."""
    if path in captured:
        return captured[path]
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        parent = ".".join(parts[:cut])
        if parent in captured:
            value = captured[parent]
            for part in parts[cut:]:
                if not isinstance(value, Mapping) or part not in value:
                    return None
                value = value[part]
            return value
    return None


def load_capture(paths: Sequence[Path]) -> Inventory:
    """One collection from SOAP captures; InvalidNativeData when none holds vSphere objects."""
    captured: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    descriptors_by_browser: dict[str, list[dict[str, Any]]] = {}
    about: dict[str, Any] = {}
    dates: list[datetime] = []
    for path in paths:
        source = str(path)
        for exchange in _exchanges(path):
            call = _call(exchange, source)
            if call is None:
                continue
            result_type = _result_type(call)
            if result_type is None:
                continue
            if exchange.date is not None:
                dates.append(exchange.date)
            value = _deserialize(exchange.response, result_type, source)
            if call.operation == "Fetch" and call.this_type and call.this and call.prop:
                captured[(call.this_type, call.this)][call.prop] = to_plain(value)
            elif call.operation in (
                "RetrievePropertiesEx",
                "ContinueRetrievePropertiesEx",
                "RetrieveProperties",
            ):
                for content in _object_contents(value):
                    props = captured[(content.obj._wsdlName, content.obj._moId)]
                    for prop in content.propSet or []:
                        props[prop.name] = to_plain(prop.val)
            elif call.operation == "RetrieveServiceContent" and value is not None:
                info = value.about
                about = {
                    "apiType": info.apiType,
                    "apiVersion": info.apiVersion,
                    "fullName": info.fullName,
                    "instanceUuid": info.instanceUuid,
                }
            elif call.operation == "QueryConfigOptionDescriptor" and call.this:
                descriptors_by_browser[call.this] = to_plain(value or [])
    objects = []
    for (kind, moref), props in sorted(captured.items()):
        paths_read = _READ.get(kind)
        if paths_read is None:
            continue
        values = {p: _lookup(props, p) for p in paths_read}
        objects.append(
            NativeObject(kind, moref, {k: v for k, v in values.items() if v is not None})
        )
    providers = {"HostSystem", "ComputeResource", "ClusterComputeResource", "Datastore"}
    if not any(o.type in providers | {"VirtualMachine"} for o in objects):
        raise InvalidNativeData(
            f"{', '.join(map(str, paths))}: no host, cluster, datastore or VM properties in the "
            "capture (a cassette keeps Fetch answers with their requests; a file of responses "
            "only RetrievePropertiesEx ones)"
        )
    descriptors = {}
    for obj in objects:
        browser = obj.props.get("environmentBrowser")
        if isinstance(browser, str) and browser in descriptors_by_browser:
            descriptors[obj.moref] = descriptors_by_browser[browser]
    if dates:
        when = max(dates)
    else:
        when = datetime.fromtimestamp(max(p.stat().st_mtime for p in paths), UTC)
    return Inventory(
        about=about, objects=objects, descriptors=descriptors, collected_at=when.isoformat()
    )
