"""The vmware collector: one vSphere session per target, one PropertyCollector pass per cycle."""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self, cast
from urllib.parse import urlsplit

import pyVmomi
from pydantic import BaseModel, ConfigDict, Field

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
    UnsupportedTarget,
    save_native_dump,
    warn_tls_unverified,
)

from ._capture import load_capture
from ._errors import fault_message, map_vim_errors
from ._native import PROPERTIES, Inventory, NativeObject, load_dump, to_plain
from ._normalise import normalise

__all__ = ["VmwareCollector"]

# pyVmomi's stubs leave its constructors untyped; the dynamic API is used through Any.
vim: Any = pyVmomi.vim
vmodl: Any = pyVmomi.vmodl
SoapStubAdapter: Any = getattr(pyVmomi, "SoapStubAdapter")  # noqa: B009 (not in the stubs)

#: The API version spoken: vSphere 6.5, the oldest release this collector supports. Every
#: property read exists in it, and fixing it saves the version-discovery request (which pyVmomi
#: sends without any timeout).
API_VERSION = "vim.version.version11"
_SUPPORTED_API_TYPES = {"VirtualCenter", "HostAgent"}
_VIEW_TYPES = [
    vim.HostSystem, vim.ComputeResource, vim.Datastore, vim.VirtualMachine, vim.Folder,
    vim.Datacenter, vim.ResourcePool,
]  # fmt: skip
_PC = vmodl.query.PropertyCollector


class VmwareOptions(BaseModel):
    """``[targets.options]`` of a vmware target."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: Objects per PropertyCollector page.
    page_size: Annotated[int, Field(ge=1, le=100_000)] = 1000


@dataclass(frozen=True)
class _Settings:
    """A target's connection settings and options, validated."""

    url: str
    username: str
    password: str
    timeout_s: float
    ssl_context: ssl.SSLContext | None
    page_size: int
    dump_dir: Path | None


def _settings(target: Target, options: VmwareOptions, logger: Logger) -> _Settings:
    name = target.name

    parts = urlsplit(target.url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsupportedTarget(f"not an https://host[:port]/sdk URL: {target.url!r}", target=name)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsupportedTarget(f"bad port in {target.url!r}", target=name) from exc
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    url = f"{parts.scheme}://{host}:{port}{parts.path or '/sdk'}"
    if not target.username or target.password is None:
        raise AuthenticationFailed("a vSphere target needs a username and a password", target=name)

    context = None
    if parts.scheme == "https":
        if target.verify_tls:
            try:
                context = ssl.create_default_context(
                    cafile=str(target.ca_bundle) if target.ca_bundle else None
                )
            except (OSError, ssl.SSLError) as exc:
                raise UnsupportedTarget(
                    f"cannot load ca_bundle {target.ca_bundle}: {exc}", target=name
                ) from exc
        else:
            warn_tls_unverified(logger, url)
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    else:
        logger.warning("%s is plain HTTP: credentials travel unencrypted", url)

    return _Settings(
        url=url,
        username=target.username,
        password=target.password.get_secret_value(),
        timeout_s=target.timeout_s,
        ssl_context=context,
        page_size=options.page_size,
        dump_dir=target.dump_native_dir,
    )


@dataclass
class _Session:
    stub: Any
    content: Any
    view: Any = None


def _session_lost(exc: Exception, session: _Session) -> bool:
    """NotAuthenticated, or our container view gone: the server no longer knows the session."""
    if isinstance(exc, vim.fault.NotAuthenticated):
        return True
    gone = getattr(exc, "obj", None)
    view = session.view
    return gone is not None and view is not None and getattr(gone, "_moId", None) == view._moId


class VmwareCollector(Collector):
    """Reads a vCenter (datacenters, clusters, standalone hosts) or a single ESXi host.

    Options: ``page_size`` (objects per PropertyCollector page, 1000). Allocation ratios and
    reservations are policy, applied by resmon.
    """

    name = "vmware"
    version = "0.1.0"
    options_model = VmwareOptions
    capabilities = frozenset(
        {
            Capability.NUMA,
            Capability.CPU_FEATURES,
            Capability.SUPPORTED_INSTANCES,
            Capability.RUNNING_INSTANCES,
            Capability.STORAGE_POOLS,
            Capability.CLUSTERS,
            Capability.OBSERVED_USAGE,
        }
    )
    offline_inputs: ClassVar[tuple[OfflineInput, ...]] = (
        OfflineInput(
            flag="--dump",
            key="dump",
            multiple=True,
            help="JSON written by 'resmon collect --dump-native DIR' for a vmware target",
        ),
        OfflineInput(
            flag="--soap",
            key="soap",
            multiple=True,
            help="SOAP captured from vCenter/ESXi: a vcrpy cassette or a file of SOAP responses "
            "(all files given form one collection)",
        ),
    )

    def __init__(self, target: Target, settings: _Settings, logger: Logger) -> None:
        self.target = target
        self.settings = settings
        self.logger = logger
        self._session: _Session | None = None
        #: QueryConfigOptionDescriptor answers per compute resource, kept while the builds of
        #: its hosts stay the same (they change on upgrades only).
        self._descriptors: dict[str, tuple[frozenset[tuple[str, str]], list[dict[str, Any]]]] = {}

    @classmethod
    def from_target(cls, target: Target, *, logger: Logger) -> Self:
        options = cast(VmwareOptions, cls.parse_options(target))
        return cls(target, _settings(target, options, logger), logger)

    # -- session -------------------------------------------------------------------------------

    def _connect(self) -> _Session:
        if self._session is not None:
            return self._session
        s = self.settings
        with map_vim_errors(self.target.name, f"connecting to {s.url}"):
            stub = SoapStubAdapter(
                url=s.url,
                version=API_VERSION,
                sslContext=s.ssl_context,
                httpConnectionTimeout=s.timeout_s,
            )
            content = vim.ServiceInstance("ServiceInstance", stub).RetrieveContent()
            api_type = content.about.apiType
            if api_type not in _SUPPORTED_API_TYPES:
                raise UnsupportedTarget(
                    f"{s.url} is {content.about.fullName!r} (apiType {api_type}), "
                    "not a vCenter or ESXi",
                    target=self.target.name,
                )
        with map_vim_errors(self.target.name, "login"):
            content.sessionManager.Login(s.username, s.password, None)
        self.logger.info("logged in to %s (%s)", s.url, content.about.fullName)
        self._session = _Session(stub, content)
        return self._session

    def _drop_session(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        try:
            session.stub.DropConnections()
        except Exception:  # a broken connection pool is being thrown away anyway
            self.logger.debug("dropping connections failed", exc_info=True)

    def close(self) -> None:
        session = self._session
        if session is not None:
            try:
                session.content.sessionManager.Logout()
            except Exception:  # close() must not raise; the server may be gone already
                self.logger.debug("logout failed", exc_info=True)
        self._drop_session()

    # -- collection ----------------------------------------------------------------------------

    def collect(self) -> list[HostReport]:
        inventory = self._read_with_relogin()
        if self.settings.dump_dir is not None:
            self._dump(inventory)
        return normalise(
            inventory,
            target=self.target.name,
            collector=CollectorInfo(name=self.name, version=self.version),
            collected_at=datetime.fromisoformat(inventory.collected_at or ""),
        )

    def _read_with_relogin(self) -> Inventory:
        """Read once; a session the server forgot (expiry, restart) is re-created once."""
        try:
            for attempt in (1, 2):
                session = self._connect()
                with map_vim_errors(self.target.name, "retrieving properties"):
                    try:
                        return self._read(session)
                    except (vim.fault.NotAuthenticated, vmodl.fault.ManagedObjectNotFound) as exc:
                        if attempt == 2 or not _session_lost(exc, session):
                            raise
                self.logger.info("session no longer valid; logging in again")
                self._drop_session()
        except CollectorError:
            self._drop_session()
            raise
        raise AssertionError("not reached")

    def _view(self, session: _Session) -> Any:
        if session.view is None:
            content = session.content
            session.view = content.viewManager.CreateContainerView(
                content.rootFolder, _VIEW_TYPES, True
            )
        return session.view

    def _read(self, session: _Session) -> Inventory:
        content = session.content
        collected_at = datetime.now(UTC).isoformat()
        spec = _PC.FilterSpec(
            objectSet=[
                _PC.ObjectSpec(
                    obj=self._view(session),
                    skip=True,
                    selectSet=[
                        _PC.TraversalSpec(
                            name="view", path="view", skip=False, type=vim.view.ContainerView
                        )
                    ],
                )
            ],
            propSet=[
                _PC.PropertySpec(type=getattr(vim, kind), pathSet=list(paths))
                for kind, paths in PROPERTIES.items()
            ],
        )
        collector = content.propertyCollector
        result = collector.RetrievePropertiesEx(
            specSet=[spec], options=_PC.RetrieveOptions(maxObjects=self.settings.page_size)
        )
        objects: list[NativeObject] = []
        while result is not None:
            objects.extend(self._objects(result.objects))
            if not result.token:
                break
            result = collector.ContinueRetrievePropertiesEx(token=result.token)
        about = content.about
        inventory = Inventory(
            about={
                "apiType": about.apiType,
                "apiVersion": about.apiVersion,
                "fullName": about.fullName,
                "instanceUuid": about.instanceUuid,
            },
            objects=objects,
            collected_at=collected_at,
        )
        inventory.descriptors = self._config_option_descriptors(session, inventory)
        return inventory

    def _objects(self, contents: list[Any]) -> list[NativeObject]:
        objects = []
        for item in contents:
            missing = item.missingSet or []
            if any(isinstance(m.fault, vmodl.fault.ManagedObjectNotFound) for m in missing):
                # Deleted between the view's listing and the read: not an error.
                self.logger.debug("%s vanished during collection", item.obj._moId)
                continue
            for m in missing:
                if isinstance(m.fault, vim.fault.NotAuthenticated):
                    raise m.fault
            props = {p.name: to_plain(p.val) for p in item.propSet}
            objects.append(NativeObject(item.obj._wsdlName, item.obj._moId, props))
        return objects

    def _config_option_descriptors(
        self, session: _Session, inventory: Inventory
    ) -> dict[str, list[dict[str, Any]]]:
        builds = {
            h.moref: str(h.props.get("config.product.build"))
            for h in inventory.of_type("HostSystem")
        }
        found: dict[str, list[dict[str, Any]]] = {}
        for compute in inventory.of_type("ComputeResource", "ClusterComputeResource"):
            browser = compute.props.get("environmentBrowser")
            hosts = compute.props.get("host") or []
            if not isinstance(browser, str) or not isinstance(hosts, list):
                continue
            key = frozenset((str(h), builds.get(str(h), "")) for h in hosts)
            cached = self._descriptors.get(compute.moref)
            if cached is not None and cached[0] == key:
                found[compute.moref] = cached[1]
                continue
            try:
                answer = vim.EnvironmentBrowser(browser, session.stub).QueryConfigOptionDescriptor()
            except vmodl.fault.ManagedObjectNotFound:
                continue  # the compute resource went away mid-collection
            except (vmodl.fault.NotSupported, vmodl.fault.HostCommunication) as exc:
                # Hosts that cannot answer (disconnected) still get their architecture.
                self.logger.info(
                    "%s: no VM hardware versions (%s)", compute.moref, fault_message(exc)
                )
                continue
            plain = [to_plain(d) for d in answer or []]
            self._descriptors[compute.moref] = (key, plain)
            found[compute.moref] = plain
        return found

    def _dump(self, inventory: Inventory) -> None:
        text = json.dumps(inventory.to_json(), indent=1, sort_keys=True)
        save_native_dump(self.target, self.name, "inventory.json", text, logger=self.logger)

    # -- offline -------------------------------------------------------------------------------

    @classmethod
    def normalise_offline(
        cls, inputs: Mapping[str, list[Path]], *, target: str
    ) -> list[HostReport]:
        """Reports from dumps written by ``--dump-native`` (one collection per file) and from
        SOAP captures (all files together one collection)."""
        if not inputs.get("dump") and not inputs.get("soap"):
            raise InvalidNativeData("nothing to normalise: give --dump FILE or --soap FILE")
        reports: list[HostReport] = []
        if inputs.get("soap"):
            inventory = load_capture(inputs["soap"])
            reports += normalise(
                inventory,
                target=target,
                collector=CollectorInfo(name=cls.name, version=cls.version),
                collected_at=datetime.fromisoformat(inventory.collected_at or ""),
            )
        for path in inputs.get("dump", []):
            inventory = load_dump(path)
            try:
                when = datetime.fromisoformat(inventory.collected_at or "")
            except ValueError as exc:
                raise InvalidNativeData(f"{path}: collected_at is not an ISO 8601 time") from exc
            if when.tzinfo is None:
                raise InvalidNativeData(f"{path}: collected_at has no time zone")
            reports += normalise(
                inventory,
                target=target,
                collector=CollectorInfo(name=cls.name, version=cls.version),
                collected_at=when,
            )
        return reports
