"""The one PowerShell script a collection runs, and how it travels to the host.

The script runs in Windows PowerShell 5.1 (``powershell.exe``, present on every Windows Server
with Hyper-V) and prints ONE compressed JSON document on stdout. It selects only the properties
the normaliser reads. Everything it emits is documented Microsoft data:

- ``Win32_ComputerSystem``: DNSHostName, Domain (the AD domain, or the workgroup name when
  PartOfDomain is false), PartOfDomain, HypervisorPresent (Boolean: the hypervisor is running),
  NumberOfLogicalProcessors.
- the ``vmms`` service (Hyper-V Virtual Machine Management): its Status as a string, or null
  when the service does not exist (the Hyper-V role is not installed).
- ``IsProcessorFeaturePresent`` (kernel32, processthreadsapi.h): the ``PF_*`` names of the
  features present, or null when the call could not be made (``CpuFeaturesError`` says why).
- ``Win32_Processor``, one instance per socket: Architecture (uint16 code), Manufacturer, Name,
  MaxClockSpeed (uint32, MHz), NumberOfCores, NumberOfLogicalProcessors (uint32).
- ``Win32_OperatingSystem``: TotalVisibleMemorySize and FreePhysicalMemory (uint64, KiB),
  Version, BuildNumber, Caption, LastBootUpTime (datetime).
- ``Win32_ComputerSystemProduct``: UUID (the SMBIOS UUID, our host identity).
- ``Win32_Volume`` (fixed disks): Name, Capacity and FreeSpace (uint64, bytes; null for a volume
  without a mounted file system, e.g. a locked BitLocker volume).

Only while ``vmms`` runs (the Hyper-V cmdlets talk to it), else these keys are null:

- ``Hyper-V\\Get-VMHost`` (VMHost): ComputerName, LogicalProcessorCount (Int32),
  MemoryCapacity (Int64, bytes), VirtualHardDiskPath, VirtualMachinePath (String),
  NumaSpanningEnabled (Boolean).
- ``Hyper-V\\Get-VMHostNumaNode`` (VMHostNumaNode): NodeId, ProcessorsAvailability (Int32[], one
  entry per logical processor), MemoryAvailable and MemoryTotal (Int32, MB).
- ``Hyper-V\\Get-VM`` (VirtualMachine): Id (Guid), Name, State (VMState enum), ProcessorCount,
  MemoryAssigned, MemoryStartup, MemoryMinimum, MemoryMaximum (Int64, bytes),
  DynamicMemoryEnabled (Boolean), Generation (Int32), Version (String, configuration version).
- ``Hyper-V\\Get-VMHostSupportedVersion`` (VMHostSupportedVersion): Name, Version
  (System.Version), IsDefault.

Cmdlets are module-qualified (``Hyper-V\\Get-VM``): VMware PowerCLI also exports ``Get-VM`` and
``Get-VMHost``, and whichever module loaded last would otherwise answer.
"""

from __future__ import annotations

from base64 import b64encode

__all__ = [
    "PROCESSOR_FEATURES",
    "SCRIPT",
    "SCRIPT_FORMAT",
    "encoded_command",
    "powershell_arguments",
]

#: Bumped when the document's shape changes; the normaliser refuses other formats.
SCRIPT_FORMAT = 2

#: The IsProcessorFeaturePresent features asked for: PF_* name → value (processthreadsapi.h /
#: winnt.h, learn.microsoft.com "IsProcessorFeaturePresent function").
PROCESSOR_FEATURES: dict[str, int] = {
    "PF_MMX_INSTRUCTIONS_AVAILABLE": 3,
    "PF_XMMI_INSTRUCTIONS_AVAILABLE": 6,
    "PF_3DNOW_INSTRUCTIONS_AVAILABLE": 7,
    "PF_XMMI64_INSTRUCTIONS_AVAILABLE": 10,
    "PF_NX_ENABLED": 12,
    "PF_SSE3_INSTRUCTIONS_AVAILABLE": 13,
    "PF_COMPARE_EXCHANGE128": 14,
    "PF_XSAVE_ENABLED": 17,
    "PF_ARM_NEON_INSTRUCTIONS_AVAILABLE": 19,
    "PF_SECOND_LEVEL_ADDRESS_TRANSLATION": 20,
    "PF_VIRT_FIRMWARE_ENABLED": 21,
    "PF_RDWRFSGSBASE_AVAILABLE": 22,
    "PF_RDRAND_INSTRUCTION_AVAILABLE": 28,
    "PF_ARM_V8_CRYPTO_INSTRUCTIONS_AVAILABLE": 30,
    "PF_ARM_V8_CRC32_INSTRUCTIONS_AVAILABLE": 31,
    "PF_RDTSCP_INSTRUCTION_AVAILABLE": 32,
    "PF_ARM_V81_ATOMIC_INSTRUCTIONS_AVAILABLE": 34,
    "PF_SSSE3_INSTRUCTIONS_AVAILABLE": 36,
    "PF_SSE4_1_INSTRUCTIONS_AVAILABLE": 37,
    "PF_SSE4_2_INSTRUCTIONS_AVAILABLE": 38,
    "PF_AVX_INSTRUCTIONS_AVAILABLE": 39,
    "PF_AVX2_INSTRUCTIONS_AVAILABLE": 40,
    "PF_AVX512F_INSTRUCTIONS_AVAILABLE": 41,
    "PF_ERMS_AVAILABLE": 42,
    "PF_ARM_V82_DP_INSTRUCTIONS_AVAILABLE": 43,
    "PF_ARM_V83_JSCVT_INSTRUCTIONS_AVAILABLE": 44,
    "PF_ARM_V83_LRCPC_INSTRUCTIONS_AVAILABLE": 45,
    "PF_ARM_SVE_INSTRUCTIONS_AVAILABLE": 46,
}

_FEATURE_TABLE = "; ".join(f"{name} = {value}" for name, value in PROCESSOR_FEATURES.items())

# $ErrorActionPreference = 'Stop' turns any cmdlet error into a terminating one: PowerShell then
# writes it to stderr as CLIXML and exits 1, so a half-filled document is never printed.
# [Console]::OutputEncoding throws where the process has no console of its own; the assignment is
# guarded (as WinRM tooling does) and the WinRS shell's code page 65001 keeps stdout UTF-8 then.
# UTF8Encoding($false) writes no byte-order mark. An `if` block unrolls the arrays it outputs, so
# the collections it yields are wrapped in the comma operator to stay arrays (even of 0 or 1).
# Add-Type compiles with csc.exe, which a locked-down host may refuse: CPU features are then
# reported missing, not the whole inventory.
SCRIPT = f"""\
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
try {{ [Console]::OutputEncoding = New-Object Text.UTF8Encoding $false }} catch {{ }}
$cs = Get-CimInstance Win32_ComputerSystem | Select-Object DNSHostName, Domain, PartOfDomain, \
HypervisorPresent, NumberOfLogicalProcessors
$svc = Get-Service -Name vmms -ErrorAction SilentlyContinue
$vmms = if ($svc) {{ [string]$svc.Status }} else {{ $null }}
$features = $null; $featuresError = $null
try {{
  Add-Type -Namespace Resmon -Name Kernel32 -MemberDefinition \
'[DllImport("kernel32.dll")] public static extern bool IsProcessorFeaturePresent(uint feature);'
  $pf = [ordered]@{{ {_FEATURE_TABLE} }}
  $features = @($pf.Keys | Where-Object {{ [Resmon.Kernel32]::IsProcessorFeaturePresent($pf[$_]) }})
}} catch {{ $featuresError = $_.Exception.Message }}
$hv = $vmms -eq 'Running'
$doc = [ordered]@{{
  Format = {SCRIPT_FORMAT}
  CollectedAt = [DateTime]::UtcNow
  ComputerSystem = $cs
  VmmsStatus = $vmms
  CpuFeatures = $features
  CpuFeaturesError = $featuresError
  Processors = @(Get-CimInstance Win32_Processor | Select-Object DeviceID, SocketDesignation, \
Architecture, Manufacturer, Name, MaxClockSpeed, NumberOfCores, NumberOfLogicalProcessors)
  OperatingSystem = Get-CimInstance Win32_OperatingSystem | Select-Object Caption, Version, \
BuildNumber, TotalVisibleMemorySize, FreePhysicalMemory, LastBootUpTime
  ComputerSystemProduct = Get-CimInstance Win32_ComputerSystemProduct | Select-Object UUID, \
Vendor, Name
  Volumes = @(Get-CimInstance Win32_Volume -Filter 'DriveType=3' | Select-Object Name, Capacity, \
FreeSpace, FileSystem)
  VMHost = if ($hv) {{ Hyper-V\\Get-VMHost | Select-Object ComputerName, LogicalProcessorCount, \
MemoryCapacity, VirtualHardDiskPath, VirtualMachinePath, NumaSpanningEnabled }} else {{ $null }}
  NumaNodes = if ($hv) {{ ,@(Hyper-V\\Get-VMHostNumaNode | Select-Object NodeId, \
ProcessorsAvailability, MemoryAvailable, MemoryTotal) }} else {{ $null }}
  VMs = if ($hv) {{ ,@(Hyper-V\\Get-VM | Select-Object Id, Name, State, ProcessorCount, \
MemoryAssigned, MemoryStartup, MemoryMinimum, MemoryMaximum, DynamicMemoryEnabled, Generation, \
Version) }} else {{ $null }}
  SupportedVersions = if ($hv) {{ ,@(Hyper-V\\Get-VMHostSupportedVersion | Select-Object Name, \
Version, IsDefault) }} else {{ $null }}
}}
$doc | ConvertTo-Json -Depth 5 -Compress
"""


def encoded_command(script: str = SCRIPT) -> str:
    """``-EncodedCommand`` takes base64 of the script in UTF-16LE."""
    return b64encode(script.encode("utf-16-le")).decode("ascii")


def powershell_arguments(script: str = SCRIPT) -> list[str]:
    """Arguments of ``powershell.exe``: no profile (profiles can print), never prompt."""
    return ["-NoProfile", "-NonInteractive", "-EncodedCommand", encoded_command(script)]
