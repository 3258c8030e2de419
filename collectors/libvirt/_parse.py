"""Pure parsers for libvirt's capabilities and domain-capabilities XML.

No libvirt-python here: these functions take the XML text (from a live connection or from a file a
user saved with ``virsh capabilities`` / ``virsh domcapabilities``) and return plain typed values.
Everything is parsed with defusedxml; anything malformed, hostile (entity expansion, DTDs) or
absurd (negative or impossibly large numbers) raises :class:`InvalidNativeData` naming the element
or attribute at fault.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, ParseError, tostring

import defusedxml
import defusedxml.ElementTree as DET

from resmon.contract import InvalidNativeData, units

__all__ = [
    "MAX_XML_BYTES",
    "CapsCell",
    "CapsGuest",
    "DomainCaps",
    "GuestDomain",
    "HostCaps",
    "Machine",
    "PageCount",
    "host_cpu_xml",
    "parse_capabilities",
    "parse_expanded_cpu_features",
    "parse_domain_capabilities",
    "parse_pool_type",
    "scaled_to_bytes",
]

#: Capabilities of the largest hosts are a few hundred KiB; anything far beyond is not libvirt.
MAX_XML_BYTES = 32 * 1024 * 1024

# libvirt's scaled-integer units (docs: formatdomain "memory"): binary and decimal spellings.
_BINARY_UNITS = {"k": 1, "kib": 1, "m": 2, "mib": 2, "g": 3, "gib": 3, "t": 4, "tib": 4}
_DECIMAL_UNITS = {"kb": 1, "mb": 2, "gb": 3, "tb": 4}


@dataclass(frozen=True)
class PageCount:
    """Pages of one size in a NUMA cell; ``count`` is None where libvirt gives no count."""

    size_bytes: int
    count: int | None


@dataclass(frozen=True)
class CapsCell:
    cell_id: int
    cpus: list[int]
    memory_bytes: int | None
    pages: list[PageCount]


@dataclass(frozen=True)
class Machine:
    name: str
    max_cpus: int | None = None
    canonical: str | None = None


@dataclass(frozen=True)
class GuestDomain:
    """One ``<domain type=...>`` of a guest: the raw domain type and its machines."""

    domain_type: str
    emulator: str | None
    machines: list[Machine]


@dataclass(frozen=True)
class CapsGuest:
    os_type: str
    arch: str
    wordsize: int | None
    domains: list[GuestDomain]


@dataclass(frozen=True)
class HostCaps:
    """What ``virConnectGetCapabilities`` says about the host, as raw values."""

    uuid: str | None
    arch: str | None
    vendor: str | None
    model: str | None
    sockets: int | None
    dies: int | None
    clusters: int | None
    cores: int | None
    threads: int | None
    features: list[str]
    page_sizes_bytes: list[int]
    cells: list[CapsCell]
    guests: list[CapsGuest]


@dataclass(frozen=True)
class DomainCaps:
    """What ``virConnectGetDomainCapabilities`` says for one (arch, domain type, machine)."""

    path: str | None
    domain_type: str
    machine: str | None
    arch: str
    max_vcpus: int | None
    os_supported: bool
    firmware: list[str]
    loaders: list[str]
    loader_types: list[str]
    secure_boot: bool
    disk_buses: list[str]
    video_models: list[str]
    extra: dict[str, str] = field(default_factory=dict)


def _fail(source: str, message: str) -> InvalidNativeData:
    return InvalidNativeData(f"{source}: {message}")


def _parse_xml(text: str | bytes, source: str, root_tag: str) -> Element:
    if len(text) > MAX_XML_BYTES:
        raise _fail(source, f"document is {len(text)} bytes, more than {MAX_XML_BYTES}")
    try:
        root: Element = DET.fromstring(text, forbid_dtd=True)
    except defusedxml.DefusedXmlException as exc:
        raise _fail(source, f"refused hostile XML ({type(exc).__name__}: {exc})") from exc
    except ParseError as exc:
        raise _fail(source, f"malformed XML: {exc}") from exc
    if root.tag != root_tag:
        raise _fail(source, f"root element is <{root.tag}>, expected <{root_tag}>")
    return root


def _text(elem: Element | None) -> str | None:
    if elem is None or elem.text is None:
        return None
    value = elem.text.strip()
    return value or None


def _int(raw: str | None, source: str, where: str, *, maximum: int = units.MAX_COUNT) -> int | None:
    """A non-negative integer no larger than ``maximum``, or None when absent."""
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw.strip(), 10)
    except ValueError:
        raise _fail(source, f"{where} = {raw!r} is not an integer") from None
    if value < 0:
        raise _fail(source, f"{where} = {value} is negative")
    if value > maximum:
        raise _fail(source, f"{where} = {value} is larger than {maximum}")
    return value


def scaled_to_bytes(value: int, unit: str | None, source: str, where: str) -> int:
    """Bytes of a libvirt scaled integer (``unit`` defaults to KiB, libvirt's default)."""
    name = (unit or "KiB").strip().lower()
    if name in ("b", "bytes"):
        result = value
    elif name in _BINARY_UNITS:
        result = units.kib_to_bytes(value) * units.KIB ** (_BINARY_UNITS[name] - 1)
    elif name in _DECIMAL_UNITS:
        result = value * 1000 ** _DECIMAL_UNITS[name]
    else:
        raise _fail(source, f"{where} has unknown unit {unit!r}")
    if result > units.MAX_BYTES:
        raise _fail(source, f"{where} = {value} {unit} is more than {units.MAX_BYTES} bytes")
    return result


def _cpu_list(text: str, source: str, where: str) -> list[int]:
    """libvirt cpuset syntax ``0-3,8,10-11`` (exclusions ``^n`` are not used in capabilities)."""
    cpus: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        first, _, last = part.partition("-")
        lo = _int(first, source, where)
        hi = _int(last, source, where) if last else lo
        if lo is None or hi is None or hi < lo or hi - lo > 65536:
            raise _fail(source, f"{where} = {text!r} is not a CPU list")
        cpus.extend(range(lo, hi + 1))
    return cpus


def _page(elem: Element, source: str, where: str, *, counted: bool) -> PageCount:
    size = _int(elem.get("size"), source, f"{where}/@size", maximum=units.MAX_BYTES)
    if size is None or size == 0:
        raise _fail(source, f"{where} has no positive size")
    size_bytes = scaled_to_bytes(size, elem.get("unit"), source, f"{where}/@size")
    count = _int(_text(elem), source, where) if counted else None
    return PageCount(size_bytes=size_bytes, count=count)


def _cells(host: Element, source: str) -> list[CapsCell]:
    cells: list[CapsCell] = []
    for i, cell in enumerate(host.findall("topology/cells/cell")):
        where = f"host/topology/cells/cell[{i}]"
        cell_id = _int(cell.get("id"), source, f"{where}/@id")
        if cell_id is None:
            raise _fail(source, f"{where} has no id")
        memory_bytes = None
        memory = cell.find("memory")
        if memory is not None:
            amount = _int(_text(memory), source, f"{where}/memory", maximum=units.MAX_BYTES)
            if amount is not None:
                memory_bytes = scaled_to_bytes(
                    amount, memory.get("unit"), source, f"{where}/memory"
                )
        pages = [
            _page(p, source, f"{where}/pages[{j}]", counted=True)
            for j, p in enumerate(cell.findall("pages"))
        ]
        cpus: list[int] = []
        for j, cpu in enumerate(cell.findall("cpus/cpu")):
            cpu_id = _int(cpu.get("id"), source, f"{where}/cpus/cpu[{j}]/@id")
            if cpu_id is None:
                raise _fail(source, f"{where}/cpus/cpu[{j}] has no id")
            cpus.append(cpu_id)
        cells.append(CapsCell(cell_id=cell_id, cpus=cpus, memory_bytes=memory_bytes, pages=pages))
    return cells


def _machines(parent: Element, source: str, where: str) -> list[Machine]:
    machines: list[Machine] = []
    for i, machine in enumerate(parent.findall("machine")):
        name = _text(machine)
        if name is None:
            raise _fail(source, f"{where}/machine[{i}] is empty")
        max_cpus = _int(machine.get("maxCpus"), source, f"{where}/machine[{i}]/@maxCpus")
        machines.append(Machine(name=name, max_cpus=max_cpus, canonical=machine.get("canonical")))
    return machines


def _guests(root: Element, source: str) -> list[CapsGuest]:
    guests: list[CapsGuest] = []
    for i, guest in enumerate(root.findall("guest")):
        where = f"guest[{i}]"
        os_type = _text(guest.find("os_type"))
        arch = guest.find("arch")
        arch_name = arch.get("name") if arch is not None else None
        if os_type is None or arch is None or not arch_name:
            raise _fail(source, f"{where} lacks <os_type> or <arch name=...>")
        wordsize = _int(_text(arch.find("wordsize")), source, f"{where}/arch/wordsize")
        emulator = _text(arch.find("emulator"))
        arch_machines = _machines(arch, source, f"{where}/arch")
        domains: list[GuestDomain] = []
        for j, dom in enumerate(arch.findall("domain")):
            dom_type = dom.get("type")
            if not dom_type:
                raise _fail(source, f"{where}/arch/domain[{j}] has no type")
            # A <domain> may override the emulator and machines of its <arch>.
            dom_machines = _machines(dom, source, f"{where}/arch/domain[{j}]")
            domains.append(
                GuestDomain(
                    domain_type=dom_type,
                    emulator=_text(dom.find("emulator")) or emulator,
                    machines=dom_machines or arch_machines,
                )
            )
        guests.append(
            CapsGuest(os_type=os_type, arch=arch_name, wordsize=wordsize, domains=domains)
        )
    return guests


def _cpu_features(cpu: Element) -> list[str]:
    # Current libvirt: <feature name='avx2'/>; old hosts (and the test driver): <features><pae/>.
    names = [f.get("name", "") for f in cpu.findall("feature")]
    features = cpu.find("features")
    if features is not None:
        names.extend(child.tag for child in features)
    seen: dict[str, None] = {}
    for name in names:
        if name:
            seen.setdefault(name, None)
    return list(seen)


def parse_capabilities(text: str | bytes, source: str = "capabilities") -> HostCaps:
    """Parse ``virsh capabilities`` output. ``source`` names the input in error messages."""
    root = _parse_xml(text, source, "capabilities")
    host = root.find("host")
    if host is None:
        raise _fail(source, "no <host> element")
    cpu = host.find("cpu")
    arch = vendor = model = None
    topology: dict[str, int | None] = {}
    features: list[str] = []
    page_sizes: list[int] = []
    if cpu is not None:
        arch, vendor, model = (_text(cpu.find(tag)) for tag in ("arch", "vendor", "model"))
        topo = cpu.find("topology")
        for attr in ("sockets", "dies", "clusters", "cores", "threads"):
            raw = topo.get(attr) if topo is not None else None
            topology[attr] = _int(raw, source, f"host/cpu/topology/@{attr}")
        features = _cpu_features(cpu)
        page_sizes = [
            _page(p, source, f"host/cpu/pages[{i}]", counted=False).size_bytes
            for i, p in enumerate(cpu.findall("pages"))
        ]
    return HostCaps(
        uuid=_text(host.find("uuid")),
        arch=arch,
        vendor=vendor,
        model=model,
        sockets=topology.get("sockets"),
        dies=topology.get("dies"),
        clusters=topology.get("clusters"),
        cores=topology.get("cores"),
        threads=topology.get("threads"),
        features=features,
        page_sizes_bytes=page_sizes,
        cells=_cells(host, source),
        guests=_guests(root, source),
    )


def _enum_values(parent: Element | None, name: str) -> list[str]:
    if parent is None:
        return []
    for enum in parent.findall("enum"):
        if enum.get("name") == name:
            return [v for v in (_text(e) for e in enum.findall("value")) if v]
    return []


def parse_domain_capabilities(text: str | bytes, source: str = "domcapabilities") -> DomainCaps:
    """Parse ``virsh domcapabilities`` output for one (arch, domain type, machine)."""
    root = _parse_xml(text, source, "domainCapabilities")
    domain_type, arch = _text(root.find("domain")), _text(root.find("arch"))
    if domain_type is None or arch is None:
        raise _fail(source, "lacks <domain> or <arch>")
    vcpu = root.find("vcpu")
    max_vcpus = _int(vcpu.get("max"), source, "vcpu/@max") if vcpu is not None else None
    os_elem = root.find("os")
    loader = os_elem.find("loader") if os_elem is not None else None
    loader_ok = loader is not None and loader.get("supported") == "yes"
    devices = root.find("devices")
    disk = devices.find("disk") if devices is not None else None
    video = devices.find("video") if devices is not None else None
    return DomainCaps(
        path=_text(root.find("path")),
        domain_type=domain_type,
        machine=_text(root.find("machine")),
        arch=arch,
        max_vcpus=max_vcpus,
        os_supported=os_elem is not None and os_elem.get("supported") == "yes",
        firmware=_enum_values(os_elem, "firmware"),
        loaders=[v for v in (_text(e) for e in loader.findall("value")) if v]
        if loader is not None and loader_ok
        else [],
        loader_types=_enum_values(loader, "type") if loader_ok else [],
        secure_boot="yes" in _enum_values(loader, "secure") if loader_ok else False,
        disk_buses=_enum_values(disk, "bus") if disk is not None else [],
        video_models=_enum_values(video, "modelType") if video is not None else [],
    )


def parse_pool_type(text: str | bytes, source: str = "storage pool") -> str:
    """The ``type`` attribute of a storage pool's XML description (dir, logical, rbd, ...)."""
    root = _parse_xml(text, source, "pool")
    pool_type = root.get("type")
    if not pool_type:
        raise _fail(source, "<pool> has no type")
    return pool_type


def host_cpu_xml(text: str | bytes, source: str = "capabilities") -> str | None:
    """The host ``<cpu>`` element of capabilities, as XML for ``virConnectBaselineCPU``."""
    cpu = _parse_xml(text, source, "capabilities").find("host/cpu")
    if cpu is None or cpu.find("model") is None:
        return None
    return tostring(cpu, encoding="unicode")


def parse_expanded_cpu_features(text: str | bytes, source: str = "baseline CPU") -> list[str]:
    """Feature names of a CPU expanded by ``virConnectBaselineCPU(EXPAND_FEATURES)``.

    Capabilities list only the features beyond the named model (a Skylake's AVX2 is implied by
    its model); the expansion names them all. Disabled features are left out.
    """
    root = _parse_xml(text, source, "cpu")
    return [
        name
        for f in root.findall("feature")
        if (name := f.get("name")) and f.get("policy", "require") not in ("disable", "forbid")
    ]
