"""The libvirt collector: one libvirt connection (URI) → one compute host (+ shared pools).

Per connection, capabilities and domain capabilities are read once and normalised once (they
only change when libvirtd restarts, which drops the connection). Each ``collect()`` then makes
the cheap calls only: node info, online CPUs, free memory and pages, active guests, active
storage pools.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Self, TypeVar, cast

import libvirt
from pydantic import ValidationError

from resmon.contract import (
    Anomaly,
    Capability,
    Collector,
    CollectorInfo,
    HostReport,
    InstanceAllocation,
    InvalidNativeData,
    Logger,
    OfflineInput,
    Target,
    TargetTimeout,
    TargetUnreachable,
    UnsupportedTarget,
    save_native_dump,
    units,
    warn_tls_unverified,
)

from ._build import (
    LibvirtOptions,
    LiveFacts,
    NodeInfo,
    PoolFacts,
    StaticHost,
    build_reports,
    normalise_saved,
    normalise_static,
    observed_cpu_mhz,
    version_string,
)
from ._connection import call_with_deadline, ensure_event_loop, open_with_deadline
from ._errors import error_class, map_libvirt_errors
from ._parse import (
    DomainCaps,
    HostCaps,
    host_cpu_xml,
    parse_capabilities,
    parse_domain_capabilities,
    parse_expanded_cpu_features,
    parse_pool_type,
)

__all__ = ["LibvirtCollector"]

T = TypeVar("T")


def _uses_tls(url: str) -> bool:
    """A remote URI without an explicit transport uses TLS, as does ``+tls``."""
    scheme, _, rest = url.partition("://")
    transport = scheme.partition("+")[2].lower()
    remote = not rest.startswith("/")
    return transport == "tls" or (remote and transport == "")


#: URI schemes of libvirt's hypervisor drivers (libvirt.org/uri.html); "+transport" may follow.
_HYPERVISOR_DRIVERS = frozenset(
    {
        "bhyve", "ch", "esx", "gsx", "hyperv", "libxl", "lxc", "openvz", "parallels", "qemu",
        "test", "vbox", "vmwarefusion", "vmwareplayer", "vmwarews", "vpx", "vz", "xen",
    }
)  # fmt: skip

_DOMAIN_STATES = {
    0: "nostate", 1: "running", 2: "blocked", 3: "paused", 4: "shutdown", 5: "shutoff",
    6: "crashed", 7: "pmsuspended",
}  # fmt: skip


def _quiet_libvirt(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; ours are raised and logged instead."""


libvirt.registerErrorHandler(_quiet_libvirt, None)


class _ConnectionFacts:
    """What is read once per connection: the static host part and the driver's identity."""

    def __init__(
        self,
        static: StaticHost,
        driver_type: str,
        hv_version: str,
        lib_version: str,
        hostname: str | None,
    ) -> None:
        self.static = static
        self.driver_type = driver_type
        self.hv_version = hv_version
        self.lib_version = lib_version
        self.hostname = hostname
        #: pool UUID → pool type (a pool's type never changes).
        self.pool_types: dict[str, str] = {}


class LibvirtCollector(Collector):
    """Reads one libvirt URI (``qemu:///system``, ``qemu+ssh://host/system``, ``test:///default``).

    Options (all optional): ``read_only`` (false; a read-only connection gets no domain
    capabilities), ``domain_capabilities`` (true), ``keepalive_interval_s`` (timeout / 4),
    ``keepalive_count`` (3). Allocation ratios and reservations are policy, applied by resmon.

    Hangs: opening the connection and the once-per-connection reads run in a worker with the
    target's timeout. The per-cycle reads run in the caller's thread when libvirt keepalive is
    active (it drops a connection whose daemon stops answering within about the timeout) or the
    driver runs in-process (test://); otherwise they go through the worker too.
    """

    name = "libvirt"
    version = "0.1.0"
    options_model = LibvirtOptions
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.NUMA,
            Capability.HUGE_PAGES,
            Capability.CPU_FEATURES,
            Capability.SUPPORTED_INSTANCES,
            Capability.RUNNING_INSTANCES,
            Capability.STORAGE_POOLS,
            Capability.OBSERVED_USAGE,
        }
    )
    offline_inputs = (
        OfflineInput(
            flag="--capabilities",
            key="capabilities",
            required=True,
            help="output of `virsh capabilities` (virConnectGetCapabilities) saved to a file",
        ),
        OfflineInput(
            flag="--domcapabilities",
            key="domcapabilities",
            multiple=True,
            help="output of `virsh domcapabilities [--arch A --virttype T]` saved to a file; "
            "repeat for each arch and domain type",
        ),
    )

    def __init__(self, target: Target, options: LibvirtOptions, logger: Logger) -> None:
        self.target = target
        self.options = options
        self.log = logger
        self._info = CollectorInfo(name=self.name, version=self.version)
        self._conn: Any = None
        #: Shuts the connection's socket down (TCP transports): see _drop_connection.
        self._shut_down: Callable[[], None] | None = None
        self._facts: _ConnectionFacts | None = None
        #: Per-cycle reads may skip the worker thread (keepalive on, or an in-process driver).
        self._direct = False
        #: The node's CPU time at the last cycle: observed CPU use is the change since then.
        self._cpu_time_ns: tuple[int, int] | None = None

    @classmethod
    def from_target(cls, target: Target, *, logger: Logger) -> Self:
        options = cast(LibvirtOptions, cls.parse_options(target))
        scheme, sep, _ = target.url.partition("://")
        if not sep:
            raise UnsupportedTarget(
                f"{target.url!r} is not a libvirt URI (driver[+transport]://[host]/path)",
                target=target.name,
            )
        driver = scheme.split("+", 1)[0].lower()
        if driver not in _HYPERVISOR_DRIVERS:
            raise UnsupportedTarget(
                f"{target.url!r}: {driver!r} is not a libvirt hypervisor driver "
                f"(known: {', '.join(sorted(_HYPERVISOR_DRIVERS))})",
                target=target.name,
            )
        if not target.verify_tls and _uses_tls(target.url):
            # libvirt's URI parameter for it (https://libvirt.org/uri.html#tls-transport).
            warn_tls_unverified(logger, target.url)
            separator = "&" if "?" in target.url else "?"
            target = target.model_copy(update={"url": f"{target.url}{separator}no_verify=1"})
        return cls(target, options, logger)

    # -- the collection cycle -------------------------------------------------------------------

    def collect(self) -> list[HostReport]:
        try:
            if self._conn is None:
                self._connect()
            if self._facts is None:
                self._facts = self._read_connection_facts()
            facts = self._facts
            if self._direct:
                with map_libvirt_errors("reading the host", target=self.target.name):
                    live = self._read_live(facts)
            else:
                live = self._deadline(lambda: self._read_live(facts), "reading the host")
        except (TargetUnreachable, TargetTimeout):
            self._drop_connection()
            raise
        previous, self._cpu_time_ns = self._cpu_time_ns, live.cpu_time_ns
        return build_reports(
            facts.static,
            live,
            target=self.target.name,
            collected_at=datetime.now(UTC),
            collector=self._info,
            cpu_used_mhz=observed_cpu_mhz(previous, live.cpu_time_ns, live.node),
        )

    def close(self) -> None:
        conn, self._conn, self._facts, self._shut_down = self._conn, None, None, None
        if conn is not None:
            try:
                conn.close()
            except libvirt.libvirtError:
                self.log.debug("closing the libvirt connection failed", exc_info=True)

    # -- connection handling --------------------------------------------------------------------

    def _deadline(
        self, fn: Callable[[], T], what: str, on_abandon: Callable[[T], object] | None = None
    ) -> T:
        def guarded() -> T:
            with map_libvirt_errors(what, target=self.target.name):
                return fn()

        return call_with_deadline(
            guarded,
            timeout_s=self.target.timeout_s,
            what=what,
            target=self.target.name,
            on_abandon=on_abandon,
        )

    def _connect(self) -> None:
        ensure_event_loop()
        target, options = self.target, self.options
        what = f"connecting to {target.url}"

        def guard(fn: Callable[[], Any]) -> Callable[[], Any]:
            def guarded() -> Any:
                with map_libvirt_errors(what, target=target.name):
                    return fn()

            return guarded

        self._conn, self._shut_down = open_with_deadline(
            target.url,
            username=target.username,
            password=target.password,
            read_only=options.read_only,
            timeout_s=target.timeout_s,
            target=target.name,
            guard=guard,
            on_abandon=_close_quietly,
        )
        count = options.keepalive_count
        interval = options.keepalive_interval_s or max(1, int(target.timeout_s / (count + 1)))
        try:
            self._conn.setKeepAlive(interval, count)
            self._direct = True
        except libvirt.libvirtError:
            # In-process drivers have no keepalive: only test:// is known never to block.
            self._direct = target.url.lower().startswith("test:")
            self.log.debug("keepalive not available on %s", target.url)

    def _drop_connection(self) -> None:
        """Forget a connection that failed or hung; close it without waiting for it.

        Its socket is shut down first: a call abandoned in a worker thread (past the timeout, on
        a link that still trickles bytes) fails at once instead of holding the thread and the
        socket until its answer has crawled in.
        """
        conn, self._conn, self._facts = self._conn, None, None
        shut_down, self._shut_down = self._shut_down, None
        if shut_down is not None:
            shut_down()
        if conn is not None:
            threading.Thread(target=_close_quietly, args=(conn,), daemon=True).start()

    # -- once per connection --------------------------------------------------------------------

    def _read_connection_facts(self) -> _ConnectionFacts:
        conn = self._conn

        def identity() -> tuple[str, str, str, str | None, str]:
            hostname: str | None
            try:
                hostname = conn.getHostname()
            except libvirt.libvirtError:
                hostname = None
            return (
                conn.getType(),
                version_string(conn.getVersion()),
                version_string(conn.getLibVersion()),
                hostname,
                conn.getCapabilities(),
            )

        driver_type, hv_version, lib_version, hostname, caps_xml = self._deadline(
            identity, "reading capabilities"
        )
        self._dump("capabilities.xml", caps_xml)
        caps = parse_capabilities(caps_xml, f"{self.target.name}: capabilities")
        caps = self._expand_cpu_features(caps, caps_xml)
        domcaps, anomalies = self._read_domain_capabilities(caps)
        static = normalise_static(caps, domcaps, source=f"{self.target.name}: capabilities")
        static.anomalies.extend(anomalies)
        return _ConnectionFacts(static, driver_type, hv_version, lib_version, hostname)

    def _expand_cpu_features(self, caps: HostCaps, caps_xml: str) -> HostCaps:
        """Add the features the host CPU model implies (best effort: not every driver can)."""
        cpu_xml = host_cpu_xml(caps_xml)
        if cpu_xml is None:
            return caps
        conn, flags = self._conn, libvirt.VIR_CONNECT_BASELINE_CPU_EXPAND_FEATURES
        try:
            expanded = call_with_deadline(
                lambda: str(conn.baselineCPU([cpu_xml], flags)),
                timeout_s=self.target.timeout_s,
                what="expanding the host CPU model",
                target=self.target.name,
            )
        except libvirt.libvirtError as exc:
            if error_class(exc.get_error_code()) not in (UnsupportedTarget, InvalidNativeData):
                with map_libvirt_errors("expanding the host CPU model", target=self.target.name):
                    raise
            self.log.debug("host CPU model not expanded: %s", exc)
            return caps
        features = parse_expanded_cpu_features(expanded, f"{self.target.name}: baseline CPU")
        return replace(caps, features=list(dict.fromkeys([*caps.features, *features])))

    def _read_domain_capabilities(self, caps: HostCaps) -> tuple[list[DomainCaps], list[Anomaly]]:
        if not self.options.domain_capabilities or self.options.read_only:
            return [], []
        pairs = list(dict.fromkeys((g.arch, d.domain_type) for g in caps.guests for d in g.domains))
        found: list[DomainCaps] = []
        anomalies: list[Anomaly] = []
        conn = self._conn
        for arch, dom_type in pairs:
            what = f"domain capabilities for {arch}/{dom_type}"

            def read(arch: str = arch, dom_type: str = dom_type) -> str:
                return str(conn.getDomainCapabilities(None, arch, None, dom_type))

            try:
                xml = call_with_deadline(
                    read,
                    timeout_s=self.target.timeout_s,
                    what=what,
                    target=self.target.name,
                )
            except libvirt.libvirtError as exc:
                code = exc.get_error_code()
                if code == libvirt.VIR_ERR_NO_SUPPORT:
                    self.log.debug("driver has no domain capabilities: %s", exc)
                    return [], []
                if error_class(code) not in (UnsupportedTarget, InvalidNativeData):
                    with map_libvirt_errors(what, target=self.target.name):
                        raise
                anomalies.append(
                    Anomaly(
                        code="libvirt.domcaps_failed",
                        field="supported_instances",
                        message=f"{what}: {exc.get_error_message()}"[:2000],
                        raw_value=f"{arch}/{dom_type}",
                    )
                )
                continue
            self._dump(f"domcapabilities-{arch}-{dom_type}.xml", xml)
            found.append(parse_domain_capabilities(xml, f"{self.target.name}: {what}"))
        return found, anomalies

    def _dump(self, filename: str, xml: str) -> None:
        save_native_dump(self.target, self.name, filename, xml, logger=self.log)

    # -- every cycle ----------------------------------------------------------------------------

    def _read_live(self, facts: _ConnectionFacts) -> LiveFacts:
        """The per-cycle calls; runs in the deadline worker under map_libvirt_errors."""
        conn = self._conn
        arch, memory_mib, cpus, mhz, nodes, sockets, cores, threads = conn.getInfo()
        node = NodeInfo(str(arch), memory_mib, cpus, mhz, nodes, sockets, cores, threads)
        _, _, online = conn.getCPUMap()
        cells = [c.cell_id for c in facts.static.numa_cells]
        cell_free: dict[int, int] = {}
        free_pages: dict[int, dict[int, int]] = {}
        if cells:
            cell_bytes: list[int] = _optional(lambda: conn.getCellsFreeMemory(0, len(cells)), [])
            cell_free = dict(zip(cells, cell_bytes, strict=False))
            sizes = sorted(
                {p.page_size_bytes for c in facts.static.numa_cells for p in c.huge_pages}
            )
            if sizes:
                kib = [s // units.KIB for s in sizes]
                pages: dict[Any, dict[Any, Any]] = _optional(
                    lambda: conn.getFreePages(kib, 0, len(cells)), {}
                )
                free_pages = {
                    int(cell): {units.kib_to_bytes(k): int(n) for k, n in per_size.items()}
                    for cell, per_size in pages.items()
                }
        return LiveFacts(
            driver_type=facts.driver_type,
            hv_version=facts.hv_version,
            lib_version=facts.lib_version,
            hostname=facts.hostname,
            node=node,
            online_cpus=online,
            free_memory_bytes=conn.getFreeMemory(),
            cell_free_bytes=cell_free,
            free_pages=free_pages,
            instances=self._instances(conn),
            pools=self._pools(conn, facts),
            cpu_time_ns=_cpu_time_ns(conn),
        )

    def _instances(self, conn: Any) -> list[InstanceAllocation]:
        instances = []
        for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            try:
                state, max_kib, _current_kib, vcpus, _cpu_time = dom.info()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    continue  # stopped between the listing and the read
                raise
            try:
                instances.append(
                    InstanceAllocation(
                        instance_id=dom.UUIDString(),
                        name=dom.name(),
                        vcpus=vcpus,
                        memory_bytes=units.kib_to_bytes(max_kib),
                        state=_DOMAIN_STATES.get(state, f"state-{state}"),
                    )
                )
            except ValidationError as exc:
                raise InvalidNativeData(
                    f"domain {dom.name()!r}: vcpus={vcpus}, maxMem={max_kib} KiB out of range",
                    target=self.target.name,
                ) from exc
        return instances

    def _pools(self, conn: Any, facts: _ConnectionFacts) -> list[PoolFacts]:
        pools: list[Any] = _optional(
            lambda: conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE), []
        )
        found = []
        for pool in pools:
            uuid = pool.UUIDString()
            try:
                if uuid not in facts.pool_types:
                    facts.pool_types[uuid] = parse_pool_type(
                        pool.XMLDesc(0), f"{self.target.name}: storage pool {pool.name()!r}"
                    )
                _state, capacity, allocation, available = pool.info()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
                    continue
                raise
            for label, value in (("capacity", capacity), ("allocation", allocation)):
                if not 0 <= value <= units.MAX_BYTES:
                    raise InvalidNativeData(
                        f"storage pool {pool.name()!r}: {label} = {value} bytes is absurd",
                        target=self.target.name,
                    )
            found.append(
                PoolFacts(
                    pool.name(), uuid, facts.pool_types[uuid], capacity, allocation, available
                )
            )
        return found

    # -- offline ------------------------------------------------------------------------------

    @classmethod
    def normalise_offline(
        cls, inputs: Mapping[str, list[Path]], *, target: str
    ) -> list[HostReport]:
        caps_files = inputs.get("capabilities") or []
        if len(caps_files) != 1:
            raise InvalidNativeData(
                f"exactly one capabilities file is needed, got {len(caps_files)}"
            )
        paths = inputs.get("domcapabilities") or []
        return normalise_saved(
            (str(caps_files[0]), _read(caps_files[0])),
            [(str(p), _read(p)) for p in paths],
            target=target,
            collector=CollectorInfo(name=cls.name, version=cls.version),
            collected_at=datetime.now(UTC),
        )


def _cpu_time_ns(conn: Any) -> tuple[int, int] | None:
    """(busy, busy + idle) ns of every CPU of the node since boot; None where unsupported."""
    stats: dict[str, int] = _optional(
        lambda: conn.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS, 0), {}
    )
    if not stats or "idle" not in stats:
        return None
    idle = int(stats["idle"]) + int(stats.get("iowait", 0))
    busy = sum(int(v) for k, v in stats.items() if k in ("kernel", "user"))
    return busy, busy + idle


def _optional(fn: Callable[[], T], default: T) -> T:
    """Calls some drivers do not implement (the test driver has no free-pages call)."""
    try:
        return fn()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_INVALID):
            return default
        raise


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InvalidNativeData(f"cannot read {path}: {exc.strerror or exc}") from exc


def _close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except libvirt.libvirtError:
        pass
