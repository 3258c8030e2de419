"""The one PowerShell script a collection runs, and how it travels to the host.

The script prints ONE compressed JSON document on stdout. It selects only the properties the
normaliser reads, so the output stays small and ``ConvertTo-Json`` never hits its depth limit on
the objects we ask for. Everything it emits is documented Microsoft data:

- ``Get-VMHost`` (Microsoft.HyperV.PowerShell.VMHost): LogicalProcessorCount (Int32),
  MemoryCapacity (Int64, bytes), VirtualHardDiskPath, VirtualMachinePath (String),
  NumaSpanningEnabled (Boolean).
- ``Win32_Processor``, one instance per socket: Architecture (uint16 code), Manufacturer, Name,
  MaxClockSpeed (uint32, MHz), NumberOfCores, NumberOfLogicalProcessors (uint32).
- ``Win32_OperatingSystem``: TotalVisibleMemorySize and FreePhysicalMemory (uint64, KiB),
  Version, Caption.
- ``Win32_ComputerSystemProduct``: UUID (the SMBIOS UUID, our host identity).
- ``Get-VMHostNumaNode`` (VMHostNumaNode): NodeId, ProcessorsAvailability (Int32[], one entry per
  logical processor), MemoryAvailable and MemoryTotal (Int32, MB).
- ``Get-VM`` (VirtualMachine): Id (Guid), Name, State (VMState enum), ProcessorCount,
  MemoryAssigned and MemoryStartup (Int64, bytes), Generation (Int32), Version (String).
- ``Win32_Volume`` (fixed disks): Name, Capacity and FreeSpace (uint64, bytes); the normaliser
  picks the volume holding VirtualHardDiskPath.
- ``Get-VMHostSupportedVersion`` (VMHostSupportedVersion): Name, Version (System.Version),
  IsDefault.
"""

from __future__ import annotations

from base64 import b64encode

__all__ = ["SCRIPT", "SCRIPT_FORMAT", "encoded_command", "powershell_arguments"]

#: Bumped when the document's shape changes; the normaliser refuses other formats.
SCRIPT_FORMAT = 1

# $ErrorActionPreference = 'Stop' turns any cmdlet error into a terminating one: PowerShell then
# writes it to stderr as CLIXML and exits 1, so a half-filled document is never printed.
# UTF-8 output keeps non-ASCII VM names intact whatever the console code page is.
SCRIPT = f"""\
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
[Console]::OutputEncoding = [Text.Encoding]::UTF8
$h = Get-VMHost
$doc = [ordered]@{{
  Format = {SCRIPT_FORMAT}
  CollectedAt = [DateTime]::UtcNow
  VMHost = $h | Select-Object ComputerName, FullyQualifiedDomainName, LogicalProcessorCount, \
MemoryCapacity, VirtualHardDiskPath, VirtualMachinePath, NumaSpanningEnabled
  Processors = @(Get-CimInstance Win32_Processor | Select-Object DeviceID, SocketDesignation, \
Architecture, Manufacturer, Name, MaxClockSpeed, NumberOfCores, NumberOfLogicalProcessors)
  OperatingSystem = Get-CimInstance Win32_OperatingSystem | Select-Object Caption, Version, \
BuildNumber, TotalVisibleMemorySize, FreePhysicalMemory
  ComputerSystemProduct = Get-CimInstance Win32_ComputerSystemProduct | Select-Object UUID, \
Vendor, Name
  NumaNodes = @(Get-VMHostNumaNode | Select-Object NodeId, ProcessorsAvailability, \
MemoryAvailable, MemoryTotal)
  VMs = @(Get-VM | Select-Object Id, Name, State, ProcessorCount, MemoryAssigned, MemoryStartup, \
DynamicMemoryEnabled, Generation, Version)
  Volumes = @(Get-CimInstance Win32_Volume -Filter 'DriveType=3' | Select-Object Name, Capacity, \
FreeSpace, FileSystem)
  SupportedVersions = @(Get-VMHostSupportedVersion | Select-Object Name, Version, IsDefault)
}}
$doc | ConvertTo-Json -Depth 5 -Compress
"""


def encoded_command(script: str = SCRIPT) -> str:
    """``-EncodedCommand`` takes base64 of the script in UTF-16LE."""
    return b64encode(script.encode("utf-16-le")).decode("ascii")


def powershell_arguments(script: str = SCRIPT) -> list[str]:
    """Arguments of ``powershell.exe``: no profile (profiles can print), never prompt."""
    return ["-NoProfile", "-NonInteractive", "-EncodedCommand", encoded_command(script)]
